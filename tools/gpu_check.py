"""GPU check in the order of issue 25 item 7, one verdict line per step (PASS / FAIL / SKIP).

Expected run time on an H100 or an Orin-class GPU with TensorRT: about 5-8 minutes, an estimate
(never measured): vit_tiny plan export ~1 min (75 s on a loaded 2-core CPU), a 3-level, k = 2
plan's per-level engines in fp32, fp16 and int8 plus its level-free fp16 engines (about 60 small
engine builds at a few seconds each; TensorRT's timing cache is shared between them), int8
calibration ~25 s on the CPU, and the checks (seconds). It stops at the first FAIL. Step 2 builds
every engine (not only the three picks) because the builder has no subset option. Without
TensorRT it runs what ONNX Runtime can (the CUDA provider's chain and the int8 Q/DQ graphs on the
CPU) and says that TensorRT was NOT tested. End to end it has only run on the TensorRT stand-in
(tests/trt_standin.py installed in place of tensorrt and cuda-python: 31 steps, every one PASS,
in 69 s on this CPU); on a GPU it has never run (see docs/engines.md).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np

T0 = time.perf_counter()
FAILED = False


def verdict(ok: bool | None, step: str, detail: str = "") -> None:
    global FAILED
    tag = {True: "PASS", False: "FAIL", None: "SKIP"}[ok]
    print(f"[{time.perf_counter() - T0:6.1f}s] {tag} {step}" + (f": {detail}" if detail else ""), flush=True)
    if ok is False:
        FAILED = True
        sys.exit(1)


def cos(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def main(work: Path) -> int:
    import onnxruntime as ort

    from janus_deploy.backends import (
        EngineError,
        build_engines,
        load_runner,
        run_segments,
    )
    from janus_deploy.backends import trt as trtb
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.images import normalize, synthetic_frames
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan

    # 1. versions (fail fast on an unsupported TensorRT)
    try:
        import tensorrt

        trt_ok = True
        trtb.check_version(tensorrt.__version__)
        key = trtb.gpu_key()
        verdict(True, "1 versions", f"TensorRT {tensorrt.__version__}, ORT {ort.__version__}, {key}")
    except ImportError:
        trt_ok = False
        verdict(None, "1 versions", f"TensorRT NOT installed: TensorRT is NOT tested here; ORT {ort.__version__} "
                f"providers {ort.get_available_providers()}")
    except EngineError as exc:
        verdict(False, "1 versions", str(exc))
    manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224"), work / "plan", ExportConfig(k=2, levels=3))
    x = normalize(synthetic_frames(2, 224), manifest.model["mean"], manifest.model["std"])
    ref = OrtRunner(manifest)
    if not trt_ok:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            verdict(None, "ORT CUDA", "onnxruntime here has no CUDA provider (install onnxruntime-gpu to check it)")
            return 0
        build_engines(manifest, work / "ort-cuda", "ort", device="cuda")
        cuda = load_runner(manifest, work / "ort-cuda")
        last = len(manifest.levels) - 1
        n = len(manifest.level(last)["segments"])
        c = cos(run_segments(cuda, last, 0, n, [x])[0], run_segments(ref, last, 0, n, [x])[0])
        verdict(c >= 0.999, "ORT CUDA chain vs CPU", f"cosine {c:.5f}; TensorRT NOT tested")
        meta = build_engines(manifest, work / "ort-int8", "ort", precision="int8",
                             calibration=_calibration_folder(work, manifest))
        verdict(True, "ORT int8 (Q/DQ graphs, CPU)", ", ".join(f"L{a['level']} agr {a['top1_agreement']:.2f}"
                                                             for a in meta["int8_accuracy"]) + "; TensorRT NOT tested")
        return 0
    # 2. three engines (alpha = 0 segment, a merging segment, the head-only segment), fp32 then fp16
    last = len(manifest.levels) - 1
    nseg = len(manifest.level(last)["segments"])
    picks = [(0, 0), (last, 1 if nseg > 2 else 0), (last, nseg - 1)]
    runners = {}
    for prec in ("fp32", "fp16"):
        t = time.perf_counter()
        meta = build_engines(manifest, work / f"trt-{prec}", "trt", precision=prec, max_batch=16)
        sizes = {(e["level"], e["segment"]): (work / f"trt-{prec}" / e["file"]).stat().st_size for e in meta["engines"]}
        verdict(True, f"2 build {prec}", f"{len(meta['engines'])} engines in {time.perf_counter() - t:.0f} s; "
                f"engine bytes of the picks {[sizes[p] for p in picks]} (weights.bin found: the parse succeeded)")
        runners[prec] = load_runner(manifest, work / f"trt-{prec}")
    # 3. each segment against ORT, then the chain per level
    for prec, tol in (("fp32", 0.9999), ("fp16", 0.995)):
        r = runners[prec]
        for li, si in picks:
            ins = run_segments(ref, li, 0, si, [x])
            c = cos(r.run_segment(li, si, ins)[0], ref.run_segment(li, si, ins)[0])
            verdict(c >= tol, f"3 segment L{li} S{si} {prec} vs ORT", f"cosine {c:.5f} (>= {tol})")
        for li in range(len(manifest.levels)):
            n = len(manifest.level(li)["segments"])
            a, b = run_segments(r, li, 0, n, [x])[0], run_segments(ref, li, 0, n, [x])[0]
            c = cos(a, b)
            verdict(c >= tol and (a.argmax(-1) == b.argmax(-1)).all(), f"3 chain L{li} {prec}", f"cosine {c:.5f}")
    # 4. batches 1, 8, max+1 and 4 -> 16
    r = runners["fp16"]
    for b in (1, 8):
        xb = normalize(synthetic_frames(b, 224), manifest.model["mean"], manifest.model["std"])
        verdict(r.run_segment(0, 0, [xb])[0].shape[0] == b, f"4 batch {b}")
    try:
        r.run_segment(0, 0, [normalize(synthetic_frames(17, 224), manifest.model["mean"], manifest.model["std"])])
        verdict(False, "4 batch max+1 (17)", "was accepted")
    except EngineError as exc:
        verdict(True, "4 batch max+1 (17) refused", str(exc))
    x4, x16 = (normalize(synthetic_frames(n, 224), manifest.model["mean"], manifest.model["std"]) for n in (4, 16))
    r.run_segment(0, 0, [x4])
    out = r.run_segment(0, 0, [x16])[0]
    verdict(out.shape[0] == 16 and cos(out, ref.run_segment(0, 0, [x16])[0]) > 0.995, "4 batch 4 -> 16")
    # 5. two threads on one runner
    errs, res = [], []

    def work_(i):
        try:
            res.append(cos(r.run_segment(0, 0, [x])[0], ref.run_segment(0, 0, [x])[0]))
        except Exception as exc:  # noqa: BLE001
            errs.append(exc)

    ts = [threading.Thread(target=work_, args=(i,)) for i in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    verdict(not errs and min(res) > 0.995, "5 two threads on one runner", f"{errs or res}")
    # 6. device memory before and after loading every level
    cudart = trtb._cudart()
    free0, total = trtb._check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    fresh = load_runner(manifest, work / "trt-fp16")
    fresh.preload()
    free1, _ = trtb._check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    verdict(True, "6 device memory", f"{(free0 - free1) / 2**20:.0f} MiB for {fresh.loaded()} engines "
            f"(total {total / 2**30:.1f} GiB)")
    # 7. only then int8 and the whole plan
    calib = _calibration_folder(work, manifest)
    t = time.perf_counter()
    meta = build_engines(manifest, work / "trt-int8", "trt", precision="int8", calibration=calib, max_batch=16)
    acc = meta["int8_accuracy"]
    verdict(True, "7 build int8 (Q/DQ, strongly typed)", f"{len(meta['engines'])} engines in {time.perf_counter() - t:.0f} s; "
            "ORT CPU Q/DQ vs fp32 per level: " + ", ".join(f"L{a['level']} agr {a['top1_agreement']:.2f} cos {a['cosine_min']:.3f}"
                                                        for a in acc))
    r8 = load_runner(manifest, work / "trt-int8")
    q8 = _qdq_reference(manifest, work / "trt-int8")
    for li in range(len(manifest.levels)):
        n = len(manifest.level(li)["segments"])
        a, b = run_segments(r8, li, 0, n, [x])[0], run_segments(q8, li, 0, n, [x])[0]
        c = cos(a, b)
        verdict(c >= 0.99, f"7 chain L{li} int8 TensorRT vs the same Q/DQ graphs in ORT", f"cosine {c:.5f}")
    verdict(True, "7 whole plan", f"{len(runners['fp16'].entries)} fp16 and {len(r8.entries)} int8 engines built, "
            "every level's chain checked above")
    # 8. weights once: level-free engines (one per segment, a profile per level) on this TensorRT
    t = time.perf_counter()
    try:
        lf = build_engines(manifest, work / "trt-lf", "trt", precision="fp16", graphs="level-free", max_batch=16)
    except EngineError as exc:
        verdict(False, "8 build level-free fp16", str(exc))
    verdict(True, "8 build level-free fp16", f"{len(lf['engines'])} engines (one per segment, "
            f"{len(manifest.levels)} profiles each) in {time.perf_counter() - t:.0f} s")
    free0, _ = trtb._check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    rl = load_runner(manifest, work / "trt-lf", concurrency=2)
    for li in range(len(manifest.levels)):
        n = len(manifest.level(li)["segments"])
        a, b = run_segments(rl, li, 0, n, [x])[0], run_segments(ref, li, 0, n, [x])[0]
        c = cos(a, b)
        verdict(c >= 0.995 and (a.argmax(-1) == b.argmax(-1)).all(), f"8 level-free chain L{li} fp16 vs ORT fp32",
                f"cosine {c:.5f}")
    free1, _ = trtb._check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    per_level_mb = (free0 - free1) / 2**20
    verdict(True, "8 device memory, level-free, every level run",
            f"{per_level_mb:.0f} MiB for {rl.loaded()} engines; weights handed to the builder "
            f"{trtb.weight_bytes(manifest, 'level-free', 'fp16') / 2**20:.1f} MiB (level-free) vs "
            f"{trtb.weight_bytes(manifest, 'level', 'fp16') / 2**20:.1f} MiB (per-level)")
    return 0


def _calibration_folder(work: Path, manifest) -> Path:
    """32 synthetic frames as PNGs (calibration images for the int8 check; accuracy figures on
    random-weight vit_tiny say only that the chain is consistent)."""
    from PIL import Image

    from janus_deploy.images import synthetic_frames

    folder = work / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(synthetic_frames(32, manifest.model["img_size"], seed=7)):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    return folder


def _qdq_reference(manifest, engine_dir: Path):
    """The Q/DQ graphs TensorRT built (ENGINE_DIR/graphs) run by ONNX Runtime on the CPU: the
    reference for TensorRT's int8 (no second quantization)."""
    import hashlib

    from janus_deploy.backends.qdq import QdqOrtRunner, graph_path

    engines = []
    for li, lv in enumerate(manifest.levels):
        for si, seg in enumerate(lv["segments"]):
            p = graph_path(engine_dir, seg["file"])
            engines.append({"level": li, "segment": si, "file": str(p.relative_to(engine_dir)),
                            "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    return QdqOrtRunner(manifest, engine_dir, {"engines": engines})


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/janus-gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    sys.exit(main(out))
