"""Export a pruned, sliced timm ViT into a plan: per-level segment graphs + unsplit graph, one
shared weight file, and ``manifest.json``. Resumable: graphs whose inputs did not change are kept.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from janus_deploy import __version__, levels
from janus_deploy.model.load import ModelSpec, create_from_spec, file_sha256, model_info
from janus_deploy.model.merge import GRAPH_REVISION
from janus_deploy.model.pruned import LevelFreeSegment, Segment, build_level_free_segments, build_segments
from janus_deploy.plan.manifest import FORMAT_VERSION, KIND, MANIFEST_FILE, Manifest, PlanError
from janus_deploy.plan.weights import INDEX_FILE, WEIGHTS_FILE
from janus_deploy.plan.writer import STATE_FILE, GraphWriter, ProgressFn
from janus_deploy.wire.codecs import payload_bytes

DEFAULT_OPSET = 17
DEFAULT_LEVELS = 8
INIT_SEED = 0  # models without a checkpoint are initialised deterministically


@dataclass(frozen=True)
class ExportConfig:
    k: int = 3
    policy: str = "exponential"
    levels: int | None = None
    step: float | None = None
    baseline_r: int | None = None  # extra constant-policy level (ToMe's r) for the baselines
    opset: int = DEFAULT_OPSET

    def __post_init__(self) -> None:
        """Everything that can be checked before a model is built is checked here (a wrong
        ``levels=0`` fails at once, not after the model is created)."""
        if self.opset < 17:
            raise PlanError(f"opset {self.opset} is too old; use 17 or newer")
        levels.check_plan_args(self.policy, self.k, step=self.step, levels=self.levels,
                               baseline_r=self.baseline_r)
        if self.levels is None and self.step is None:
            object.__setattr__(self, "levels", DEFAULT_LEVELS)

    def level_list(self, x0: int, n: int) -> list[tuple[str, float]]:
        grid = levels.level_grid(x0, n, self.policy, step=self.step, levels=self.levels)
        out = [(self.policy, a) for a in grid]
        if self.baseline_r is not None:
            amax = int(levels.alpha_max(x0, n, "constant"))
            if self.baseline_r > amax:
                raise levels.PolicyError(
                    f"baseline r {self.baseline_r} merges more tokens than the model has ({x0} tokens, "
                    f"{n} blocks: r <= {amax}); pick a smaller baseline r")
            out.append(("constant", float(self.baseline_r)))
        return out


def _io(name: str, shape: Sequence[int | str], dtype: str = "float32") -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "dtype": dtype}


def segment_io(seg: Segment | LevelFreeSegment, info) -> tuple[list, list]:
    """Names, shapes and dtypes of a segment's graph inputs and outputs (batch dynamic). Token
    counts are the segment's: numbers for a level's ``Segment``, symbolic names for a
    ``LevelFreeSegment``, whose blocks' reductions come last among its inputs."""
    d, tokens_in, tokens_out = info.embed_dim, seg.in_tokens, seg.out_tokens
    if seg.first:
        ins = [_io("image", ["batch", 3, info.img_size, info.img_size])]
    else:
        ins = [_io("tokens", ["batch", tokens_in, d]), _io("size", ["batch", tokens_in, 1])]
    if isinstance(seg, LevelFreeSegment) and seg.takes_reductions:  # a level's Segment never takes them
        ins.append(_io("reductions", [seg.num_blocks], "int64"))
    if seg.last:
        outs = [_io("logits", ["batch", info.num_classes])]
    else:
        outs = [_io("tokens_out", ["batch", tokens_out, d]), _io("size_out", ["batch", tokens_out, 1])]
    return ins, outs


def _set_shapes(model: onnx.ModelProto, ios: list[dict[str, Any]], values) -> None:
    by_name = {io_["name"]: io_ for io_ in ios}
    for vi in values:
        spec = by_name.get(vi.name)
        if spec is None:
            continue
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for d in spec["shape"]:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


def _compact_names(graph: onnx.GraphProto) -> None:
    """Short names for intermediate values and nodes: the exporter's scope paths are most of a
    small graph's bytes, and every level repeats them."""
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {i.name for i in graph.initializer}
    rename: dict[str, str] = {}
    for node in graph.node:
        node.name = ""
        for i, name in enumerate(node.output):
            if name and name not in keep:
                rename.setdefault(name, f"v{len(rename)}")
                node.output[i] = rename[name]
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.value_info[:]


