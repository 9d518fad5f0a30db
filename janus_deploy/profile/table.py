"""The profile data model (``docs/profile-format.md``): load, validate, save, synthesise, presets.

A profile says how fast every (level, split) of one plan runs on one device and what crosses the
network at every split point. An *edge* profile and a *cloud* profile of the same plan combine into
a full latency table: the edge pays ``head_ms[s]``, the cloud ``tail_ms[s]``.

Everything here is plain Python (json + dataclasses); token counts always come from
:mod:`janus_deploy.levels`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from janus_deploy import JanusError, read_json
from janus_deploy import levels as P
from janus_deploy.profile.dominance import SlowerThan, slower_than_lighter
from janus_deploy.profile.schema import LevelDoc, ModelDoc, ProfileDoc, validate_doc
from janus_deploy.wire import codecs as wire_codecs

KIND = "janus-deploy/profile"
FORMAT_VERSION = 1
SOURCES = ("measured", "linear", "preset")
#: codecs that :func:`profile_from_linear` can size analytically
ANALYTIC_CODECS = ("fp32", "fp16", "int8")
#: further codecs :func:`profile_from_linear` can size analytically when asked (not by default)
ANALYTIC_EXTRA = ("int4",)
PRESET_PACKAGE = "janus_deploy.profile"
PRESET_DIR = "presets"


class ProfileError(JanusError):
    """A profile file or profile parameter is malformed or inconsistent."""


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class ModelInfo:
    """What the plan's model looks like (enough to recompute token schedules and frame sizes)."""

    name: str
    num_blocks: int
    embed_dim: int
    num_tokens: int
    num_prefix_tokens: int
    img_size: tuple[int, int]  # (H, W)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one uint8 RGB frame (what cloud-only sends uncompressed)."""
        return 3 * self.img_size[0] * self.img_size[1]

    def to_dict(self) -> dict[str, Any]:
        h, w = self.img_size
        return {
            "name": self.name,
            "num_blocks": self.num_blocks,
            "embed_dim": self.embed_dim,
            "num_tokens": self.num_tokens,
            "num_prefix_tokens": self.num_prefix_tokens,
            "img_size": h if h == w else [h, w],
        }


@dataclass(frozen=True)
class Payload:
    """What crosses the uplink at one split point with one codec."""

    bytes: int
    encode_ms: float = 0.0
    decode_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "encode_ms": self.encode_ms, "decode_ms": self.decode_ms}


@dataclass(frozen=True)
class SegmentStat:
    """Latency statistics of one measured segment (ms)."""

    median: float
    p95: float | None = None
    mean: float | None = None
    std: float | None = None
    runs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "p95": self.p95, "mean": self.mean, "std": self.std,
                "runs": self.runs}


@dataclass
class Level:
    """One pruning level: its token schedule, head/tail latencies and payloads per split."""

    policy: str
    alpha: float
    tokens: list[int]
    head_ms: dict[int, float]
    tail_ms: dict[int, float]
    payload: dict[str, dict[int, Payload]]
    segment_ms: list[SegmentStat] | None = None

    @property
    def label(self) -> str:
        """The level's label (:class:`~janus_deploy.levels.LevelKey`): ``0.12``, ``r23``."""
        return self.key.label

    @property
    def key(self) -> P.LevelKey:
        return P.LevelKey.of(self.policy, self.alpha)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "alpha": self.alpha, "tokens": list(self.tokens)}
        if self.segment_ms is not None:
            out["segment_ms"] = [s.to_dict() for s in self.segment_ms]
        out["head_ms"] = {str(k): v for k, v in sorted(self.head_ms.items())}
        out["tail_ms"] = {str(k): v for k, v in sorted(self.tail_ms.items())}
        out["payload"] = {
            codec: {str(k): p.to_dict() for k, p in sorted(entries.items())}
            for codec, entries in self.payload.items()
        }
        return out


