#!/usr/bin/env python
"""Prepacked speed with shared memory (issue 27 item 1), per level, in one run:

* resident memory with every level loaded and run twice / weight bytes, each configuration in a
  fresh process over a process with both ONNX Runtimes (the Python module's and the C library's)
  initialised and warmed on a small graph:
  ``shipped`` (per-level graphs, weights shared, prepacking off), ``private-prepacked`` (per-level
  graphs, own weights, prepacking on: a default session per graph), ``level-free-prepacked``
  (level-free graphs serving every level, prepacking on) and ``per-level-shared-prepacked``
  (per-level graphs through ONNX Runtime's C API, one prepacked-weights container:
  ``build-engines --prepack``);
* speed: per level, the two prepacked runners over the same graphs each in a default ONNX Runtime
  session (``InferenceSession(path)``: own weights, prepacking on, ORT's defaults but the thread
  count), and at α = 0 over a plain export of the timm model (``torch.onnx.export``, never through
  janus-deploy). ``--mode lockstep`` (default): every configuration in its own process, all
  loaded, the processes taking turns call by call (never two running at once: multi-thread ORT
  pools spin and would take each other's cores), with ``--gap`` idle seconds after each call so a
  finished pool's spinning has ended; a change of machine load affects every configuration alike.
  ``--mode processes``: each configuration's whole timing in its own process, one after another,
  ``--rounds`` times (median of the rounds' medians). ``--mode one-process`` (1 thread): every
  configuration round-robin in one process per round.

The machine is shared: the ratios, not the milliseconds. Run it under the bench lock.

Usage: nice python tools/bench_prepack.py [--models vit_small_patch16_224 vit_base_patch16_224]
       [--threads 1 0] [--runs 9] [--rounds 2] [--plans DIR] [--clock wall|cpu] [--no-memory]
       [--no-speed] [--mode lockstep|processes|one-process] [--gap 0.02]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MEMORY_CONFIGS: dict[str, dict] = {
    "shipped": dict(),  # per-level graphs, shared weights, prepacking off
    "private-prepacked": dict(share_weights=False, disable_prepacking=False),
    "level-free-prepacked": dict(graphs="level-free", level_free_everywhere=True, disable_prepacking=False),
    "per-level-shared-prepacked": dict(shared_prepacked=True),
}
# speed: runner configurations (OrtRunner keywords) and default-session baselines
RUNNERS = {"per-level-shared-prepacked": MEMORY_CONFIGS["per-level-shared-prepacked"],
           "level-free-prepacked": MEMORY_CONFIGS["level-free-prepacked"]}
DEFAULTS = {"default-per-level": "level", "default-level-free": "level-free"}
SPEED_CONFIGS = [*RUNNERS, *DEFAULTS, "timm"]


def _warm_both_runtimes() -> None:
    """Load and run both ONNX Runtimes once on a small graph (MatMul, LayerNorm, Softmax), so the
    code pages and arenas each configuration needs anyway are outside the measurement."""
    import onnx
    import onnxruntime as ort
    from onnx import helper as h
    from onnx import numpy_helper as nh

    from janus_deploy.backends import ort_capi

    g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"]),
                      h.make_node("LayerNormalization", ["y", "s"], ["n"], axis=-1),
                      h.make_node("Softmax", ["n"], ["z"], axis=-1)], "warmup",
                     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 64])],
                     [h.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2, 64])],
                     [nh.from_array(np.ones((64, 64), np.float32), "W"), nh.from_array(np.ones(64, np.float32), "s")])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    x = np.ones((2, 64), np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    ort_capi.CSession(model, ort_capi.SharedWeights(), {}, threads=1).run(None, {"x": x})


def memory_probe(plan: Path, config: str) -> dict:
    """Resident bytes (RSS) added by loading and running every level twice in ``config``."""
    import psutil

    from janus_deploy.backends import run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.plan import Manifest

    m = Manifest.load(plan)
    proc = psutil.Process()
    _warm_both_runtimes()
    before = proc.memory_info().rss
    r = OrtRunner(m, threads=1, **MEMORY_CONFIGS[config])
    x = np.zeros((1, 3, m.model["img_size"], m.model["img_size"]), np.float32)
    for _ in range(2):
        for li, lv in enumerate(m.levels):
            run_segments(r, li, 0, len(lv["segments"]), [x])
    return {"config": config, "rss_bytes": proc.memory_info().rss - before, "sessions": r.loaded()}


def _in_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_prepack child {' '.join(args)} failed:\n{out.stderr.strip()}")
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


def _timed_fns(plan: Path, plain: Path, configs: list[str], threads: int):
    """(callables, owning configuration): every level of each configuration (timm: α = 0 only)."""
    import onnxruntime as ort

    from janus_deploy.backends import run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.plan import Manifest

    m = Manifest.load(plan)
    img = m.model["img_size"]
    x = np.random.default_rng(0).normal(size=(1, 3, img, img)).astype(np.float32)
    nsegs = [len(lv["segments"]) for lv in m.levels]
    fns, owner = [], []
    for config in configs:
        if config == "timm":
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(plain), opts, providers=["CPUExecutionProvider"])
            fns.append(lambda sess=sess: sess.run(None, {"image": x}))
            owner.append(config)
            continue
        r = OrtRunner(m, threads=threads, **RUNNERS[config]) if config in RUNNERS \
            else default_runner(m, DEFAULTS[config], threads)
        fns += [lambda r=r, li=li, n=n: run_segments(r, li, 0, n, [x]) for li, n in enumerate(nsegs)]
        owner += [config] * len(nsegs)
    return fns, owner


def time_probe(plan: Path, plain: Path, configs: list[str], threads: int, runs: int, clock_name: str) -> dict:
    """Median ms per level of each configuration (every level of every configuration
    round-robin), in this process."""
    from janus_deploy.profile.measure import time_calls

    fns, owner = _timed_fns(plan, plain, configs, threads)
    stats = time_calls(fns, 2, runs, time.thread_time if clock_name == "cpu" else time.perf_counter)
    return {c: [s["median"] for s, o in zip(stats, owner) if o == c] for c in configs}


def serve_probe(plan: Path, plain: Path, config: str, threads: int, clock_name: str) -> None:
    """Child of the lockstep mode: load one configuration, then run call ``i`` per line read and
    answer its time in ms (``q`` ends)."""
    fns, _ = _timed_fns(plan, plain, [config], threads)
    clock = time.thread_time if clock_name == "cpu" else time.perf_counter
    print(f"ready {len(fns)}", flush=True)
    for line in sys.stdin:
        if line.strip() == "q":
            return
        fn = fns[int(line)]
        t0 = clock()
        fn()
        print(f"{(clock() - t0) * 1e3:.4f}", flush=True)


def _lockstep(plan: Path, plain: Path, threads: int, runs: int, clock: str, gap_s: float) -> dict[str, list[float]]:
    """Every configuration in its own process, all loaded; the processes take turns call by
    call (never two running at once), with ``gap_s`` of idle time after each call so a finished
    pool's spinning has ended before the next process runs. Median ms per level."""
    procs = {}
    try:
        for config in SPEED_CONFIGS:  # loaded one after another
            p = subprocess.Popen([sys.executable, __file__, "--serve-probe", str(plan), str(plain), config,
                                  str(threads), clock], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            head = (p.stdout.readline() if p.stdout else "").split()
            if not head or head[0] != "ready":
                raise SystemExit(f"bench_prepack: the {config} process did not start (exit {p.wait()})")
            procs[config] = (p, int(head[1]))
        samples: dict[str, list[list[float]]] = {c: [[] for _ in range(n)] for c, (_, n) in procs.items()}
        for run in range(2 + runs):  # 2 warm-up rounds
            order = SPEED_CONFIGS[run % len(SPEED_CONFIGS):] + SPEED_CONFIGS[:run % len(SPEED_CONFIGS)]
            for li in range(max(n for _, n in procs.values())):
                for config in order:
                    p, n = procs[config]
                    if li >= n:
                        continue
                    assert p.stdin and p.stdout
                    p.stdin.write(f"{li}\n")
                    p.stdin.flush()
                    ms = float(p.stdout.readline())
                    if run >= 2:
                        samples[config][li].append(ms)
                    time.sleep(gap_s)
        return {c: [statistics.median(v) for v in per_level] for c, per_level in samples.items()}
    finally:
        for p, _ in procs.values():
            if p.stdin:
                p.stdin.write("q\n")
                p.stdin.close()
            p.wait()


def speed(plan: Path, plain: Path, manifest, threads: int, runs: int, rounds: int, clock: str,
          mode: str, gap_s: float) -> list[dict]:
    if mode == "lockstep":
        ms = _lockstep(plan, plain, threads, runs, clock, gap_s)
    else:
        per_round: dict[str, list[list[float]]] = {c: [] for c in SPEED_CONFIGS}
        for r in range(rounds):
            order = SPEED_CONFIGS[r % len(SPEED_CONFIGS):] + SPEED_CONFIGS[:r % len(SPEED_CONFIGS)]
            for group in [order] if mode == "one-process" else [[c] for c in order]:  # one process at a time
                got = _in_child("--time-probe", str(plan), str(plain), ",".join(group), str(threads), str(runs), clock)
                for config in group:
                    per_round[config].append(got[config])
            print(f"    round {r + 1}/{rounds} done (load average {os.getloadavg()[0]:.2f})", flush=True)
        ms = {c: [statistics.median(v) for v in zip(*rounds_ms)] for c, rounds_ms in per_round.items()}
    rows = []
    for li, lv in enumerate(manifest.levels):
        row = {"level": li, "alpha": lv["alpha"], **{c: ms[c][li] for c in SPEED_CONFIGS if c != "timm"},
               "timm": ms["timm"][0] if li == 0 else None}
        rows.append(row)
        ours, lf = row["per-level-shared-prepacked"], row["level-free-prepacked"]
        print(f"    α={lv['alpha']:.4f}: per-level shared-prepacked {ours:8.2f} ms = "
              f"{ours / row['default-per-level']:.3f} x the same graphs in default sessions; level-free prepacked "
              f"{lf:8.2f} ms = {lf / row['default-level-free']:.3f} x the same graphs, "
              f"{lf / row['default-per-level']:.3f} x the per-level graphs in default sessions"
              + (f"; per-level shared-prepacked / plain timm export {ours / row['timm']:.3f}" if row["timm"] else ""),
              flush=True)
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-probe":  # child: python bench_prepack.py --memory-probe PLAN CONFIG
        print(json.dumps(memory_probe(Path(sys.argv[2]), sys.argv[3])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--time-probe":  # child: PLAN PLAIN CONFIG THREADS RUNS CLOCK
        plan, plain, configs, threads, runs, clock = sys.argv[2:8]
        print(json.dumps(time_probe(Path(plan), Path(plain), configs.split(","), int(threads), int(runs), clock)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-probe":  # child: PLAN PLAIN CONFIG THREADS CLOCK
        plan, plain, config, threads, clock = sys.argv[2:7]
        serve_probe(Path(plan), Path(plain), config, int(threads), clock)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vit_small_patch16_224", "vit_base_patch16_224"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 0], help="intra-op threads (0: every core)")
    ap.add_argument("--runs", type=int, default=9, help="calls per level in each round")
    ap.add_argument("--rounds", type=int, default=2, help="processes per configuration (rotating order)")
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--plans", type=Path, default=Path("/tmp/janus-bench-prepack"),
                    help="where the plans and plain exports are written (reused when present)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: the calling thread's CPU time (1 thread only: ORT runs a 1-thread session in the caller; "
                         "robust to a shared machine)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    ap.add_argument("--no-speed", action="store_true", help="skip the timing")
    ap.add_argument("--mode", choices=["lockstep", "processes", "one-process"], default="lockstep",
                    help="lockstep: each configuration in its own process, the processes taking turns call by call "
                         "(never two at once; --gap idle after each call); processes: each configuration's whole timing "
                         "in its own process, one after another, --rounds times; one-process (1 thread): every "
                         "configuration round-robin in one process per round")
    ap.add_argument("--gap", type=float, default=0.02, help="lockstep: idle seconds after each call")
    args = ap.parse_args()
    if args.clock == "cpu" and any(t != 1 for t in args.threads):
        ap.error("--clock cpu measures 1-thread sessions only (--threads 1)")
    if args.mode == "one-process" and any(t != 1 for t in args.threads):
        ap.error("--mode one-process is for 1-thread sessions (--threads 1): multi-thread pools in one process spin "
                 "against each other")
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
        print(f"{name}: weights {wb / 1e6:.1f} MB, {len(manifest.levels)} levels", flush=True)
        if not args.no_memory:
            print("  resident memory with every level loaded and run / weight bytes (1 thread, a process each):",
                  flush=True)
            for cname in MEMORY_CONFIGS:
                r = _in_child("--memory-probe", str(plan), cname)
                print(f"    {cname:<27} {r['sessions']:3d} sessions {r['rss_bytes'] / 1e6:8.1f} MB = "
                      f"{r['rss_bytes'] / wb:.2f} x", flush=True)
        for threads in [] if args.no_speed else args.threads:
            where = {"one-process": f"all configurations round-robin in one process, {args.rounds} round(s)",
                     "processes": f"each configuration in its own process, one after another, {args.rounds} round(s)",
                     "lockstep": "each configuration in its own process, the processes taking turns call by call"
                     }[args.mode]
            print(f"  speed, {threads or os.cpu_count()} thread(s), median {args.clock} time of {args.runs} calls per "
                  f"level, {where} (load average {os.getloadavg()[0]:.2f}):", flush=True)
            speed(plan, plain, manifest, threads, args.runs, args.rounds, args.clock, args.mode, args.gap)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