def export_graph(module: torch.nn.Module, args: tuple[torch.Tensor, ...], ins, outs, opset: int) -> onnx.ModelProto:
    """Trace one segment with the TorchScript exporter (fast). Dimensions named in ``ins`` /
    ``outs`` (batch; token counts of level-free graphs) stay symbolic, the rest are static."""
    buf = io.BytesIO()
    in_names = [i["name"] for i in ins]
    out_names = [o["name"] for o in outs]
    dynamic = {io_["name"]: {i: d for i, d in enumerate(io_["shape"]) if isinstance(d, str)} for io_ in ins + outs}
    dynamic = {k: v for k, v in dynamic.items() if v}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, buf, dynamo=False,  # type: ignore[arg-type]  # a file object works too (torch's docs); its stub names paths
            opset_version=opset, input_names=in_names,
            output_names=out_names, dynamic_axes=dynamic, do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    _compact_names(model.graph)
    _set_shapes(model, ins, model.graph.input)
    _set_shapes(model, outs, model.graph.output)
    return model


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def payloads(info, tokens: Sequence[int], candidates: Sequence[int]) -> dict[str, Any]:
    """What crosses the network at every split point (shapes and bytes per dtype)."""
    n, d = info.num_blocks, info.embed_dim
    out: dict[str, Any] = {}
    for s in candidates:
        if s == 0:
            frame = 3 * info.img_size * info.img_size
            out["0"] = {"tensors": [_io("frame", [info.img_size, info.img_size, 3], "uint8")],
                        "elements": frame, "bytes": {"uint8": frame}}
        elif s == n + 1:
            out[str(s)] = {"tensors": [], "elements": 0, "bytes": {"float32": 0, "float16": 0}}
        else:
            x = tokens[s]
            out[str(s)] = {
                "tensors": [_io("tokens", [x, d]), _io("size", [x, 1])],
                "elements": x * (d + 1),
                "bytes": {"float32": payload_bytes(x, d, "fp32"), "float16": payload_bytes(x, d, "fp16")},
            }
    return out


def check_out_dir(out_dir: str | Path) -> None:
    """Refuse a plan folder that cannot be one (an existing file, or a file on its path); cheap,
    so it runs before anything is loaded."""
    out_dir = Path(out_dir)
    for p in (out_dir, *out_dir.parents):
        if p.exists():
            if not p.is_dir():
                what = "is an existing file" if p == out_dir else f"is inside {p}, an existing file"
                raise PlanError(f"the plan folder {out_dir} {what}; give a new folder path (e.g. plans/{out_dir.stem or 'vit'})")
            break


_PLAN_FILES = (MANIFEST_FILE, STATE_FILE, WEIGHTS_FILE, INDEX_FILE)


def _is_plan_file(name: str) -> bool:
    return name in _PLAN_FILES or (name.endswith(".onnx") and (name.startswith("L") or name.startswith("G_S")))


def check_replace(out_dir: str | Path, spec: ModelSpec, checkpoint_sha256: str | None = None, *,
                  force: bool = False) -> None:
    """Refuse to export into a folder holding another model's plan (same name, overrides and
    checkpoint = the same model, whose unchanged graphs are reused), or into a folder of other
    files, unless ``force``. Hidden entries (``.DS_Store``) do not count."""
    out_dir = Path(out_dir)
    if force or not out_dir.is_dir():
        return
    entries = sorted(p.name for p in out_dir.iterdir() if not p.name.startswith("."))
    if not entries:
        return
    mine = _describe(spec.name, spec.overrides)
    if (out_dir / MANIFEST_FILE).is_file():
        try:
            prev = json.loads((out_dir / MANIFEST_FILE).read_text())["model"]
            prev_name, prev_over = prev["name"], prev.get("overrides") or {}
            prev_sha = prev.get("checkpoint_sha256")
        except (OSError, ValueError, KeyError, TypeError):
            raise PlanError(f"the folder {out_dir} holds a damaged plan manifest; choose another folder, or pass --force to "
                            "replace it") from None
        if (prev_name, prev_over, prev_sha) != (spec.name, dict(spec.overrides), checkpoint_sha256):
            theirs = _describe(prev_name, prev_over) + (" with a checkpoint" if prev_sha else "")
            ours = mine + (" with a checkpoint" if checkpoint_sha256 else "")
            if theirs == ours:  # same name and overrides, another checkpoint
                theirs, ours = f"{theirs} {str(prev_sha)[:12]}", f"{ours} {str(checkpoint_sha256)[:12]}"
            raise PlanError(f"the folder {out_dir} holds the plan of another model ({theirs}); exporting {ours} "
                            "would replace it: choose another folder, or pass --force to replace it")
        return
    foreign = [n for n in entries if not _is_plan_file(n)]
    if foreign:
        raise PlanError(f"the folder {out_dir} is not empty and holds no plan ({len(entries)} "
                        f"entr{'y' if len(entries) == 1 else 'ies'}, e.g. {foreign[0]}); "
                        "choose a new or empty folder, or pass --force to write the plan into it")


