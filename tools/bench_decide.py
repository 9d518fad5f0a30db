"""ns per decision: libjanus (C) against the Python scheduler, in the same run, on the same cases.

The ViT-L@384 presets (30 exponential levels × 15 splits, the Jetson Orin Nano edge and the V100
cloud), three case mixes:

* ``typical``: janus-deploy mode, 1–100 Mbit/s, 5–60 ms RTT, SLA 300 ms, margin 0.1 (the paper's
  setting: something fits, the early exit at the first feasible preference rank applies);
* ``paper``: Algorithm 1 on the same bandwidths;
* ``nothing-fits``: janus-deploy mode with a 20 ms SLA (every option is scored, then the fastest
  taken: the C loop's worst case).

The C side is libjanus/bench/bench_decide.c compiled against the installed library (-O2); Python is
``Scheduler.decide`` (numpy). Both see identical cases; the C program reports the best and median of
its repeats, Python the best of its repeats.

Usage: python tools/bench_decide.py [--cases 20000] [--repeats 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EDGE, CLOUD = "vit_large_patch16_384-jetson-orin-nano", "vit_large_patch16_384-v100"


def mixes(rng: np.random.Generator, n: int) -> dict[str, list[tuple[int, float, float, float, float]]]:
    bw = 10 ** rng.uniform(0, 2, n)
    rtt = rng.uniform(5, 60, n)
    return {
        "typical": [(0, float(b), float(r), 300.0, 0.1) for b, r in zip(bw, rtt)],
        "paper": [(1, float(b), 0.0, 300.0, 0.0) for b in bw],
        "nothing-fits": [(0, float(b), float(r), 20.0, 0.1) for b, r in zip(bw, rtt)],
    }


def python_ns(sched: dict, cases: list, repeats: int) -> float:
    best = float("inf")
    rounds = max(1, repeats // 3)
    for _ in range(rounds):
        t0 = time.perf_counter()
        for mode, bw, rtt, sla, margin in cases:
            s = sched[mode]
            s.sla_ms = sla
            s.decide(bw, rtt_ms=rtt, margin=margin)
        best = min(best, (time.perf_counter() - t0) / len(cases) * 1e9)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from janus_deploy.profile.table import resolve_profile
    from janus_deploy.schedule import native
    from janus_deploy.schedule.scheduler import Scheduler
    from janus_deploy.schedule.table_file import write_table

    if not native.is_current():
        native.build(log=lambda m: None)
    edge, cloud = resolve_profile(EDGE), resolve_profile(CLOUD)
    sched = {0: Scheduler(edge, cloud, None, "janus-deploy"), 1: Scheduler(edge, cloud, None, "paper")}
    rng = np.random.default_rng(0)
    out = {"table": f"{EDGE} + {CLOUD}", "levels": len(sched[0].janus_levels), "splits": len(edge.candidates),
           "cases": args.cases, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = write_table(tmp / "vitl.jdt", edge, cloud)
        exe = tmp / "bench_decide"
        cmd = [native.compiler()[0], "-std=c11", "-O2", "-ffp-contract=off", str(ROOT / "libjanus/bench/bench_decide.c"),
               "-o", str(exe), *native.cflags(), *native.libs()]
        subprocess.run(cmd, check=True)
        for name, cases in mixes(rng, args.cases).items():
            f = tmp / f"{name}.txt"
            f.write_text("".join(f"{m} {b!r} {r!r} {s!r} {g!r}\n" for m, b, r, s, g in cases))
            r = subprocess.run([str(exe), str(table), str(f), str(args.repeats)], capture_output=True, text=True,
                               check=True)
            vals = dict(zip(r.stdout.split()[::2], r.stdout.split()[1::2]))
            c_best, c_med = float(vals["best_ns_per_decision"]), float(vals["median_ns_per_decision"])
            py = python_ns(sched, cases, args.repeats)
            out["results"][name] = {"c_ns_best": round(c_best, 1), "c_ns_median": round(c_med, 1),
                                    "python_ns_best": round(py, 1), "speedup": round(py / c_best, 1)}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{out['table']}: {out['levels']} levels x {out['splits']} splits, {args.cases} cases per mix")
    print(f"{'mix':14} {'C best ns':>10} {'C median ns':>12} {'Python ns':>10} {'Python/C':>9}")
    for name, r in out["results"].items():
        print(f"{name:14} {r['c_ns_best']:>10.1f} {r['c_ns_median']:>12.1f} {r['python_ns_best']:>10.1f} "
              f"{r['speedup']:>9.1f}")


if __name__ == "__main__":
    sys.exit(main())
