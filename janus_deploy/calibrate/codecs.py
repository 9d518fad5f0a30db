"""Accuracy per (level, codec, split): each payload codec's quality loss, measured on the plan's engines.

For every level of a plan and every codec asked for, the frames run through the level's deployed
segments (an engine runner: ONNX Runtime or TensorRT, what ``run`` and ``serve`` run) exactly as
a request would: the edge's segments up to the split, the codec's encode and decode
(:mod:`janus_deploy.wire.codecs`), the cloud's segments after it. Frame codecs (JPEG, PNG) are
measured at split 0, token codecs at every token split 1..N (their split-0 payload is the raw
frame: lossless). The cells go into the accuracy table (``levels[i].codecs[codec][split]``,
``docs/profile-format.md``): top-1 against the labels, and top-1 agreement with the unpruned
level's lossless predictions on the same engines. Codecs that decode to the same tensors (a
compressor on top of another codec: fp16-zstd, int4-zstd) are run once.

Nothing here needs torch: the level accuracies themselves come from
:func:`janus_deploy.calibrate.accuracy.calibrate` (PyTorch) or
:func:`~janus_deploy.calibrate.accuracy.calibrate_engines` (the same engines); this adds the codec
dimension to its table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from janus_deploy.backends import run_segments
from janus_deploy.calibrate.accuracy import AccuracyError, engine_predictions, unpruned_level, validate_accuracy
from janus_deploy.images import normalize
from janus_deploy.levels import LevelKey
from janus_deploy.wire import codecs as C

ProgressFn = Callable[[int, int, str], None]


def _decoded_key(codec: C.Codec) -> tuple[Any, ...]:
    """Codecs with the same key decode to the same tensors (the compressor is lossless)."""
    return (codec.kind, codec.token_dtype, codec.image, codec.quality)


def codec_splits(manifest: Any, codec: str) -> list[int]:
    """The splits at which ``codec`` loses information: 0 for a frame codec, the token splits
    1..N for a token codec (none for a lossless one)."""
    c = C.get_codec(codec)
    if c.lossless:
        return []
    if c.kind == "frame":
        return [0]
    return [s for s in manifest.candidates if 1 <= s <= manifest.num_blocks]


def calibrate_codecs(table: dict[str, Any], manifest: Any, runner: Any, frames: np.ndarray,
                     labels: np.ndarray | None, codecs: Sequence[str], *, batch_size: int = 32,
                     progress: ProgressFn | None = None) -> dict[str, Any]:
    """Add the (level, codec, split) cells of ``codecs`` to ``table`` (an accuracy table of the
    same plan and frames, :func:`~janus_deploy.calibrate.accuracy.calibrate`); returns it."""
    validate_accuracy(table)
    if table.get("plan_hash") not in (None, manifest.hash):
        raise AccuracyError("the accuracy table is of another plan; calibrate this plan first")
    if table.get("num_images") not in (None, len(frames)):
        raise AccuracyError(f"the accuracy table was measured on {table.get('num_images')} images, "
                            f"these are {len(frames)}: give the same images")
    specs = {}
    for name in codecs:
        try:
            specs[name] = C.get_codec(name)
        except C.CodecError as exc:
            raise AccuracyError(str(exc)) from None
    rows = {LevelKey.of(lv["policy"], lv["alpha"]): lv for lv in table["levels"]}
    m = manifest.model_info
    size = m.img_size
    lossy = [c for c in codecs if not specs[c].lossless]
    groups: dict[tuple[Any, ...], list[str]] = {}
    for c in lossy:
        groups.setdefault(_decoded_key(specs[c]), []).append(c)
    y = None if labels is None else np.asarray(labels)
    n = len(frames)
    batches = [(b, min(b + batch_size, n)) for b in range(0, n, batch_size)]
    ref_level = unpruned_level(manifest)
    ref_pred = None if ref_level is None else engine_predictions(manifest, runner, frames, ref_level, batch_size)
    total, done = len(manifest.plan_levels) * len(batches), 0
    for lv in manifest.plan_levels:
        li = lv.index
        row = rows.get(lv.key)
        if row is None:
            raise AccuracyError(f"the accuracy table has no level {lv.policy} {lv.alpha}; re-run calibrate")
        nseg = lv.num_segments
        preds: dict[tuple[tuple[Any, ...], int], list[np.ndarray]] = {}
        for b0, b1 in batches:
            f = frames[b0:b1]
            x = normalize(f, m.mean, m.std)
            bounds = [[x]]
            for j in range(nseg):
                bounds.append(runner.run_segment(li, j, bounds[-1]))
            for key, names in groups.items():
                spec = specs[names[0]]
                for s in codec_splits(manifest, names[0]):
                    e = manifest.edge_segments(s)
                    if spec.kind == "frame":
                        dec = C.decode_frame(C.encode_frame(f, spec), size, size)
                        inputs = [normalize(dec, m.mean, m.std)]
                    else:
                        tok, sz = bounds[e]
                        inputs = list(C.decode_tokens(C.encode_tokens(tok, sz, spec)))
                    logits = run_segments(runner, li, e, nseg, inputs)[0]
                    preds.setdefault((key, s), []).append(np.asarray(logits).argmax(-1))
            done += 1
            if progress:
                progress(done, total, f"level {lv.policy} {lv.alpha:g}: codecs")
        cells = dict(row.get("codecs") or {})
        for (key, s), parts in preds.items():
            p = np.concatenate(parts)
            cell = {"accuracy": None if y is None else round(float((p == y).mean()), 6),
                    "agreement": None if ref_pred is None else round(float((p == ref_pred).mean()), 6)}
            for name in groups[key]:
                cells.setdefault(name, {})[str(s)] = cell
        row["codecs"] = cells
    table["codecs"] = sorted(set(table.get("codecs") or []) | set(lossy))
    table["codec_engines"] = getattr(runner, "backend", None) or type(runner).__name__
    return validate_accuracy(table)


__all__ = ["calibrate_codecs", "codec_splits"]