@dataclass
class Profile:
    """A validated profile (see ``docs/profile-format.md``). Build it with :func:`load_profile`,
    :func:`profile_from_dict` or :func:`profile_from_linear`, never field by field."""

    source: str
    provenance: str
    plan_hash: str | None
    device: dict[str, Any]
    model: ModelInfo
    candidates: list[int]
    segments: list[tuple[int, int]]
    levels: list[Level]
    codecs: dict[str, dict[str, Any]]
    default_codec: str | None
    linear_model: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    kind: str = KIND
    _index: dict[P.LevelKey, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = {lv.key: i for i, lv in enumerate(self.levels)}

    # ---- shape
    @property
    def num_blocks(self) -> int:
        return self.model.num_blocks

    @property
    def device_name(self) -> str:
        return str(self.device.get("name", "?"))

    @property
    def codec_names(self) -> list[str]:
        """Codecs present in every level (what a scheduler may use; frame codecs have split 0 only)."""
        names = [set(lv.payload) for lv in self.levels]
        common = set.intersection(*names) if names else set()
        return sorted(common)

    # ---- levels
    def level_index(self, policy: str, alpha: float) -> int:
        """Index of the level ``(policy, alpha)``; :class:`ProfileError` if absent."""
        try:
            return self._index[P.LevelKey.of(policy, alpha)]
        except KeyError:
            have = ", ".join(lv.label for lv in self.levels[:8])
            raise ProfileError(
                f"profile has no {policy} level {alpha:g} (levels: {have}"
                f"{', ...' if len(self.levels) > 8 else ''})"
            ) from None

    def levels_of(self, policy: str) -> list[int]:
        """Indices of the levels of one policy, by increasing level value."""
        idx = [i for i, lv in enumerate(self.levels) if lv.policy == policy]
        return sorted(idx, key=lambda i: self.levels[i].alpha)

    # ---- accessors the scheduler needs
    def head_ms(self, level_idx: int, split: int) -> float:
        """Edge latency at ``split`` (blocks 1..split plus embedding; all of it at N+1)."""
        return self._level(level_idx).head_ms[self._split(split)]

    def tail_ms(self, level_idx: int, split: int) -> float:
        """Cloud latency at ``split`` (blocks split+1..N plus the head)."""
        return self._level(level_idx).tail_ms[self._split(split)]

    def payload(self, level_idx: int, split: int, codec: str | None = None) -> Payload:
        """What crosses the uplink at ``split`` with ``codec`` (default: ``default_codec``)."""
        lv = self._level(level_idx)
        name = self.resolve_codec(codec)
        if name not in lv.payload:
            raise ProfileError(
                f"level {lv.label} has no payload for codec {name!r} "
                f"(has: {', '.join(sorted(lv.payload)) or 'none'})"
            )
        entries = lv.payload[name]
        if self._split(split) not in entries:
            raise ProfileError(f"codec {name!r} is a frame codec: it has a payload at split 0 only, not at {split}")
        return entries[split]

    def payload_bytes(self, level_idx: int, split: int, codec: str | None = None) -> int:
        return self.payload(level_idx, split, codec).bytes

    def encode_ms(self, level_idx: int, split: int, codec: str | None = None) -> float:
        return self.payload(level_idx, split, codec).encode_ms

    def decode_ms(self, level_idx: int, split: int, codec: str | None = None) -> float:
        return self.payload(level_idx, split, codec).decode_ms

    def resolve_codec(self, codec: str | None) -> str:
        """``codec`` or the profile's default; :class:`ProfileError` naming the choices."""
        name = codec or self.default_codec
        if name is not None and codec is None and wire_codecs.is_frame_codec(name):
            raise ProfileError(f"default_codec {name!r} is a frame codec (split 0 only); the default must be a token codec")
        if name is None:
            have = self.codec_names
            if len(have) == 1:
                return have[0]
            raise ProfileError(
                f"the profile has no default_codec; pick one with --codec ({', '.join(have)})"
            )
        if name not in self.codec_names:
            raise ProfileError(
                f"codec {name!r} is not in the profile (available in every level: "
                f"{', '.join(self.codec_names) or 'none'})"
            )
        return name

    def slower_than_lighter(self) -> list[list[SlowerThan]]:
        """Per level, the levels with fewer merges that run faster on this device, overall or at
        some split (``docs/profile-format.md``; saved as ``levels[i].slower_than``)."""
        return slower_than_lighter(self.levels)

    def total_ms(self, level_idx: int) -> float:
        """Device-only latency of a level (``head_ms[N+1]``)."""
        return self.head_ms(level_idx, self.num_blocks + 1)

    def _level(self, level_idx: int) -> Level:
        if not 0 <= level_idx < len(self.levels):
            raise ProfileError(f"level index {level_idx} out of range (0..{len(self.levels) - 1})")
        return self.levels[level_idx]

    def _split(self, split: int) -> int:
        if split not in self.candidates:
            raise ProfileError(f"split {split} is not a candidate split point {self.candidates}")
        return split

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "kind": self.kind,
            "source": self.source,
            "provenance": self.provenance,
            "plan_hash": self.plan_hash,
            "device": dict(self.device),
            "model": self.model.to_dict(),
            "candidates": list(self.candidates),
            "segments": [list(s) for s in self.segments],
            "levels": [_with_flags(lv.to_dict(), flags) for lv, flags in zip(self.levels, self.slower_than_lighter())],
            "codecs": {k: dict(v) for k, v in self.codecs.items()},
            "default_codec": self.default_codec,
        }
        if self.linear_model is not None:
            out["linear_model"] = dict(self.linear_model)
        return out


