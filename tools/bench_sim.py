#!/usr/bin/env python
"""Simulated requests per second of ``janus-deploy simulate``'s decision loop (the Python
controller), per system, on one shipped trace, and the speed-up of ``--jobs`` over the systems.

Run from the repository root:

    .venv/bin/python tools/bench_sim.py [--trace-dir DIR] [--scenario driving] [--net lte]
                                        [--requests 20000] [--jobs 2]

Prints one line per (mode, system): requests, seconds, requests/s; then the wall time of all
systems one at a time and with ``--jobs`` processes, and whether both gave the same decisions.
There is no fast (C / vectorised) path yet: this is the Python figure it would be measured against.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from janus_deploy.net.traces import load_ping, load_trace
from janus_deploy.profile.table import load_preset
from janus_deploy.schedule.controller import SYSTEMS
from janus_deploy.sim.simulator import SimConfig, simulate

ROOT = Path(__file__).resolve().parents[1]


def _decisions(results):
    return {s: (r.log.labels, r.log.split, [a for a in r.log.alpha if not math.isnan(a)], r.log.latency_ms)
            for s, r in results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace-dir", default=str(ROOT.parent / "shared" / "traces" / "uplink-5g-lte"))
    ap.add_argument("--net", default="lte")
    ap.add_argument("--scenario", default="driving")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--edge", default="vit_large_patch16_384-jetson-orin-nano")
    ap.add_argument("--cloud", default="vit_large_patch16_384-v100")
    args = ap.parse_args()
    d = Path(args.trace_dir)
    bw = load_trace(d / "throughput" / args.scenario / args.net)
    ping = load_ping(d / "ping" / args.scenario / args.net)
    edge, cloud = load_preset(args.edge), load_preset(args.cloud)
    print(f"trace {bw.name}: {len(bw):,} samples; {args.requests:,} requests per system; "
          f"load average {os.getloadavg()[0]:.2f}")
    for paper in (False, True):
        mode = "paper" if paper else "time-driven"
        for system in SYSTEMS:
            cfg = SimConfig(sla_ms=300, systems=[system], paper_mode=paper, requests=args.requests)
            t0 = time.perf_counter()
            simulate(bw, edge, cloud, cfg, ping=ping)
            dt = time.perf_counter() - t0
            print(f"python  {mode:<11} {system:<13} {args.requests:>8,} req  {dt:7.2f} s  "
                  f"{args.requests / dt:>10,.0f} req/s")
    cfg = SimConfig(sla_ms=300, systems=SYSTEMS, requests=args.requests)
    t0 = time.perf_counter()
    serial = simulate(bw, edge, cloud, cfg, ping=ping)
    t1 = time.perf_counter()
    parallel = simulate(bw, edge, cloud, cfg, ping=ping, jobs=args.jobs)
    t2 = time.perf_counter()
    same = _decisions(serial) == _decisions(parallel)
    print(f"all {len(SYSTEMS)} systems, time-driven: jobs=1 {t1 - t0:.2f} s, jobs={args.jobs} {t2 - t1:.2f} s "
          f"({(t1 - t0) / (t2 - t1):.2f}x); same decisions: {same}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
