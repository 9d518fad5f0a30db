#!/usr/bin/env python
"""Prepacked speed with shared memory (issue 27 item 1), ratios within one run:

* resident memory with every level loaded and run twice / weight bytes, each configuration in a
  fresh subprocess over a process with ONNX Runtime initialised: the runner as it ships (per-level
  graphs, weights shared, prepacking off), per-level graphs each with its own weights and
  prepacking on (what a default ORT session per level costs), and level-free graphs serving every
  level with prepacking on and the shared weights' mapped pages returned after packing
  (``OrtRunner(graphs="level-free", level_free_everywhere=True, disable_prepacking=False)``);
* per level, the last configuration's segment chain over the same graphs each in a default ORT
  session (``InferenceSession(path)``: own weights, prepacking on, ORT's defaults but the thread
  count), over the per-level graphs in default sessions (the fastest family), and at α = 0 over a
  plain export of the timm model (``torch.onnx.export``, never through janus-deploy).

Round-robin median of ``--runs`` calls; the machine is shared: the ratios, not the milliseconds.

Usage: nice python tools/bench_prepack.py [--models vit_small_patch16_224 vit_base_patch16_224]
       [--threads 1 0] [--runs 9] [--plans DIR] [--clock wall|cpu] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = {
    "shipped": dict(),  # per-level graphs, shared weights, prepacking off
    "private-prepacked": dict(share_weights=False, disable_prepacking=False),
    "level-free-prepacked": dict(graphs="level-free", level_free_everywhere=True, disable_prepacking=False),
}

MEMORY_PROBE = r"""
import json, sys, numpy as np, psutil, onnx
import onnxruntime as ort
from janus_deploy.plan import Manifest
from janus_deploy.backends.ort import OrtRunner
from janus_deploy.backends import run_segments
m = Manifest.load(sys.argv[1]); kw = json.loads(sys.argv[2])
p = psutil.Process(); start = p.memory_info().rss
h = onnx.helper
g = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "warmup", [h.make_tensor_value_info("x", 1, [1])],
                 [h.make_tensor_value_info("y", 1, [1])])
warm = ort.InferenceSession(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString(),
                            providers=["CPUExecutionProvider"])
warm.run(None, {"x": np.zeros(1, np.float32)})
before = p.memory_info().rss
r = OrtRunner(m, threads=1, **kw)
x = np.zeros((1, 3, m.model["img_size"], m.model["img_size"]), np.float32)
for _ in range(2):
    for li, lv in enumerate(m.levels):
        run_segments(r, li, 0, len(lv["segments"]), [x])
print(json.dumps({"rss_bytes": p.memory_info().rss - before, "sessions": r.loaded()}))
"""


def memory(plan: Path, kw: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(plan), json.dumps(kw)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plain_export(model_name: str, path: Path, img: int) -> Path:
    """The timm model exported as anyone would (random init, no download)."""
    if path.exists():
        return path
    import timm
    import torch

    model = timm.create_model(model_name, pretrained=False).eval()
    x = torch.zeros(1, 3, img, img)
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamo=False)
    return path


def default_runner(manifest, graphs: str, threads: int):
    """The plan's graphs of one family, each in a default ORT session (own weights, prepacking on)."""
    import onnxruntime as ort

    from janus_deploy.backends.ort import OrtRunner

    class Default(OrtRunner):
        def _create(self, key, entry):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(self.manifest.path(entry.file)), opts,
                                        providers=["CPUExecutionProvider"])
            self._sessions[key] = sess
            return sess

    return Default(manifest, graphs=graphs, level_free_everywhere=True, threads=threads)


def speed(manifest, plain: Path, threads: int, runs: int, clock) -> list[dict]:
    import onnxruntime as ort

    from janus_deploy.backends import run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.profile.measure import time_calls

    ours = OrtRunner(manifest, threads=threads, **CONFIGS["level-free-prepacked"])
    same = default_runner(manifest, "level-free", threads)
    fastest = default_runner(manifest, "level", threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    timm_sess = ort.InferenceSession(str(plain), opts, providers=["CPUExecutionProvider"])
    img = manifest.model["img_size"]
    x = np.random.default_rng(0).normal(size=(1, 3, img, img)).astype(np.float32)
    rows = []
    for li, lv in enumerate(manifest.levels):
        n = len(lv["segments"])
        fns = [lambda r=r, li=li, n=n: run_segments(r, li, 0, n, [x]) for r in (ours, same, fastest)]
        if li == 0:
            fns.append(lambda: timm_sess.run(None, {"image": x}))
        st = [c["median"] for c in time_calls(fns, 2, runs, clock)]
        row = {"level": li, "alpha": lv["alpha"], "ours_ms": st[0], "same_ms": st[1], "fastest_ms": st[2],
               "timm_ms": st[3] if li == 0 else None}
        rows.append(row)
        print(f"    α={lv['alpha']:.4f}: ours {row['ours_ms']:8.2f} ms; / same graphs in default sessions "
              f"{row['ours_ms'] / row['same_ms']:.3f}; / per-level graphs in default sessions "
              f"{row['ours_ms'] / row['fastest_ms']:.3f}"
              + (f"; / plain timm export {row['ours_ms'] / row['timm_ms']:.3f}" if row["timm_ms"] else ""), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vit_small_patch16_224", "vit_base_patch16_224"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 0], help="intra-op threads (0: every core)")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--plans", type=Path, default=Path("/tmp/janus-bench-prepack"),
                    help="where the plans and plain exports are written (reused when present)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: the calling thread's CPU time (1 thread only: ORT runs a 1-thread session in the caller; "
                         "robust to a shared machine)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    args = ap.parse_args()
    if args.clock == "cpu" and any(t != 1 for t in args.threads):
        ap.error("--clock cpu measures 1-thread sessions only (--threads 1)")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, Manifest, export_plan

    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores", flush=True)
    for name in args.models:
        plan = args.plans / name
        if (plan / "manifest.json").exists():
            manifest = Manifest.load(plan)
        else:
            manifest, _ = export_plan(ModelSpec(name), plan, ExportConfig(k=3, levels=args.levels))
        wb = manifest.model["weight_bytes"]
        plain = plain_export(name, args.plans / f"{name}-plain.onnx", manifest.model["img_size"])
        print(f"{name}: weights {wb / 1e6:.1f} MB, {len(manifest.levels)} levels; resident memory with every level "
              "loaded and run / weight bytes (1 thread):", flush=True)
        for cname, kw in CONFIGS.items():
            if args.no_memory:
                break
            r = memory(plan, kw)
            print(f"  {cname:<22} {r['sessions']:3d} sessions {r['rss_bytes'] / 1e6:8.1f} MB = "
                  f"{r['rss_bytes'] / wb:.2f} x", flush=True)
        for threads in args.threads:
            print(f"  speed, {threads or os.cpu_count()} thread(s), median {args.clock} time of {args.runs} round-robin runs "
                  f"(load average {os.getloadavg()[0]:.2f}):", flush=True)
            speed(manifest, plain, threads, args.runs, clock)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
