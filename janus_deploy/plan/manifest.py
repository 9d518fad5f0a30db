"""The plan manifest: the single source of truth for every stage after export.

The schema is documented in ``docs/manifest.md``. The manifest is plain JSON so apps in other
languages can read it; :class:`Manifest` wraps the dict with accessors and validation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from janus_deploy import JanusError, read_json
from janus_deploy.levels import LevelKey, edge_segment_count

FORMAT_VERSION = 2
KIND = "janus-deploy/plan"
MANIFEST_FILE = "manifest.json"


class PlanError(JanusError):
    """A plan directory or manifest is missing, malformed or inconsistent."""


def plan_hash(data: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, excluding the hash itself and the timestamp."""
    body = {k: v for k, v in data.items() if k not in ("plan_hash", "created")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


_REQUIRED = ("format_version", "kind", "model", "policy", "candidates", "segments", "levels", "weights",
             "level_free_segments")
_MODEL_KEYS = ("name", "num_blocks", "embed_dim", "num_tokens", "num_prefix_tokens", "img_size")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph: ``name``, ``shape`` (ints, or names of dynamic axes) and ``dtype``."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def of(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), tuple(d.get("shape") or ()), str(d.get("dtype", "float32")))


@dataclass(frozen=True)
class GraphEntry:
    """One graph file of the plan (a segment, an unsplit graph, a level-free segment): its file,
    the blocks it runs (segments), its inputs and outputs, and the file's integrity data."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    blocks: tuple[int, int] | None = None
    index: int | None = None
    sha256: str | None = None
    bytes: int | None = None
    key: str | None = None

    @classmethod
    def of(cls, d: dict[str, Any]) -> GraphEntry:
        blocks = d.get("blocks")
        return cls(str(d["file"]), tuple(TensorSpec.of(x) for x in d.get("inputs") or ()),
                   tuple(TensorSpec.of(x) for x in d.get("outputs") or ()),
                   None if blocks is None else (int(blocks[0]), int(blocks[1])), d.get("index"), d.get("sha256"),
                   d.get("bytes"), d.get("key"))

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def takes_reductions(self) -> bool:
        """A level-free segment: the level's per-block reductions are its last input."""
        return bool(self.inputs) and self.inputs[-1].name == "reductions"


@dataclass(frozen=True)
class PlanFile:
    """The manifest's ``weights``: the plan's weight file, its sha256 and size."""

    file: str
    sha256: str
    bytes: int | None = None

    @classmethod
    def of(cls, d: dict[str, Any]) -> PlanFile:
        size = d.get("bytes")
        return cls(str(d["file"]), str(d["sha256"]), None if size is None else int(size))


@dataclass(frozen=True)
class PlanModel:
    """The manifest's ``model``: what every stage after export needs of the network
    (docs/manifest.md); torch-free, unlike :class:`janus_deploy.model.load.ModelInfo`, which the
    export reads off the live model."""

    name: str
    num_blocks: int
    embed_dim: int
    num_tokens: int
    num_prefix_tokens: int
    img_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # how the export made the network (backends.verify.model_for rebuilds it from these)
    overrides: dict[str, Any] = field(default_factory=dict, hash=False)
    checkpoint: str | None = None  # as recorded (relative to where the export ran)
    checkpoint_sha256: str | None = None
    init_seed: int | None = None  # the seed of a checkpoint-free (randomly initialised) model
    weight_bytes: int | None = None  # the model's weights, the measure of the plan's size
    weights_key: str | None = None  # what the export's reuse of earlier graphs is keyed on

    @classmethod
    def of(cls, d: dict[str, Any]) -> PlanModel:
        seed, wb = d.get("init_seed"), d.get("weight_bytes")
        return cls(str(d["name"]), int(d["num_blocks"]), int(d["embed_dim"]), int(d["num_tokens"]),
                   int(d["num_prefix_tokens"]), int(d["img_size"]), int(d.get("num_classes", 0)),
                   tuple(d.get("mean") or (0.0, 0.0, 0.0)), tuple(d.get("std") or (1.0, 1.0, 1.0)),
                   dict(d.get("overrides") or {}), d.get("checkpoint") or None, d.get("checkpoint_sha256") or None,
                   None if seed is None else int(seed), None if wb is None else int(wb), d.get("weights_key"))


@dataclass(frozen=True)
class PlanLevel:
    """One pruning level of the plan: its policy and α, token schedule, per-block reductions,
    segment graphs, unsplit graph and payload sizes per split (``payload[str(split)]``)."""

    index: int
    policy: str
    alpha: float
    tokens: tuple[int, ...]
    reductions: tuple[int, ...]
    segments: tuple[GraphEntry, ...]
    unsplit: GraphEntry | None
    payload: dict[str, Any]
    capped_blocks: tuple[int, ...] = ()  # blocks whose reduction the schedule capped (docs/manifest.md)

    @classmethod
    def of(cls, index: int, d: dict[str, Any]) -> PlanLevel:
        return cls(index, str(d["policy"]), float(d["alpha"]), tuple(d["tokens"]), tuple(d.get("reductions") or ()),
                   tuple(GraphEntry.of(e) for e in d["segments"]),
                   GraphEntry.of(d["unsplit"]) if d.get("unsplit") else None, dict(d.get("payload") or {}),
                   tuple(d.get("capped_blocks") or ()))

    @property
    def key(self) -> LevelKey:
        return LevelKey.of(self.policy, self.alpha)

    @property
    def label(self) -> str:
        return self.key.label

    @property
    def num_segments(self) -> int:
        return len(self.segments)


class Manifest:
    """A loaded, validated plan manifest. Read it through the typed accessors
    (:attr:`model_info`, :attr:`plan_levels`, :meth:`plan_level`, :attr:`segment_blocks`,
    :attr:`level_free_graphs`); :attr:`data` is the JSON document itself."""

    def __init__(self, data: dict[str, Any], plan_dir: Path | None = None) -> None:
        self.data = data
        self.dir = Path(plan_dir) if plan_dir is not None else None
        self.validate()

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, plan_dir: str | Path) -> Manifest:
        plan_dir = Path(plan_dir)
        data = read_json(plan_dir / MANIFEST_FILE, PlanError,
                         f"{plan_dir} is not a plan (run `janus-deploy export`)")
        if not isinstance(data, dict):
            raise PlanError(f"{plan_dir / MANIFEST_FILE} must hold a JSON object")
        return cls(data, plan_dir)

    def save(self, plan_dir: str | Path) -> None:
        self.data["plan_hash"] = plan_hash(self.data)
        Path(plan_dir, MANIFEST_FILE).write_text(json.dumps(self.data, indent=1))

    def validate(self) -> None:
        d = self.data
        if "kind" in d and d["kind"] != KIND:
            raise PlanError(f"manifest kind is {d['kind']!r}, expected {KIND!r}")
        if "format_version" in d and d["format_version"] != FORMAT_VERSION:
            raise PlanError(
                f"manifest format_version {d['format_version']} is not supported (this janus-deploy "
                f"reads {FORMAT_VERSION}); re-export the plan"
            )
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise PlanError(f"manifest is malformed: missing keys {', '.join(missing)}")
        bad = [k for k in _MODEL_KEYS if k not in d["model"]]
        if bad:
            raise PlanError(f"manifest is malformed: model lacks {', '.join(bad)}")
        n = d["model"]["num_blocks"]
        if not d["levels"]:
            raise PlanError("manifest is malformed: no levels")
        for lv in d["levels"]:
            for key in ("alpha", "policy", "tokens", "segments"):
                if key not in lv:
                    raise PlanError(f"manifest is malformed: a level lacks {key!r}")
            if len(lv["tokens"]) != n + 1:
                raise PlanError(f"manifest is malformed: level {lv['alpha']} has {len(lv['tokens'])} token counts, expected {n + 1}")
            if len(lv["segments"]) != len(d["segments"]):
                raise PlanError(f"manifest is malformed: level {lv['alpha']} has {len(lv['segments'])} segments, expected {len(d['segments'])}")
        if len(d["level_free_segments"]) != len(d["segments"]):
            raise PlanError(f"manifest is malformed: {len(d['level_free_segments'])} level-free segments, "
                            f"expected {len(d['segments'])}")
        if "plan_hash" in d and d["plan_hash"] != plan_hash(d):
            raise PlanError("manifest was edited after export (plan_hash does not match); re-export the plan")

    # -- typed accessors ---------------------------------------------------------------------
    @cached_property
    def model_info(self) -> PlanModel:
        return PlanModel.of(self.data["model"])

    @cached_property
    def plan_levels(self) -> list[PlanLevel]:
        return [PlanLevel.of(i, lv) for i, lv in enumerate(self.data["levels"])]

    def plan_level(self, index: int) -> PlanLevel:
        """Level ``index``; PlanError when out of range."""
        self.level(index)
        return self.plan_levels[index]

    @property
    def segment_blocks(self) -> list[tuple[int, int]]:
        """Each segment's block range ``(first, last)``, shared by every level."""
        return [(int(a), int(b)) for a, b in self.data["segments"]]

    @cached_property
    def level_free_graphs(self) -> list[GraphEntry]:
        return [GraphEntry.of(e) for e in self.data["level_free_segments"]]

    @property
    def graph_sha256(self) -> dict[str, str]:
        """File name -> sha256 of every graph of the plan (:meth:`graph_entries`)."""
        return {g.file: str(g.sha256) for g in map(GraphEntry.of, self.graph_entries())}

    @cached_property
    def weights_file(self) -> PlanFile:
        """The weight file every graph reads its initializers from."""
        return PlanFile.of(self.data["weights"])

    @property
    def files_sha256(self) -> list[tuple[str, str]]:
        """(file, sha256) of every file the plan's graphs need: the graphs, then the weight file."""
        w = self.weights_file
        return [*self.graph_sha256.items(), (w.file, w.sha256)]

    # -- accessors ---------------------------------------------------------------------------
    @property
    def hash(self) -> str:
        return self.data.get("plan_hash") or plan_hash(self.data)

    @property
    def model(self) -> dict[str, Any]:
        return self.data["model"]

    @property
    def num_blocks(self) -> int:
        return self.model["num_blocks"]

    @property
    def candidates(self) -> list[int]:
        return list(self.data["candidates"])

    @property
    def levels(self) -> list[dict[str, Any]]:
        return self.data["levels"]

    def level(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.levels):
            raise PlanError(f"level index {index} out of range (plan has {len(self.levels)} levels)")
        return self.levels[index]

    def find_level(self, alpha: float, policy: str = "exponential") -> int:
        want = LevelKey.of(policy, alpha)
        for lv in self.plan_levels:
            if lv.key == want:
                return lv.index
        have = ", ".join(f"{lv.policy}:{lv.alpha}" for lv in self.plan_levels)
        raise PlanError(f"plan has no {policy} level {alpha}; it has {have}")

    def graph_entries(self) -> list[dict[str, Any]]:
        """Every graph file's entry: each level's segments and unsplit graph, then the
        level-free segments."""
        entries = [e for lv in self.levels for e in [*lv["segments"], lv["unsplit"]]]
        return entries + self.level_free_segments

    @property
    def level_free_segments(self) -> list[dict[str, Any]]:
        """Graphs that serve every level (reductions as an input); see docs/manifest.md."""
        return self.data["level_free_segments"]

    def path(self, rel: str) -> Path:
        if self.dir is None:
            raise PlanError("manifest was not loaded from a directory")
        return self.dir / rel

    def edge_segments(self, split: int) -> int:
        """Number of segments the edge runs at ``split`` (the cloud runs the rest)."""
        return edge_segment_count(split, self.num_blocks, self.candidates)

    def payload(self, level_index: int, split: int) -> dict[str, Any]:
        return self.level(level_index)["payload"][str(split)]
