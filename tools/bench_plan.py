"""Plan benchmarks, printed as ratios measured within one run:

* plan size on disk / model weight bytes (weights stored once for all levels);
* resident memory of ONNX Runtime with every (level, segment) session loaded and run once,
  / model weight bytes (weights shared across sessions), measured in a fresh subprocess;
* split overhead: a level's segment chain / its unsplit graph, timed round-robin in ORT.

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
import json, sys, numpy as np, psutil
import onnxruntime
from janus_deploy.plan import Manifest
from janus_deploy.backends.ort import OrtRunner
from janus_deploy.backends import run_segments
m = Manifest.load(sys.argv[1]); share = sys.argv[2] == "1"
p = psutil.Process(); before = p.memory_info().rss
r = OrtRunner(m, threads=1, share_weights=share)
x = np.zeros((1, 3, m.model["img_size"], m.model["img_size"]), np.float32)
for li, lv in enumerate(m.levels):
    run_segments(r, li, 0, len(lv["segments"]), [x])
print(json.dumps({"rss_bytes": p.memory_info().rss - before, "sessions": r.loaded()}))
"""


def memory(plan: Path, share: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(plan), "1" if share else "0"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def split_overhead(manifest, level: int, runs: int) -> tuple[float, float, float]:
    from janus_deploy.backends import run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.profile.measure import time_calls

    r = OrtRunner(manifest, threads=1)
    x = np.random.default_rng(0).normal(size=(1, 3, manifest.model["img_size"], manifest.model["img_size"])).astype(np.float32)
    n = len(manifest.level(level)["segments"])
    chain, unsplit = time_calls([lambda: run_segments(r, level, 0, n, [x]), lambda: r.run_unsplit(level, x)], 5, runs)
    return chain["median"], unsplit["median"], chain["median"] / unsplit["median"]


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
          f"{len(manifest.data['segments'])} segments (+1 unsplit graph per level)")
    if secs:
        print(f"export: {len(secs)} graphs, {np.mean(secs):.2f} s per graph (TorchScript exporter, dynamo=False)")
    size = plan_size_bytes(out)
    print(f"plan size on disk: {size / 1e6:.1f} MB = {size / wb:.3f} x weight bytes (target <= 1.15)")
    shared, private = memory(out, True), memory(out, False)
    print(f"ORT resident memory, all {shared['sessions']} sessions loaded and run: "
          f"{shared['rss_bytes'] / 1e6:.1f} MB = {shared['rss_bytes'] / wb:.2f} x weight bytes with shared "
          f"initializers (target <= 1.3); {private['rss_bytes'] / 1e6:.1f} MB = {private['rss_bytes'] / wb:.2f} x without")
    last = max(i for i, lv in enumerate(manifest.levels) if lv["policy"] == manifest.data["policy"]["name"])
    for li in (0, last):
        c, u, ratio = split_overhead(manifest, li, args.runs)
        print(f"split overhead at alpha={manifest.level(li)['alpha']:.4g}: chain {c:.2f} ms vs unsplit {u:.2f} ms "
              f"= {ratio:.3f} (target <= 1.03; median of {args.runs}, 1 thread)")


if __name__ == "__main__":
    main()
