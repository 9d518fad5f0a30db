"""`janus-deploy profile`: measure every (level, segment) engine on this machine, the payload
codecs on real boundary tensors, and fit the paper's per-block linear latency model.

The result is a profile (``docs/profile-format.md``): head/tail latency per (level, split) derived
from the segment medians, so a profile taken on the edge and one taken on the cloud combine.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from janus_deploy import __version__
from janus_deploy.backends.base import Runner, run_segments
from janus_deploy.plan.manifest import Manifest
from janus_deploy.profile.table import (
    FORMAT_VERSION,
    KIND,
    Profile,
    ProfileError,
    profile_from_dict,
    profile_from_linear,
)
from janus_deploy.wire import codecs as C

PROFILE_CODECS = ("fp32", "fp16", "fp16-zstd", "int8", "int4", "int4-zstd", "jpeg95", "jpeg85", "jpeg70", "png")


def device_info(name: str, backend: str, precision: str, threads: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the measurements were taken on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import onnxruntime

    info = {
        "name": name, "backend": backend, "precision": precision, "cpu": cpu,
        "cpu_count": os.cpu_count(), "threads": threads, "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__, "janus_deploy": __version__,
    }
    info.update(extra or {})
    return info


def _stats(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean()),
            "std": float(a.std()), "runs": len(samples)}


def time_calls(fns: Sequence[Callable[[], Any]], warmup: int, runs: int,
               clock: Callable[[], float] = time.perf_counter) -> list[dict[str, float]]:
    """Latency statistics (ms) of each of ``fns``, timed round-robin (one call of each per round)
    so that a change in machine load affects all of them alike; ``clock``: seconds (wall time by
    default, e.g. ``time.thread_time`` for the calling thread's CPU time)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t0 = clock()
            fn()
            samples[i].append((clock() - t0) * 1e3)
    return [_stats(s) for s in samples]


def _boundaries(runner: Runner, level: int, nseg: int, image: np.ndarray) -> list[list[np.ndarray]]:
    """Inputs of every segment of a level (index j = input of segment j; index nseg = logits)."""
    ins = [[image]]
    for j in range(nseg):
        ins.append(runner.run_segment(level, j, ins[-1]))
    return ins


def measure_profile(
    manifest: Manifest,
    runner: Runner,
    frames: np.ndarray,
    *,
    device_name: str,
    backend: str = "ort",
    precision: str = "fp32",
    threads: int = 0,
    warmup: int = 5,
    runs: int = 30,
    codecs: Sequence[str] = PROFILE_CODECS,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[Profile, dict[str, Any]]:
    """Measure every segment of every level (batch 1) and the payload codecs.

    ``frames`` are uint8 [B, H, W, 3]; the first is timed, all are used for the codecs' top-1
    agreement. Returns the profile and a report (unsplit latency per level, codec agreement).
    """
    from janus_deploy.images import normalize

    m = manifest.model
    info = manifest.model_info
    x = normalize(frames, info.mean, info.std)
    n, cands = manifest.num_blocks, manifest.candidates
    levels_out, report_levels = [], []
    agree: dict[str, list[float]] = {c: [] for c in codecs}
    total = sum(lv.num_segments + 1 for lv in manifest.plan_levels)
    done = 0
    frame_payload = {c: measure_frame(frames[0], c) for c in codecs}  # s = 0: the same at every level
    for lv in manifest.plan_levels:
        li, nseg = lv.index, lv.num_segments
        all_bounds = _boundaries(runner, li, nseg, x)  # every segment's inputs, for all frames
        bounds = [[np.ascontiguousarray(a[:1]) for a in b] for b in all_bounds]  # batch 1 for timing
        # the closures run in this iteration (time_calls below), so they see this li, bounds and x
        fns = [lambda j=j: runner.run_segment(li, j, bounds[j]) for j in range(nseg)]  # noqa: B023 - called in this iteration
        fns.append(lambda: runner.run_unsplit(li, x[:1]))  # noqa: B023 - called in this iteration
        *seg_stats, unsplit = time_calls(fns, warmup, runs)
        medians = [s["median"] for s in seg_stats]
        head, tail = {}, {}
        # payloads on real boundary tensors (all frames), and codec agreement with fp32
        ref_top1 = all_bounds[-1][0].argmax(1)
        payload: dict[str, dict[str, Any]] = {c: {} for c in codecs}
        for s in cands:
            e = manifest.edge_segments(s)
            head[str(s)] = sum(medians[:e])
            tail[str(s)] = sum(medians[e:])
            seen: list[tuple[list[np.ndarray], float]] = []  # decoded tensors -> agreement, this split
            for c in codecs:
                if s == 0:
                    payload[c]["0"] = frame_payload[c]
                    if C.is_frame_codec(c) and c != "png":  # the image's loss, on this level
                        dec_frames = C.decode_frame(C.encode_frame(frames, c), frames.shape[1], frames.shape[2])
                        top1 = run_segments(runner, li, 0, nseg, [normalize(dec_frames, info.mean, info.std)])[0].argmax(1)
                        agree[c].append(float((top1 == ref_top1).mean()))
                elif C.is_frame_codec(c):
                    continue  # a frame codec sends nothing at the token splits
                elif s == n + 1:
                    payload[c][str(s)] = {"bytes": 0, "encode_ms": 0.0, "decode_ms": 0.0}
                else:
                    tokens, size = all_bounds[e]
                    payload[c][str(s)] = measure_codec(tokens[:1], size[:1], c)
                    if c != "fp32":
                        dec = list(C.decode_tokens(C.encode_tokens(tokens, size, c)))
                        # a lossless wrapper (fp16-zstd) decodes to its inner codec's tensors:
                        # the tail need not run on them again
                        same = next((a for d, a in seen if all(np.array_equal(x, y) for x, y in zip(d, dec))), None)
                        if same is None:
                            same = float((run_segments(runner, li, e, nseg, dec)[0].argmax(1) == ref_top1).mean())
                            seen.append((dec, same))
                        agree[c].append(same)
        done += nseg + 1
        if progress:
            progress(done, total, f"level {li}")
        levels_out.append({
            "policy": lv.policy, "alpha": lv.alpha, "tokens": list(lv.tokens),
            "segment_ms": seg_stats, "head_ms": head, "tail_ms": tail, "payload": payload,
        })
        report_levels.append({"index": li, "alpha": lv.alpha, "policy": lv.policy,
                              "sum_segments_ms": sum(medians), "unsplit_ms": unsplit["median"],
                              "ratio": sum(medians) / unsplit["median"]})
    codec_info = {c: {"lossless": C.get_codec(c).lossless,
                      "top1_agreement": 1.0 if C.get_codec(c).lossless else (float(np.mean(agree[c])) if agree[c] else None)}
                  for c in codecs}
    data = {
        "format_version": FORMAT_VERSION, "kind": KIND, "source": "measured",
        "provenance": f"janus-deploy {__version__} profile: {warmup} warm-up + {runs} timed runs per "
                      f"segment, batch 1, {len(frames)} image(s) for codecs",
        "plan_hash": manifest.hash,
        "device": device_info(device_name, backend, precision, threads,
                              {"edge_slowdown": float(getattr(runner, "factor", 1.0))}),
        "model": {k: m[k] for k in ("name", "num_blocks", "embed_dim", "num_tokens", "num_prefix_tokens", "img_size")},
        "candidates": cands, "segments": [list(b) for b in manifest.segment_blocks],
        "levels": levels_out, "codecs": codec_info,
        "default_codec": C.DEFAULT_CODEC if C.DEFAULT_CODEC in codecs else codecs[0],
    }
    fit = fit_linear(manifest, data)
    data["linear_model"] = fit
    profile = profile_from_dict(data)
    return profile, {"levels": report_levels, "linear_model": fit, "codecs": codec_info}


def fit_linear(manifest: Manifest, data: dict[str, Any]) -> dict[str, Any]:
    """Fit the paper's per-block model ``a + b·tokens`` to measured segment latencies.

    A segment of blocks l..m costs ``(m - l + 1)·a + b·Σ x_{j-1}``; segments with the embedding or
    the head are left out (they hold more than blocks). Reports the correlation r between predicted
    and measured segment latency and the largest relative error.
    """
    rows, ys = [], []
    blocks = manifest.segment_blocks
    nseg = len(blocks)
    for lv in data["levels"]:  # the profile's levels (measured), not the plan's
        for j, (a, b) in enumerate(blocks):
            if j == 0 or j == nseg - 1 or b < a:
                continue
            rows.append([b - a + 1, sum(lv["tokens"][l - 1] for l in range(a, b + 1))])
            ys.append(lv["segment_ms"][j]["median"])
    if len(rows) < 2:
        return {"a_ms": None, "b_ms_per_token": None, "r": None, "max_rel_err": None, "points": len(rows)}
    A, y = np.asarray(rows, float), np.asarray(ys)
    (a_ms, b_ms), *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = A @ np.array([a_ms, b_ms])
    r = float(np.corrcoef(pred, y)[0, 1]) if np.std(pred) > 0 else None
    return {"a_ms": float(a_ms), "b_ms_per_token": float(b_ms), "r": r,
            "max_rel_err": float(np.max(np.abs(pred - y) / y)), "points": len(rows)}


def linear_profile(manifest: Manifest, a_ms: float, b_ms: float, device_name: str) -> Profile:
    """A profile for a plan synthesised from a per-block linear model (``--from-linear a,b``)."""
    levels = [(lv.policy, lv.alpha) for lv in manifest.plan_levels]
    model = {k: getattr(manifest.model_info, k) for k in ("name", "num_blocks", "embed_dim", "num_tokens", "num_prefix_tokens", "img_size")}
    return profile_from_linear(
        model, manifest.candidates, levels, a_ms, b_ms, device={"name": device_name, "backend": "linear-model"},
        provenance=f"synthesised from the per-block linear model {a_ms} + {b_ms}·tokens ms",
        plan_hash=manifest.hash,
    )


def check_profile_for_plan(profile: Profile, manifest: Manifest, role: str = "profile") -> None:
    """A measured or synthesised profile must belong to this plan (presets carry no plan hash)."""
    if profile.plan_hash is not None and profile.plan_hash != manifest.hash:
        raise ProfileError(
            f"the {role} was made for plan {profile.plan_hash[:12]}, not for this plan ({manifest.hash[:12]}); "
            "re-run `janus-deploy profile` on this plan"
        )
    if profile.model.num_blocks != manifest.num_blocks or profile.candidates != manifest.candidates:
        raise ProfileError(f"the {role} describes another model or split set than this plan")


def _time_codec(encode: Callable[[], bytes], decode: Callable[[bytes], Any], repeats: int) -> dict[str, float]:
    """Bytes on the wire and median encode/decode time (ms) of one payload."""
    enc_t, dec_t, nbytes = [], [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        body = encode()
        t1 = time.perf_counter()
        decode(body)
        t2 = time.perf_counter()
        enc_t.append((t1 - t0) * 1e3)
        dec_t.append((t2 - t1) * 1e3)
        nbytes = len(body)
    return {"bytes": nbytes, "encode_ms": float(np.median(enc_t)), "decode_ms": float(np.median(dec_t))}


def measure_codec(tokens: np.ndarray, size: np.ndarray, codec: str, repeats: int = 5) -> dict[str, float]:
    """Bytes and median encode/decode time (ms) of one token payload with ``codec``."""
    c = C.get_codec(codec)
    like = C.encode_tokens(tokens, size, c)

    def encode() -> bytes:
        wire = C.encode_tokens(tokens, size, c)
        return C.compress(b"".join(a.tobytes() for a in wire.values()), c)

    return _time_codec(encode, lambda body: C.decode_tokens(
        C.split_body(C.decompress(body, c.compress, 1 << 31), like)), repeats)


def measure_frame(frame: np.ndarray, codec: str, repeats: int = 5) -> dict[str, float]:
    """Bytes and time to send the uint8 frame (split 0) with a codec: a frame codec's image
    (encode on the edge, header check and decode in the cloud), else the raw frame through the
    codec's compressor."""
    c = C.get_codec(codec)
    if c.kind == "frame":
        h, w = frame.shape[0], frame.shape[1]

        def encode() -> bytes:
            return C.encode_frame(frame[None], c).tobytes()

        return _time_codec(encode, lambda body: C.decode_frame(np.frombuffer(body, np.uint8)[None], h, w), repeats)
    return _time_codec(lambda: C.compress(frame.tobytes(), c),
                       lambda body: C.decompress(body, c.compress, 1 << 31), repeats)