def _describe(name: str, overrides: dict[str, Any]) -> str:
    return name + (" " + " ".join(f"{k}={v}" for k, v in overrides.items()) if overrides else "")


def export_plan(
    spec: ModelSpec,
    out_dir: str | Path,
    config: ExportConfig,
    *,
    progress: ProgressFn | None = None,
    force: bool = False,
) -> tuple[Manifest, dict[str, Any]]:
    """Export ``spec`` pruned at the configured levels and sliced at the candidate split points.

    Returns the manifest and export statistics (graphs exported/reused, seconds per graph).
    ``progress(description, done, total)`` is called after every graph. A folder holding another
    model's plan (or other files) is refused unless ``force`` (:func:`check_replace`). Every check
    runs before the folder is created, and a folder this call created is removed again when the
    export fails before writing anything into it.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    model = create_from_spec(spec, INIT_SEED)
    info = model_info(model)
    ckpt_sha = file_sha256(spec.checkpoint) if spec.checkpoint else None
    check_replace(out_dir, spec, ckpt_sha, force=force)
    candidates = levels.candidate_splits(info.num_blocks, config.k)
    ranges = levels.segment_ranges(info.num_blocks, candidates)
    level_list = config.level_list(info.num_tokens, info.num_blocks)
    created = _make_dir(out_dir)
    try:
        return _export(_Source(spec, model, info, ckpt_sha, candidates, ranges, level_list, config), out_dir, progress)
    except BaseException:
        _remove_empty(created)
        raise


def _make_dir(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` (and missing parents); the folders created, deepest first."""
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlanError(f"cannot create the plan folder {out_dir}: {exc.strerror}") from None
    return created


def _remove_empty(created: list[Path]) -> None:
    for p in created:
        try:
            p.rmdir()  # only when empty
        except OSError:
            return


@dataclass(frozen=True)
class _Source:
    """What every graph of one export is made from: the model, its shape, the split layout and
    the key that names the model in every graph key (checkpoint, seed, opset, code revision)."""

    spec: ModelSpec
    model: torch.nn.Module
    info: Any
    ckpt_sha: str | None
    candidates: list[int]
    ranges: list[tuple[int, int]]
    level_list: list[tuple[str, float]]
    config: ExportConfig

    @property
    def model_key(self) -> tuple[Any, ...]:
        return (self.spec.to_dict(), self.ckpt_sha, INIT_SEED, self.config.opset, __version__, GRAPH_REVISION)

    @property
    def graph_count(self) -> int:
        """Graphs in the plan: per level its segments and its unsplit graph, then the level-free segments."""
        return len(self.level_list) * (len(self.ranges) + 1) + len(self.ranges)

    def example_image(self) -> torch.Tensor:
        size = self.info.img_size
        return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def _export(src: _Source, out_dir: Path, progress: ProgressFn | None) -> tuple[Manifest, dict[str, Any]]:
    """The export itself, once every check passed and the folder exists: the graphs through one
    :class:`GraphWriter`, then the manifest assembled from their entries."""
    weights_key = _key(src.model_key)
    writer = GraphWriter(out_dir, weights_key, src.graph_count, progress)
    image = src.example_image()
    level_rows = [_level_row(writer, src, li, pol, alpha, image) for li, (pol, alpha) in enumerate(src.level_list)]
    level_free = _level_free_entries(writer, src, level_rows[-1]["reductions"], image)
    data = _manifest_data(src, weights_key, writer.weights_entry(), level_rows, level_free)
    manifest = Manifest(data, out_dir)
    return manifest, writer.finish(manifest)


def _write_chain(writer: GraphWriter, src: _Source, segs: Sequence[Segment | LevelFreeSegment], image: torch.Tensor,
                 name: Callable[[int], str], key: Callable[[Any], str],
                 extra: Callable[[Any], tuple[torch.Tensor, ...]] = lambda seg: ()) -> list[dict[str, Any]]:
    """Write a chain of segments, each traced on the previous one's outputs (plus ``extra(seg)``
    inputs); their manifest entries, with index and blocks."""
    entries = []
    args: tuple[torch.Tensor, ...] = (image,)
    for si, seg in enumerate(segs):
        ins, outs = segment_io(seg, src.info)
        seg_args = args + extra(seg)
        entry = writer.write(name(si), key(seg), _tracer(seg, seg_args, ins, outs, src.config.opset), ins, outs)
        entries.append({"index": si, "blocks": [seg.start, seg.end], **entry})
        with torch.no_grad():
            res = seg(*seg_args)
        args = res if isinstance(res, tuple) else (res,)
    return entries


