"""GPU checks: build TensorRT engines for a vit_tiny plan, check parity against ONNX Runtime
(top-1 agreement, cosine >= 0.999 for fp16) and print per-engine latency.

Run through tools/gpu_check.sh on a machine with an NVIDIA GPU and TensorRT >= 10.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def main(workdir: str = "/tmp/janus-gpu-check") -> int:
    from janus_deploy.backends import build_engines, load_runner, run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.images import normalize, synthetic_frames
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan

    work = Path(workdir)
    manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224"), work / "plan", ExportConfig(k=3, levels=4))
    t0 = time.perf_counter()
    meta = build_engines(manifest, work / "trt", "trt", precision="fp16")
    print(f"built {len(meta['engines'])} TensorRT {meta['tensorrt_version']} fp16 engines on {meta['gpu']} "
          f"(sm {meta['compute_capability']}) in {time.perf_counter() - t0:.1f} s")
    trt_runner, ort_runner = load_runner(manifest, work / "trt"), OrtRunner(manifest)
    x = normalize(synthetic_frames(16, 224), manifest.model["mean"], manifest.model["std"])
    ok = True
    for li, lv in enumerate(manifest.levels):
        nseg = len(lv["segments"])
        outs_t = np.concatenate([run_segments(trt_runner, li, 0, nseg, [x[i:i + 1]])[0] for i in range(len(x))])
        outs_o = np.concatenate([run_segments(ort_runner, li, 0, nseg, [x[i:i + 1]])[0] for i in range(len(x))])
        cos = (outs_t * outs_o).sum(1) / (np.linalg.norm(outs_t, axis=1) * np.linalg.norm(outs_o, axis=1))
        top1 = float((outs_t.argmax(1) == outs_o.argmax(1)).mean())
        passed = cos.min() >= 0.999 and top1 >= 0.9
        ok &= passed
        print(f"level {li} alpha={lv['alpha']:.4g}: top-1 agreement {top1:.3f}, min cosine {cos.min():.5f} "
              f"{'OK' if passed else 'FAIL'}")
    print("per-engine latency (ms, median of 50, batch 1):")
    for li, lv in enumerate(manifest.levels):
        ins = [x[:1]]
        row = []
        for j in range(len(lv["segments"])):
            for _ in range(5):
                trt_runner.run_segment(li, j, ins)
            ts = []
            for _ in range(50):
                t = time.perf_counter()
                out = trt_runner.run_segment(li, j, ins)
                ts.append((time.perf_counter() - t) * 1e3)
            row.append(f"{np.median(ts):.3f}")
            ins = out
        print(f"  level {li}: " + " ".join(row))
    print("GPU CHECK", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
