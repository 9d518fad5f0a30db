#!/usr/bin/env python
"""Simulated requests per second of ``janus-deploy simulate``: the Python loop against the fast
engine (libjanus's loop, ``janus_deploy.sim.fast``), per system and clock, on one shipped trace,
with the parity of their decisions, in one run.

Run from the repository root:

    PYTHONPATH=$PWD .venv/bin/python tools/bench_sim.py [--scenario driving] [--net lte]
                                        [--requests 20000] [--jobs 2] [--parity all]

Per (clock, system): the Python loop over ``--requests`` requests, the fast engine over the same
requests (wall clock, and the ratio of the two) and the fast engine over one whole pass of the
trace, per core (requests per CPU second of this process: the machine may be shared), as
``simulate()`` end to end (the loop, the request log's columns and the report) and as the C loop
alone (with the table and the copy of its records); then whether both engines gave the same request records and reports (every field, bit for
bit). ``--parity all`` also compares whole passes of every shipped trace for every system in the
reproduction's three settings (minutes: the Python side is the slow one); ``--jobs`` times all
systems one at a time and in that many processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from janus_deploy.net.traces import load_ping, load_trace, resolve_shipped
from janus_deploy.profile.table import load_preset
from janus_deploy.schedule.controller import SYSTEMS
from janus_deploy.sim import fast
from janus_deploy.sim.simulator import SimConfig, _schedulers, simulate

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"deploy": {}, "paper": {"paper_mode": True},
            "paper-fp32-frame": {"paper_mode": True, "frame_bytes": 4 * 3 * 384 * 384}}


def differences(py, fa) -> list[str]:
    out = []
    for f in dataclasses.fields(py.log):
        a, b = getattr(py.log, f.name), getattr(fa.log, f.name)
        if f.name == "alpha":
            a, b = [repr(x) for x in a], [repr(x) for x in b]
        if a != b:
            out.append(f.name)
    if repr(py.metrics) != repr(fa.metrics):
        out.append("metrics")
    return out


def _loop_only(bw, ping, edge, cloud, cfg, system) -> tuple[int, float]:
    """(requests, seconds) of the C loop alone for one system (no request log, no report)."""
    deploy, _ = _schedulers(edge, cloud, cfg, None)
    ctrl = cfg.controller.for_trace(bw).with_(system=system, rtt_cold_ms=ping.median() if ping else cfg.rtt_ms)
    t0 = time.process_time()
    out = fast.run_system(bw, ping, edge, cloud, cfg, None, ctrl, deploy)
    dt = time.process_time() - t0
    assert out is not None
    return len(out[0]["latency_ms"]), dt


def parity_all(edge, cloud) -> bool:
    shipped = resolve_shipped("uplink-5g-lte")
    ok = True
    for path in sorted(shipped.glob("throughput/*/*/*.list")):
        scenario, net = path.parts[-3], path.parts[-2]
        pp = shipped / "ping" / scenario / net / path.name
        ping = load_ping(pp if pp.exists() else shipped / "ping" / scenario / net / "ping.list")
        bw = load_trace(path)
        for name, kw in SETTINGS.items():
            cfg = SimConfig(sla_ms=300, **kw)
            t0 = time.perf_counter()
            py = simulate(bw, edge, cloud, cfg, ping=ping, engine="python")
            t1 = time.perf_counter()
            fa = simulate(bw, edge, cloud, cfg, ping=ping, engine="fast")
            t2 = time.perf_counter()
            bad = {s: differences(py[s], fa[s]) for s in SYSTEMS if differences(py[s], fa[s])}
            n = sum(len(r.log) for r in py.values())
            ok &= not bad
            print(f"parity {scenario}/{net}/{path.name} {name:<16} {n:>9,} requests  python {t1 - t0:7.1f} s  "
                  f"fast {t2 - t1:6.2f} s  {'same' if not bad else f'DIFFER {bad}'}", flush=True)
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace-dir", default=None, help="default: the shipped uplink-5g-lte traces")
    ap.add_argument("--net", default="lte")
    ap.add_argument("--scenario", default="driving")
    ap.add_argument("--requests", type=int, default=20000, help="requests per system for the Python comparison")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--parity", choices=["bench", "all"], default="bench",
                    help="all: also whole passes of every shipped trace (minutes)")
    ap.add_argument("--edge", default="vit_large_patch16_384-jetson-orin-nano")
    ap.add_argument("--cloud", default="vit_large_patch16_384-v100")
    args = ap.parse_args()
    d = Path(args.trace_dir) if args.trace_dir else resolve_shipped("uplink-5g-lte")
    tdir = d / "throughput" / args.scenario / args.net
    pdir = d / "ping" / args.scenario / args.net
    bw, ping = load_trace(tdir), load_ping(pdir)
    edge, cloud = load_preset(args.edge), load_preset(args.cloud)
    why = fast.unsupported(SimConfig())
    if why:
        sys.exit(f"the fast engine cannot run here: {why}")
    print(f"trace {bw.name}: {len(bw):,} samples; python and fast over {args.requests:,} requests per system, "
          f"fast over one whole pass; load average {os.getloadavg()[0]:.2f}")
    same_all = True
    for paper in (False, True):
        mode = "paper" if paper else "time-driven"
        for system in SYSTEMS:
            cfg = SimConfig(sla_ms=300, systems=[system], paper_mode=paper, requests=args.requests)
            t0 = time.perf_counter()
            py = simulate(bw, edge, cloud, cfg, ping=ping, engine="python")
            t1 = time.perf_counter()
            fa = simulate(bw, edge, cloud, cfg, ping=ping, engine="fast")
            t2 = time.perf_counter()
            bad = differences(py[system], fa[system])
            same_all &= not bad and fa[system].engine == "fast"
            whole = dataclasses.replace(cfg, requests=None)
            t3 = time.process_time()
            n = len(simulate(bw, edge, cloud, whole, ping=ping, engine="fast")[system].log)
            t4 = time.process_time()
            nl, dl = _loop_only(bw, ping, edge, cloud, whole, system)
            print(f"{mode:<11} {system:<13} python {args.requests / (t1 - t0):>9,.0f} req/s  fast {args.requests / (t2 - t1):>11,.0f}"
                  f" req/s ({(t1 - t0) / (t2 - t1):4.0f}x)  whole pass {n:>8,} req, per CPU s: simulate {n / (t4 - t3):>10,.0f},"
                  f" C loop {nl / dl:>10,.0f}  {'same' if not bad else 'DIFFER ' + ','.join(bad)}", flush=True)
    cfg = SimConfig(sla_ms=300, systems=SYSTEMS)
    t0 = time.perf_counter()
    serial = simulate(bw, edge, cloud, cfg, ping=ping)
    t1 = time.perf_counter()
    parallel = simulate(bw, edge, cloud, cfg, ping=ping, jobs=args.jobs)
    t2 = time.perf_counter()
    same_jobs = all(not differences(serial[s], parallel[s]) for s in SYSTEMS)
    total = sum(len(r.log) for r in serial.values())
    print(f"all {len(SYSTEMS)} systems, one whole pass, fast: {total:,} requests, jobs=1 {t1 - t0:.2f} s, "
          f"jobs={args.jobs} {t2 - t1:.2f} s; same decisions: {same_jobs}")
    ok = same_all and same_jobs
    print(f"parity (python vs fast, {args.requests:,} requests x {2 * len(SYSTEMS)} runs): "
          f"{'every record and report the same' if same_all else 'DIFFERENT'}")
    if args.parity == "all":
        ok &= parity_all(edge, cloud)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
