"""Plan benchmarks, printed as ratios measured within one run:

* plan size on disk / model weight bytes (weights stored once for all levels);
* resident memory of ONNX Runtime with every level loaded and run once / model weight bytes,
  measured in a fresh subprocess for both graph families (per-level graphs with and without
  shared weights; level-free graphs). The baseline is a process in which ONNX Runtime is already
  initialised (one 1-node session created and run: its code pages and kernel registry are paid
  once per process, whatever the plan); that one-time cost is printed too;
* split overhead: a level's segment chain / its unsplit graph, timed round-robin in ORT, for both
  graph families.

Usage: python tools/bench_plan.py [--model vit_small_patch16_224] [--levels 8] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MEMORY_PROBE = r"""
import json, sys, numpy as np, psutil, onnx
import onnxruntime as ort
from janus_deploy.plan import Manifest
from janus_deploy.backends.ort import OrtRunner
from janus_deploy.backends import run_segments
m = Manifest.load(sys.argv[1]); graphs = sys.argv[2]; share = sys.argv[3] == "1"
p = psutil.Process(); start = p.memory_info().rss
h = onnx.helper
g = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "warmup", [h.make_tensor_value_info("x", 1, [1])],
                 [h.make_tensor_value_info("y", 1, [1])])
warm = ort.InferenceSession(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString(),
                            providers=["CPUExecutionProvider"])
warm.run(None, {"x": np.zeros(1, np.float32)})
before = p.memory_info().rss
r = OrtRunner(m, threads=1, share_weights=share, graphs=graphs)
x = np.zeros((1, 3, m.model["img_size"], m.model["img_size"]), np.float32)
for li, lv in enumerate(m.levels):
    run_segments(r, li, 0, len(lv["segments"]), [x])
print(json.dumps({"rss_bytes": p.memory_info().rss - before, "ort_init_bytes": before - start,
                  "sessions": r.loaded()}))
"""


def memory(plan: Path, graphs: str, share: bool = True) -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(plan), graphs, "1" if share else "0"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def split_overhead(manifest, level: int, runs: int) -> tuple[float, float, float]:
    """Median ms of the level's unsplit graph, its per-level chain and its level-free chain."""
    from janus_deploy.backends import run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.profile.measure import time_calls

    per_level, free = OrtRunner(manifest, threads=1), OrtRunner(manifest, threads=1, graphs="level-free")
    x = np.random.default_rng(0).normal(size=(1, 3, manifest.model["img_size"], manifest.model["img_size"])).astype(np.float32)
    n = len(manifest.level(level)["segments"])
    unsplit, chain, chain_free = time_calls([lambda: per_level.run_unsplit(level, x),
                                             lambda: run_segments(per_level, level, 0, n, [x]),
                                             lambda: run_segments(free, level, 0, n, [x])], 5, runs)
    return unsplit["median"], chain["median"], chain_free["median"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_small_patch16_224")
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None, help="plan directory (default: a temporary one)")
    args = ap.parse_args()

    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan, plan_size_bytes

    out = args.out or Path(tempfile.mkdtemp(prefix="janus-bench-"))
    manifest, stats = export_plan(ModelSpec(args.model), out, ExportConfig(k=args.k, levels=args.levels))
    wb = manifest.model["weight_bytes"]
    secs = stats["seconds_per_graph"]
    print(f"model {args.model}: weights {wb / 1e6:.1f} MB; {len(manifest.levels)} levels x "
          f"{len(manifest.data['segments'])} segments (+1 unsplit graph per level, "
          f"+{len(manifest.level_free_segments)} level-free graphs)")
    if secs:
        print(f"export: {len(secs)} graphs, {np.mean(secs):.2f} s per graph (TorchScript exporter, dynamo=False)")
    size = plan_size_bytes(out)
    print(f"plan size on disk: {size / 1e6:.1f} MB = {size / wb:.3f} x weight bytes (target <= 1.15)")
    shared, private, free = memory(out, "level"), memory(out, "level", share=False), memory(out, "level-free")
    print(f"ORT resident memory with every level loaded and run (target <= 1.3 x weight bytes), over a process "
          f"with ONNX Runtime initialised (that costs {shared['ort_init_bytes'] / 1e6:.1f} MB once):")
    for name, r in [("per-level graphs, shared weights", shared), ("per-level graphs, private weights", private),
                    ("level-free graphs, shared weights", free)]:
        print(f"  {name}: {r['sessions']} sessions, {r['rss_bytes'] / 1e6:.1f} MB = {r['rss_bytes'] / wb:.2f} x")
    last = max(i for i, lv in enumerate(manifest.levels) if lv["policy"] == manifest.data["policy"]["name"])
    print(f"split overhead (target <= 1.03; median of {args.runs}, 1 thread):")
    for li in (0, last):
        u, c, cf = split_overhead(manifest, li, args.runs)
        print(f"  alpha={manifest.level(li)['alpha']:.4g}: unsplit {u:.2f} ms; per-level chain {c:.2f} ms = {c / u:.3f}; "
              f"level-free chain {cf:.2f} ms = {cf / u:.3f}")


if __name__ == "__main__":
    main()