def _tracer(module: torch.nn.Module, args: tuple[torch.Tensor, ...], ins: list, outs: list, opset: int
            ) -> Callable[[], onnx.ModelProto]:
    return lambda: export_graph(module, args, ins, outs, opset)


def _level_row(writer: GraphWriter, src: _Source, li: int, pol: str, alpha: float, image: torch.Tensor) -> dict[str, Any]:
    """One level: its segment chain, its unsplit graph, and its manifest row."""
    info, mk = src.info, src.model_key
    sched = levels.schedule(pol, alpha, info.num_tokens, info.num_blocks, info.num_prefix_tokens)
    segs = build_segments(src.model, sched, src.candidates)
    seg_entries = _write_chain(writer, src, segs, image, lambda si: f"L{li:02d}_S{si:02d}.onnx",
                               lambda seg: _key(mk, pol, alpha, seg.start, seg.end, seg.first, seg.last))
    full = Segment(src.model, sched, 1, info.num_blocks, first=True, last=True)
    ins, outs = segment_io(full, info)
    unsplit = writer.write(f"L{li:02d}_full.onnx", _key(mk, pol, alpha, "full"),
                           _tracer(full, (image,), ins, outs, src.config.opset), ins, outs)
    return {
        "index": li, "policy": pol, "alpha": alpha, "tokens": list(sched.tokens),
        "reductions": list(sched.reductions), "capped_blocks": list(sched.capped),
        "segments": seg_entries, "unsplit": unsplit,
        "payload": payloads(info, sched.tokens, src.candidates),
    }


def _level_free_entries(writer: GraphWriter, src: _Source, reductions: list[int], image: torch.Tensor) -> list[dict[str, Any]]:
    """The level-free segment chain, traced with one level's ``reductions`` (any level traces the
    same graph: the ops do not depend on r's values)."""
    def red(seg: LevelFreeSegment) -> tuple[torch.Tensor, ...]:
        return (torch.tensor(reductions[seg.start - 1: seg.end], dtype=torch.int64),) if seg.takes_reductions else ()

    mk = src.model_key
    return _write_chain(writer, src, build_level_free_segments(src.model, src.candidates), image,
                        lambda si: f"G_S{si:02d}.onnx",
                        lambda seg: _key(mk, "level-free", seg.start, seg.end, seg.first, seg.last), red)


def _manifest_data(src: _Source, weights_key: str, weights: dict[str, Any], level_rows: list[dict[str, Any]],
                   level_free: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's content (``docs/manifest.md``) from the graphs' entries: pure."""
    spec, info, config = src.spec, src.info, src.config
    weight_bytes = sum(t.numel() * t.element_size() for t in src.model.state_dict().values())
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "janus_deploy_version": __version__,
        "model": {
            "name": spec.name, "overrides": spec.overrides,
            "checkpoint": str(spec.checkpoint) if spec.checkpoint else None,
            "checkpoint_sha256": src.ckpt_sha, "init_seed": None if spec.checkpoint else INIT_SEED,
            "num_blocks": info.num_blocks, "embed_dim": info.embed_dim, "num_tokens": info.num_tokens,
            "num_prefix_tokens": info.num_prefix_tokens, "img_size": info.img_size,
            "num_classes": info.num_classes, "mean": list(info.mean), "std": list(info.std),
            "weight_bytes": weight_bytes, "weights_key": weights_key,
        },
        "policy": {"name": config.policy, "k": config.k, "step": config.step, "levels": config.levels,
                   "alpha_max": levels.alpha_max(info.num_tokens, info.num_blocks, config.policy),
                   "baseline_r": config.baseline_r},
        "opset": config.opset,
        "candidates": src.candidates,
        "segments": [list(r) for r in src.ranges],
        "weights": weights,
        "levels": level_rows,
        "level_free_segments": level_free,
    }


def plan_size_bytes(plan_dir: str | Path) -> int:
    """Bytes on disk of the plan directory (graphs, weight file, manifest)."""
    plan_dir = Path(plan_dir)
    return sum(p.stat().st_size for p in plan_dir.iterdir() if p.is_file())


__all__ = ["ExportConfig", "check_out_dir", "check_replace", "export_plan", "plan_size_bytes", "payloads", "MANIFEST_FILE"]
