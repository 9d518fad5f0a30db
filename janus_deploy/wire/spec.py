"""The tail models' V2 interface: one spec per (level, split), and validation driven by it.

One V2 model per (level, split) tail, named ``janus_L{level}_S{split}`` (:func:`model_name`): it
runs the segments of plan level ``level`` that come after split point ``split``.

* split 0: input ``frame`` [B, H, W, 3] UINT8, or ``frame_coded`` [B, L] UINT8 (a frame codec's
  JPEG or PNG images, :mod:`janus_deploy.wire.codecs`); the whole model runs in the cloud.
* 1 <= split <= N: inputs ``tokens`` [B, x_s, D] (FP32 | FP16 | INT8), ``size`` [B, x_s, 1]
  (FP32 | FP16) and, for INT8 tokens, ``token_scale`` [B, x_s, 1] FP32; or, for int4,
  ``tokens_q4`` [B, x_s, D/2] UINT8 with ``group_scale`` [B, x_s, D/G] FP16 in place of
  ``tokens``. A -1 in a shape is any length.
* output ``logits`` [B, num_classes] FP32.

The built-in server, the Triton repository exporter and the edge all read these specs; the
server validates requests with :func:`validate_inputs`, which reads the names, datatypes and
shapes from the spec (nothing here restates them). Takes any object with the manifest's
``model``, ``levels``, ``candidates``, ``num_blocks`` and ``edge_segments`` (no plan import:
the wire format sits below the plan in the data flow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from janus_deploy.wire.codecs import FRAME_CODED, int4_group
from janus_deploy.wire.v2 import EntryCheck, WireError, model_name, short, v2_datatype

MODEL_VERSION = "1"
TOKEN_DTYPES = ("FP32", "FP16", "INT8")
SIZE_DTYPES = ("FP32", "FP16")


@dataclass(frozen=True)
class TailSpec:
    """One servable V2 model: the segments ``first_segment ..`` of one plan level."""

    name: str
    level: int
    split: int
    first_segment: int
    num_segments: int
    tokens: int  # x_s (0 for split 0)
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]

    @property
    def segment_keys(self) -> list[tuple[int, int]]:
        return [(self.level, s) for s in range(self.first_segment, self.num_segments)]

    def input(self, name: str) -> dict[str, Any]:
        return next(i for i in self.inputs if i["name"] == name)

    def metadata(self) -> dict[str, Any]:
        """The V2 model-metadata answer."""
        return {
            "name": self.name, "versions": [MODEL_VERSION], "platform": "janus-deploy",
            "inputs": [dict(i) for i in self.inputs], "outputs": [dict(o) for o in self.outputs],
            "parameters": {"level": self.level, "split": self.split, "tokens": self.tokens,
                           "segments": [self.first_segment, self.num_segments - 1]},
        }


def _spec(name: str, datatypes: tuple[str, ...], shape: list[int], **extra: Any) -> dict[str, Any]:
    """``datatype`` is the canonical one (first); ``parameters.datatypes`` lists all accepted
    when there is more than one."""
    d = {"name": name, "datatype": datatypes[0], "shape": shape, **extra}
    if len(datatypes) > 1:
        d.setdefault("parameters", {})["datatypes"] = list(datatypes)
    return d


def accepted_datatypes(inp: Mapping[str, Any]) -> list[str]:
    return list((inp.get("parameters") or {}).get("datatypes") or [inp["datatype"]])


def tail_models(manifest: Any) -> dict[str, TailSpec]:
    """Every servable (level, split) of a plan: splits 0..N of the candidates (N+1 = device only)."""
    m = manifest.model_info
    n, d, img, classes = manifest.num_blocks, m.embed_dim, m.img_size, m.num_classes
    out: dict[str, TailSpec] = {}
    outputs = ({"name": "logits", "datatype": "FP32", "shape": [-1, classes]},)
    for lv in manifest.plan_levels:
        li, nseg = lv.index, lv.num_segments
        for s in manifest.candidates:
            if s > n:
                continue
            if s == 0:
                x = 0
                ins: tuple[dict[str, Any], ...] = (
                    _spec("frame", ("UINT8",), [-1, img, img, 3], optional=True,
                          parameters={"required_when": "no frame_coded"}),
                    _spec(FRAME_CODED, ("UINT8",), [-1, -1], optional=True,
                          parameters={"required_when": "no frame (JPEG or PNG rows, zero-padded)"}))
            else:
                x = lv.tokens[s]
                ins = (_spec("tokens", TOKEN_DTYPES, [-1, x, d], optional=True,
                             parameters={"required_when": "no tokens_q4"}),
                       _spec("size", SIZE_DTYPES, [-1, x, 1]),
                       _spec("token_scale", ("FP32",), [-1, x, 1], optional=True,
                             parameters={"required_when": "tokens is INT8"}),
                       _spec("tokens_q4", ("UINT8",), [-1, x, d // 2], optional=True,
                             parameters={"required_when": "int4 tokens (no tokens)"}),
                       _spec("group_scale", ("FP16",), [-1, x, d // int4_group(d)], optional=True,
                             parameters={"required_when": "tokens_q4"}))
            name = model_name(li, s)
            out[name] = TailSpec(name, li, s, manifest.edge_segments(s), nseg, x, ins, outputs)
    return out


#: alternative inputs: the first is required unless the second is sent (then the second's companions are)
_EITHER = {"frame": (FRAME_CODED, ()), "tokens": ("tokens_q4", ("group_scale",))}


def required_inputs(spec: TailSpec, tensors: Mapping[str, np.ndarray]) -> set[str]:
    """Inputs a request must carry: the non-optional ones; ``frame`` or ``frame_coded`` at split 0;
    ``tokens`` (plus ``token_scale`` for INT8) or ``tokens_q4`` with ``group_scale`` at a split."""
    names = {i["name"] for i in spec.inputs}
    want = {i["name"] for i in spec.inputs if not i.get("optional")}
    for first, (other, companions) in _EITHER.items():
        if first not in names:
            continue
        if other in tensors and first not in tensors:
            want |= {other, *companions}
        else:
            want.add(first)
    tok = tensors.get("tokens")
    if tok is not None and "token_scale" in names and v2_datatype(tok) == "INT8":
        want.add("token_scale")
    return want


def _shape_ok(want: list[int], got: tuple[int, ...]) -> bool:
    """``got``'s non-batch dims match ``want``'s (-1: any length)."""
    return len(got) == len(want) and all(w in (-1, g) for w, g in zip(want[1:], got[1:]))


def entry_check(spec: TailSpec, max_batch: int) -> EntryCheck:
    """A check of one input's header entry (name, datatype, shape) against the spec, run before
    its data is decoded: a tensor the model cannot take is refused without being copied."""
    by_name = {i["name"]: i for i in spec.inputs}

    def check(name: str, datatype: str, shape: tuple[int, ...]) -> None:
        inp = by_name.get(name)
        if inp is None:
            raise WireError(f"model {spec.name} has no input {short(name)} "
                            f"(expects {', '.join(sorted(by_name))})")
        dts = accepted_datatypes(inp)
        if datatype not in dts:
            raise WireError(f"input {name!r} of {spec.name} must be {' or '.join(dts)}, got {datatype}")
        tail = tuple(inp["shape"][1:])
        if not _shape_ok(inp["shape"], tuple(shape)):
            raise WireError(f"input {name!r} of {spec.name} must have shape [B, {', '.join(map(str, tail))}], "
                            f"got {short(list(shape))}")
        if not 1 <= shape[0] <= max_batch:
            raise WireError(f"input {name!r}: batch size {shape[0]} is outside 1..{max_batch}")

    return check


def validate_inputs(spec: TailSpec, tensors: Mapping[str, np.ndarray], max_batch: int) -> None:
    """Check names, datatypes, shapes and finiteness against the spec (WireError 400 otherwise)."""
    allowed = {i["name"] for i in spec.inputs}
    want = required_inputs(spec, tensors)
    missing = sorted(want - set(tensors))
    extra = sorted(set(tensors) - allowed)
    if missing:
        raise WireError(f"model {spec.name} needs input(s) {', '.join(missing)}"
                        + (" (INT8 tokens need token_scale)" if "token_scale" in missing else ""))
    if extra:
        raise WireError(f"model {spec.name} has no input(s) {', '.join(extra)} "
                        f"(expects {', '.join(sorted(want))})")
    for first, (other, companions) in _EITHER.items():
        if first in tensors and other in tensors:
            raise WireError(f"model {spec.name} takes {first} or {other}, not both")
        if other not in tensors and any(c in tensors for c in companions):
            raise WireError(f"model {spec.name}: {', '.join(companions)} goes with {other} only")
    batch: int | None = None
    for inp in spec.inputs:
        name = inp["name"]
        if name not in tensors:
            continue
        a = tensors[name]
        dts = accepted_datatypes(inp)
        got = v2_datatype(a)
        if got not in dts:
            raise WireError(f"input {name!r} of {spec.name} must be {' or '.join(dts)}, got {got}")
        tail = tuple(inp["shape"][1:])
        if not _shape_ok(inp["shape"], a.shape):
            raise WireError(f"input {name!r} of {spec.name} must have shape [B, {', '.join(map(str, tail))}], "
                            f"got {list(a.shape)}")
        b = a.shape[0]
        if not 1 <= b <= max_batch:
            raise WireError(f"input {name!r}: batch size {b} is outside 1..{max_batch}")
        if batch is not None and b != batch:
            raise WireError(f"inputs disagree on the batch size ({batch} vs {b})")
        batch = b
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise WireError(f"input {name!r} of {spec.name} holds NaN or infinite values")
    size = tensors.get("size")
    if size is not None and not (size >= 1).all():
        raise WireError(f"input 'size' of {spec.name} must hold patch counts >= 1 (finite), "
                        "as the previous segment's size_out does")


__all__ = ["MODEL_VERSION", "accepted_datatypes", "entry_check", "SIZE_DTYPES", "TOKEN_DTYPES", "TailSpec", "model_name", "required_inputs",
           "tail_models", "validate_inputs"]