def _with_flags(level: dict[str, Any], flags: list[SlowerThan]) -> dict[str, Any]:
    if flags:
        level["slower_than"] = [f.to_dict() for f in flags]
    return level


# --------------------------------------------------------------------------- parsing + validation


def _split_keyed(d: Mapping[str, Any], candidates: list[int], where: str) -> dict[int, Any]:
    """A ``{"<split>": value}`` object whose keys are exactly the candidate split points."""
    out: dict[int, Any] = {}
    for k, v in d.items():
        try:
            out[int(k)] = v
        except (TypeError, ValueError):
            raise ProfileError(f"{where} has a non-integer split key {k!r}") from None
    missing = [s for s in candidates if s not in out]
    extra = sorted(set(out) - set(candidates))
    if missing or extra:
        raise ProfileError(
            f"{where} keys must be exactly the candidate split points {candidates}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    return out


def _model_of(doc: ModelDoc) -> ModelInfo:
    img = doc.img_size
    hw = (img, img) if isinstance(img, int) else (img[0], img[1])
    info = ModelInfo(doc.name, doc.num_blocks, doc.embed_dim, doc.num_tokens, doc.num_prefix_tokens, hw)
    if info.num_tokens <= info.num_prefix_tokens:
        raise ProfileError(
            f"model.num_tokens ({info.num_tokens}) must exceed num_prefix_tokens "
            f"({info.num_prefix_tokens})"
        )
    return info


def _payload_of(d: dict[str, dict[str, Any]], candidates: list[int], n: int, where: str) -> dict[str, dict[int, Payload]]:
    out: dict[str, dict[int, Payload]] = {}
    for codec, entries in d.items():
        w = f"{where}.{codec}"
        if wire_codecs.is_frame_codec(str(codec)):  # an encoded image: split 0 only
            if set(entries) != {"0"}:
                raise ProfileError(f"{w} is a frame codec: it has a payload at split 0 only (keys ['0']), "
                                   f"got {sorted(entries)}")
            e = entries["0"]
            out[str(codec)] = {0: Payload(e.bytes, float(e.encode_ms), float(e.decode_ms))}
            continue
        parsed = {s: Payload(e.bytes, float(e.encode_ms), float(e.decode_ms))
                  for s, e in _split_keyed(entries, candidates, w).items()}
        if parsed[n + 1].bytes != 0:
            raise ProfileError(f"{w}[{n + 1}] (device only) must send 0 bytes, "
                               f"got {parsed[n + 1].bytes}")
        out[str(codec)] = parsed
    return out


def _check_tokens(tokens: list[int], policy: str, alpha: float, model: ModelInfo, where: str) -> None:
    n = model.num_blocks
    if len(tokens) != n + 1:
        raise ProfileError(f"{where}.tokens must list x_0..x_N ({n + 1} counts), got {len(tokens)}")
    if tokens[0] != model.num_tokens:
        raise ProfileError(f"{where}.tokens[0] = {tokens[0]} but model.num_tokens = {model.num_tokens}")
    for i in range(1, len(tokens)):
        if tokens[i] > tokens[i - 1]:
            raise ProfileError(
                f"{where}.tokens is not non-increasing: x_{i} = {tokens[i]} > x_{i - 1} = "
                f"{tokens[i - 1]} (token counts can only shrink)"
            )
    if tokens[-1] < 1:
        raise ProfileError(f"{where}.tokens ends with {tokens[-1]} tokens; at least 1 must remain")
    try:
        want = P.schedule(policy, alpha, model.num_tokens, n, model.num_prefix_tokens).tokens
    except P.PolicyError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    if tuple(tokens) != tuple(want):
        raise ProfileError(
            f"{where}.tokens {list(tokens)[:6]}... disagree with janus_deploy.levels.schedule"
            f"({policy!r}, {alpha:g}) = {list(want)[:6]}...; the profile was made for another "
            "schedule; re-profile the plan"
        )


def _check_monotone(head: dict[int, float], tail: dict[int, float], candidates: list[int],
                    n: int, where: str) -> None:
    if head[0] != 0.0:
        raise ProfileError(f"{where}.head_ms['0'] must be 0 (cloud only runs nothing on the edge), "
                           f"got {head[0]}")
    if tail[n + 1] != 0.0:
        raise ProfileError(f"{where}.tail_ms['{n + 1}'] must be 0 (device only), got {tail[n + 1]}")
    tol = 1e-6
    for a, b in zip(candidates, candidates[1:]):
        if head[b] < head[a] - tol:
            raise ProfileError(f"{where}.head_ms decreases from split {a} ({head[a]}) to {b} "
                               f"({head[b]}); the edge runs more blocks at later splits")
        if tail[b] > tail[a] + tol:
            raise ProfileError(f"{where}.tail_ms increases from split {a} ({tail[a]}) to {b} "
                               f"({tail[b]}); the cloud runs fewer blocks at later splits")


def _level_of(d: LevelDoc, i: int, model: ModelInfo, candidates: list[int],
              segments: list[tuple[int, int]]) -> Level:
    where = f"levels[{i}]"
    n = model.num_blocks
    alpha = float(d.alpha)
    _check_tokens(list(d.tokens), d.policy, alpha, model, where)
    head = {s: float(v) for s, v in _split_keyed(d.head_ms, candidates, f"{where}.head_ms").items()}
    tail = {s: float(v) for s, v in _split_keyed(d.tail_ms, candidates, f"{where}.tail_ms").items()}
    _check_monotone(head, tail, candidates, n, where)
    seg = None
    if d.segment_ms is not None:
        if len(d.segment_ms) != len(segments):
            raise ProfileError(f"{where}.segment_ms must have one entry per segment "
                               f"({len(segments)}), got {len(d.segment_ms)}")
        seg = [SegmentStat(float(e.median), e.p95, e.mean, e.std, e.runs) for e in d.segment_ms]
    payload = _payload_of(d.payload, candidates, n, f"{where}.payload")
    return Level(d.policy, alpha, list(d.tokens), head, tail, payload, seg)


def profile_from_dict(d: Any, *, where: str = "profile") -> Profile:
    """Validate a parsed profile JSON object (shape: :class:`~janus_deploy.profile.schema.ProfileDoc`;
    meaning: token schedules, split points, monotone latencies) and build a :class:`Profile`."""
    if not isinstance(d, Mapping):
        raise ProfileError(f"{where} must be a JSON object, got {type(d).__name__}")
    kind = d.get("kind")
    if kind != KIND:
        raise ProfileError(f"{where} has kind {kind!r}, expected {KIND!r} (is this an accuracy "
                           "table or a manifest?)")
    ver = d.get("format_version")
    if ver != FORMAT_VERSION:
        raise ProfileError(f"{where} has format_version {ver!r}; this janus-deploy reads version "
                           f"{FORMAT_VERSION} (re-create the profile with this version)")
    doc = validate_doc(ProfileDoc, dict(d), where, ProfileError)
    model = _model_of(doc.model)
    n = model.num_blocks
    cands = list(doc.candidates)
    if cands != sorted(set(cands)):
        raise ProfileError(f"candidates must be strictly increasing, got {cands}")
    if cands[0] != 0 or cands[-1] != n + 1 or any(c > n + 1 for c in cands):
        raise ProfileError(f"candidates must start with 0 (cloud only), end with N+1 = {n + 1} "
                           f"(device only) and stay within 0..{n + 1}; got {cands}")
    segs = [(a, b) for a, b in doc.segments]
    want = P.segment_ranges(n, cands)
    if segs != want:
        raise ProfileError(f"segments {segs} do not match the candidate split points "
                           f"(expected {[list(s) for s in want]})")
    levels = [_level_of(lv, i, model, cands, segs) for i, lv in enumerate(doc.levels)]
    seen: dict[P.LevelKey, int] = {}
    for i, lv in enumerate(levels):
        key = lv.key
        if key in seen:
            raise ProfileError(f"levels[{i}] repeats levels[{seen[key]}] ({lv.policy} {lv.alpha:g})")
        seen[key] = i
    prof = Profile(
        source=doc.source,
        provenance=doc.provenance,
        plan_hash=doc.plan_hash,
        device=dict(doc.device),
        model=model,
        candidates=cands,
        segments=segs,
        levels=levels,
        codecs={str(k): dict(v) for k, v in doc.codecs.items()},
        default_codec=doc.default_codec,
        linear_model=doc.linear_model,
    )
    _check_flags(doc, prof)
    if doc.default_codec is not None and doc.default_codec not in prof.codec_names:
        raise ProfileError(f"default_codec {doc.default_codec!r} has no payload in every level "
                           f"(codecs present everywhere: {', '.join(prof.codec_names) or 'none'})")
    return prof


def _check_flags(doc: ProfileDoc, prof: Profile) -> None:
    """Stored ``slower_than`` flags (optional; older profiles have none) must be what the
    latencies say."""
    for i, (lv, flags) in enumerate(zip(doc.levels, prof.slower_than_lighter())):
        if lv.slower_than is not None and [SlowerThan.from_dict(f.model_dump()) for f in lv.slower_than] != flags:
            raise ProfileError(f"levels[{i}].slower_than disagrees with the profile's latencies "
                               "(edited by hand?); delete it or re-create the profile")


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile JSON file."""
    p = Path(path)
    data = read_json(p, ProfileError, "give a profile written by `janus-deploy profile` or a preset name")
    try:
        return profile_from_dict(data, where=p.name)
    except ProfileError as exc:
        raise ProfileError(f"{p}: {exc}") from None


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write ``profile`` as JSON (validated by a round trip first, so a bad one never lands)."""
    data = profile.to_dict()
    profile_from_dict(json.loads(json.dumps(data)))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=1) + "\n")
    return p


