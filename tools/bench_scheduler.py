#!/usr/bin/env python
"""Median microseconds per scheduling decision, both modes, on the ViT-L@384 presets
(30 exponential levels × 15 candidate splits).

Run from the repository root:  .venv/bin/python tools/bench_scheduler.py [--decisions 20000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from janus_deploy.profile.table import load_preset
from janus_deploy.schedule.scheduler import MODES, Scheduler


def bench(sched: Scheduler, decisions: int, seed: int = 0) -> tuple[float, float]:
    """(median µs, p99 µs) of ``decide`` over random bandwidths 0–100 Mbit/s and RTTs 10–80 ms."""
    rng = random.Random(seed)
    inputs = [(rng.uniform(0.0, 100.0), rng.uniform(10.0, 80.0)) for _ in range(decisions)]
    for bw, rtt in inputs[:500]:  # warm-up
        sched.decide(bw, rtt)
    times = []
    clock = time.perf_counter
    for bw, rtt in inputs:
        t0 = clock()
        sched.decide(bw, rtt)
        times.append(clock() - t0)
    times.sort()
    return statistics.median(times) * 1e6, times[int(0.99 * (len(times) - 1))] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=20000)
    ap.add_argument("--edge", default="vit_large_patch16_384-jetson-orin-nano")
    ap.add_argument("--cloud", default="vit_large_patch16_384-v100")
    args = ap.parse_args()
    edge, cloud = load_preset(args.edge), load_preset(args.cloud)
    for mode in MODES:
        s = Scheduler(edge, cloud, mode=mode, sla_ms=300.0)
        med, p99 = bench(s, args.decisions)
        print(f"{mode:13s} {len(s.janus_levels)} levels x {len(s.candidates)} splits: "
              f"median {med:6.1f} us/decision, p99 {p99:6.1f} us")


if __name__ == "__main__":
    main()