# --------------------------------------------------------------------------- linear model


def parse_linear(text: str) -> tuple[float, float]:
    """Parse ``"a,b"`` (per-block ms = a + b·tokens), e.g. ``"0.41,0.0235"``."""
    parts = [t.strip() for t in str(text).split(",")]
    if len(parts) != 2:
        raise ProfileError(f"expected the linear model as 'a,b' (ms, ms per token), got {text!r}")
    try:
        a, b = float(parts[0]), float(parts[1])
    except ValueError:
        raise ProfileError(f"the linear model 'a,b' must be two numbers, got {text!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ProfileError(f"the linear model 'a,b' must be finite numbers, got {text!r}")
    return a, b


def block_costs(tokens: Sequence[int], a_ms: float, b_ms_per_token: float,
                min_block_ms: float = 0.0) -> list[float]:
    """Per-block latency ``a + b·x_{l-1}`` (input tokens of block l), floored at ``min_block_ms``.

    The floor matters for fits with a negative intercept (read off a plot over the measured
    range): extrapolated to a handful of tokens they would predict a negative block latency.
    """
    return [max(a_ms + b_ms_per_token * x, min_block_ms) for x in tokens[:-1]]


def token_payload_bytes(tokens: int, dim: int, codec: str) -> int:
    """Uncompressed bytes of a split's payload with ``codec`` (see :mod:`janus_deploy.wire.codecs`)."""
    try:
        return wire_codecs.payload_bytes(tokens, dim, codec)
    except wire_codecs.CodecError:
        raise ProfileError(f"no analytic payload size for codec {codec!r} "
                           f"(analytic codecs: {', '.join(ANALYTIC_CODECS)})") from None


def _model_info(d: Mapping[str, Any] | ModelInfo) -> ModelInfo:
    if isinstance(d, ModelInfo):
        return d
    return _model_of(validate_doc(ModelDoc, dict(d), "model", ProfileError))  # type: ignore[arg-type]  # validate_doc is typed BaseModel; here it returns a ModelDoc


def profile_from_linear(
    model_info: Mapping[str, Any] | ModelInfo,
    candidates: Sequence[int],
    levels: Iterable[tuple[str, float]],
    a_ms: float,
    b_ms_per_token: float,
    *,
    device: Mapping[str, Any] | None = None,
    codecs: Sequence[str] = ANALYTIC_CODECS,
    default_codec: str | None = "fp16",
    source: str = "linear",
    provenance: str = "",
    plan_hash: str | None = None,
    min_block_ms: float = 0.0,
    linear_fit: Mapping[str, Any] | None = None,
) -> Profile:
    """Synthesise a profile where block l costs ``a + b·x_{l-1}`` ms (tokens from ``policy``).

    ``head_ms[s]`` sums blocks 1..s (all N at s = N+1), ``tail_ms[s]`` the rest. Embedding and
    classifier head are not modelled (the paper's fits are per block). Payloads are analytic for
    ``codecs`` (see :func:`token_payload_bytes`); s = 0 sends the uint8 frame, s = N+1 nothing;
    encode/decode cost 0.
    """
    model = _model_info(model_info)
    n, x0, prefix = model.num_blocks, model.num_tokens, model.num_prefix_tokens
    cands = sorted(set(int(c) for c in candidates))
    if not cands or cands[0] != 0 or cands[-1] != n + 1:
        raise ProfileError(f"candidates must include 0 and N+1 = {n + 1}, got {cands}")
    out_levels: list[Level] = []
    for pol, alpha in levels:
        try:
            sched = P.schedule(pol, alpha, x0, n, prefix)
        except P.PolicyError as exc:
            raise ProfileError(str(exc)) from None
        costs = block_costs(sched.tokens, a_ms, b_ms_per_token, min_block_ms)
        total = sum(costs)
        head: dict[int, float] = {}
        tail: dict[int, float] = {}
        payload: dict[str, dict[int, Payload]] = {c: {} for c in codecs}
        for s in cands:
            edge_blocks = min(s, n)
            h = sum(costs[:edge_blocks])
            head[s] = round(h, 6)
            tail[s] = round(max(total - h, 0.0), 6) if s <= n else 0.0
            for c in codecs:
                if s == 0:
                    nbytes = model.frame_bytes
                elif s == n + 1:
                    nbytes = 0
                else:
                    nbytes = token_payload_bytes(sched.tokens[s], model.embed_dim, c)
                payload[c][s] = Payload(nbytes, 0.0, 0.0)
        out_levels.append(Level(pol, float(alpha), list(sched.tokens), head, tail, payload))
    lm = {"a_ms": a_ms, "b_ms_per_token": b_ms_per_token, "r": None, "max_rel_err": None}
    if linear_fit:
        lm.update(linear_fit)
    prof = Profile(
        source=source,
        provenance=provenance,
        plan_hash=plan_hash,
        device=dict(device or {"name": "synthetic"}),
        model=model,
        candidates=cands,
        segments=P.segment_ranges(n, cands),
        levels=out_levels,
        codecs={c: {"lossless": c == "fp32", "top1_agreement": 1.0 if c == "fp32" else None}
                for c in codecs},
        default_codec=default_codec if default_codec in codecs else (codecs[0] if codecs else None),
        linear_model=lm,
    )
    return profile_from_dict(json.loads(json.dumps(prof.to_dict())))


# --------------------------------------------------------------------------- presets

_PRESET_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def preset_names() -> list[str]:
    """Names of the profiles shipped in ``janus_deploy/profile/presets/`` (without ``.json``)."""
    root = resources.files(PRESET_PACKAGE) / PRESET_DIR
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e.name[:-5] for e in entries if e.name.endswith(".json"))


def load_preset(name: str) -> Profile:
    """Load a shipped preset profile by name (e.g. ``vit_large_patch16_384-jetson-orin-nano``)."""
    names = preset_names()
    if name not in names or not _PRESET_NAME.match(name):
        raise ProfileError(f"unknown preset profile {name!r}; available presets: "
                           f"{', '.join(names) or 'none installed'}")
    res = resources.files(PRESET_PACKAGE) / PRESET_DIR / f"{name}.json"
    try:
        return profile_from_dict(json.loads(res.read_text()), where=f"preset {name}")
    except json.JSONDecodeError as exc:
        raise ProfileError(f"preset {name} is not valid JSON ({exc}); reinstall janus-deploy") from None


def resolve_profile(spec: str | Path) -> Profile:
    """A profile from a file path, or a preset name when no such file exists."""
    p = Path(spec)
    if p.is_file():
        return load_profile(p)
    s = str(spec)
    if s.endswith(".json") or "/" in s or "\\" in s:
        raise ProfileError(f"profile file {p} does not exist (presets: {', '.join(preset_names())})")
    return load_preset(s)
