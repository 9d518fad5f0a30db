"""A fleet for real: N edge clients against one server on loopback, load-aware vs load-unaware,
next to the fleet simulator on the same profiles, trace windows and duration (issue 24 item 4).

Needs a demo folder (plan, engines, profiles, accuracy, images): ``janus-deploy demo --levels 2
--out DIR`` (two levels keep the fused Triton repository to a few processes). Per engine
(``builtin``: ``janus-deploy serve`` in a subprocess, one request at a time with all threads, as
the cloud profile was measured; ``triton``: the bundled tritonserver on the plan's fused
exponential-level tails, which answer their time) and per controller (``aware``: the default
``--cloud-load``; ``unaware``: ``off``), N edge runtimes in threads (the demo's emulated edge:
the head runs here, slowed ``--edge-slowdown``×) each replay their own window of the trace
(edge i: the trace rotated by i·duration/N, all started at the same instant) back to back for
``--seconds``; then :func:`janus_deploy.sim.fleet.simulate_fleet` runs the same fleet with the
RTT the loopback run observed. Prints one row per (engine, controller): violations and goodput on
loopback and in the simulator, and their difference in points.

    PYTHONPATH=$PWD nice -n 10 python tools/bench_fleet.py --demo /tmp/demo2 --edges 8 --seconds 20

Everything runs niced (this process and its server); keep ``--seconds`` short on a shared box.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_clients import exit_if_failed, start_clients  # noqa: E402 - the tools folder is put on the path first

from janus_deploy.demo import observed_rtt_ms  # noqa: E402 - after the path setup above
from janus_deploy.net.shaper import TraceShaper  # noqa: E402
from janus_deploy.net.traces import load_trace  # noqa: E402
from janus_deploy.plan.manifest import Manifest  # noqa: E402
from janus_deploy.profile.table import load_profile  # noqa: E402
from janus_deploy.schedule.controller import ControllerConfig  # noqa: E402
from janus_deploy.sim.fleet import FleetConfig, ServerModel, rotated, simulate_fleet  # noqa: E402
from janus_deploy.sim.simulator import SimConfig  # noqa: E402


def frames_of(demo: Path, img: int, n: int) -> list[np.ndarray]:
    """The demo's images (its ``images`` folder), or synthetic frames where it has none."""
    from janus_deploy.images import list_images, load_frame, synthetic_frames

    if (demo / "images").is_dir():
        return [load_frame(p, img) for p, _ in list_images(demo / "images")[:n]]
    return list(synthetic_frames(n, img, seed=1))


def accuracy_of(demo: Path) -> Any:
    p = demo / "accuracy.json"
    return json.loads(p.read_text()) if p.is_file() else None


def start_builtin(demo: Path, concurrency: int, threads: int = 0) -> tuple[Any, str, Any]:
    import httpx

    from janus_deploy.triton.server import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "janus_deploy.cli.main", "serve", str(demo / "plan"), "--engines", str(demo / "engines"),
           "--port", str(port), "--concurrency", str(concurrency), "--threads", str(threads), "--preload"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"error: the built-in server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1, trust_env=False).status_code == 200:
                return proc, url, proc.kill
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("error: the built-in server did not start within 120 s")


def start_triton(demo: Path, manifest: Manifest, work: Path, instances: int) -> tuple[Any, str, Any]:
    from janus_deploy.triton.repository import ExportOptions, export_repository
    from janus_deploy.triton.server import TritonServer

    n = manifest.num_blocks
    tails = tuple(f"janus_L{li}_S{s}" for li, lv in enumerate(manifest.levels) if lv["policy"] == "exponential"
                  for s in manifest.candidates if s <= n)
    repo = export_repository(manifest, demo / "engines", work / "triton-repository",
                             ExportOptions(platform="python", fuse=True, tails=tails, codecs=("fp16",),
                                           instances=instances), force=True)
    t = time.perf_counter()
    srv = TritonServer(repo.path, http_port=0)
    srv.start(timeout=300)
    print(f"tritonserver ready in {time.perf_counter() - t:.0f} s with {len(repo.tails)} fused tails", file=sys.stderr)
    return srv, srv.url, lambda: (srv.stop(), srv.cleanup())


def reprofile(demo: Path, manifest: Manifest, args: Any, work: Path) -> tuple[Path, Path]:
    """Profiles measured now, on this box as loaded as it is (the demo's were measured at another
    time): the edge as the demo's (1 thread, slowed), the cloud as the server runs (all threads);
    the loopback edges and the simulator both use them."""
    from janus_deploy.backends.base import SlowedRunner
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.profile.measure import measure_profile
    from janus_deploy.profile.table import save_profile

    img = manifest.model["img_size"]
    frames = np.stack(frames_of(demo, img, 4))
    t = time.perf_counter()
    edge, _ = measure_profile(manifest, SlowedRunner(OrtRunner(manifest, threads=1), args.edge_slowdown), frames,
                              device_name=f"edge-1-thread-x{args.edge_slowdown:g}", threads=1, warmup=2, runs=args.profile_runs)
    threads = args.server_threads
    cloud, _ = measure_profile(manifest, OrtRunner(manifest, threads=threads), frames,
                               device_name=f"cloud-{threads or 'all'}-threads", threads=threads, warmup=2,
                               runs=args.profile_runs)
    paths = work / "edge-profile.json", work / "cloud-profile.json"
    save_profile(edge, paths[0])
    save_profile(cloud, paths[1])
    print(f"profiles measured again in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return paths


def batch_curve(demo: Path, manifest: Manifest, sizes: list[int], runs: int) -> list[float]:
    """The time of a batch of b over a batch of 1 for every b in ``sizes`` (1 first; give 1,2,3,...
    for the simulator, which reads the curve by batch size), the fastest of ``runs`` (the least
    disturbed on a shared box), on the cloud's runner (all threads), the first exponential level's
    tail at split 0 (the whole model): the simulator's ``--batch-curve`` for this machine."""
    from janus_deploy.backends import run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.images import normalize

    runner = OrtRunner(manifest)
    level = next(li for li, lv in enumerate(manifest.levels) if lv["policy"] == "exponential")
    nseg = len(manifest.level(level)["segments"])
    img = manifest.model["img_size"]
    frame = frames_of(demo, img, 1)[0]
    times = []
    for b in sizes:
        x = normalize(np.repeat(frame[None], b, axis=0), manifest.model["mean"], manifest.model["std"])
        run_segments(runner, level, 0, nseg, [x])  # warm
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            run_segments(runner, level, 0, nseg, [x])
            ts.append(time.perf_counter() - t)
        times.append(float(np.min(ts)))  # the least-disturbed run: this box is shared
    return [t / times[0] for t in times]


def warm_up(demo: Path, manifest: Manifest, url: str, args: Any) -> None:
    """Every tail the controllers may choose answered twice before the timed runs (a first ONNX
    Runtime run is many times slower: 8 edges' first requests at once would all time out)."""
    from janus_deploy.runtime.edge import EdgeRuntime

    frame = frames_of(demo, manifest.model["img_size"], 1)[0]
    with EdgeRuntime(manifest, demo / "engines", args.profiles[0], args.profiles[1], server_url=url, sla_ms=10_000,
                     accuracy=accuracy_of(demo)) as rt:
        for li, lv in enumerate(manifest.levels):
            if lv["policy"] != "exponential":
                continue
            for s in manifest.candidates:
                if s <= manifest.num_blocks:
                    for _ in range(2):
                        rt.infer(frame, force=(li, s))


def run_fleet(demo: Path, manifest: Manifest, url: str, mode: str, args: Any, window: Any, work: Path) -> list[dict]:
    """N edges against ``url`` for ``args.seconds``; every edge's request records."""
    from janus_deploy.runtime.edge import EdgeRuntime
    from janus_deploy.runtime.session import edge_runner

    if args.edge_timing == "profile":  # every edge segment takes its profiled time (one runner state per edge)
        from janus_deploy.testbed.run import ProfiledRunner

        inner = edge_runner(manifest, demo / "engines", threads=1, preload=True)
        edge_profile = load_profile(args.profiles[0])
        runners = [ProfiledRunner(inner, manifest, edge_profile) for _ in range(args.edges)]
    else:
        runners = [edge_runner(manifest, demo / "engines", edge_slowdown=args.edge_slowdown, threads=1,
                               preload=True)] * args.edges
    img = manifest.model["img_size"]
    frames = frames_of(demo, img, 32)
    ctrl = ControllerConfig(cloud_load="off" if mode == "unaware" else args.cloud_load, deflate=not args.no_deflate)
    n = args.edges
    shapers = [TraceShaper(rotated(window, i * window.duration_s / n)) for i in range(n)]
    rts = [EdgeRuntime(manifest, runners[i], args.profiles[0], args.profiles[1], server_url=url,
                       sla_ms=args.sla, accuracy=accuracy_of(demo), controller=ctrl, trace=shapers[i],
                       log=work / f"{mode}-edge{i}.jsonl") for i in range(n)]
    for rt in rts:  # warm: the first exchange opens the connection and asks the server what it serves
        rt.transport.server_metadata(timeout_s=5.0)
    t0 = time.perf_counter()
    for s in shapers:
        s.start(t0)
    stop = t0 + args.seconds

    def edge(i: int) -> None:
        k = i
        while time.perf_counter() < stop:
            if args.fps:  # the next frame tick (frames that arrived meanwhile are skipped, as the simulator's)
                el = time.perf_counter() - t0
                time.sleep(max(math.ceil(el * args.fps - 1e-9) / args.fps - el, 0.0))
                if time.perf_counter() >= stop:
                    break
            rts[i].infer(frames[k % len(frames)])
            k += 1

    threads, crashes = start_clients(edge, [(i,) for i in range(n)])
    for t in threads:
        t.join(args.seconds + 60)
    records = []
    for rt in rts:
        records.append(rt.records)
        rt.close()
    total = sum(len(r) for r in records)
    exit_if_failed(total, sum(1 for rs in records for r in rs if r.error), crashes,
                   offloaded=sum(1 for rs in records for r in rs if r.bytes))
    return records


def _p50(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def summarise(records: list[list[dict]], sla: float, seconds: float) -> dict[str, Any]:
    """The fleet's figures, and what the edges' controllers saw: the bandwidth the scheduler was
    given (the estimate deflated by its recent error), the spread of the link samples, and the
    server's reported time split into queue, compute and the rest, each over the profile's idle
    expectation (decode + tail) of the same option."""
    flat = [r for rs in records for r in rs if r.error is None]
    lat = np.asarray([r.measured.total_ms for r in flat])
    within = int(np.sum(lat <= sla))
    server = [r.server["janus_server_ms"] for r in flat if (r.server or {}).get("janus_server_ms") is not None]
    ctrl = [r.controller for r in flat if r.controller]
    samples = [o.nbytes * 8 / o.seconds / 1e6 for r in flat for o in r.observations
               if o.kind == "transfer" and o.seconds and o.nbytes and not o.probe]
    parts: dict[str, list[float]] = {"server": [], "queue": [], "compute": [], "rest": []}
    for r in flat:
        s = r.server or {}
        exp = next((o.expected_ms for o in r.observations if o.expected_ms), None)
        if not exp or "janus_compute_ms" not in s:
            continue
        rest = s["janus_server_ms"] - s["janus_queue_ms"] - s["janus_compute_ms"]
        for k, v in (("server", s["janus_server_ms"]), ("queue", s["janus_queue_ms"]),
                     ("compute", s["janus_compute_ms"]), ("rest", rest)):
            parts[k].append(v / exp)
    return {"requests": len(flat), "violation_ratio": float(np.mean(lat > sla)) if len(lat) else None,
            "goodput_rps": within / seconds, "offloaded": float(np.mean([bool(r.bytes) for r in flat])),
            "fallbacks": sum(1 for r in flat if r.fallback),
            "server_ms_p50": _p50(server),
            "cloud_factor_mean": float(np.mean([c.cloud_factor for c in ctrl])) if ctrl else 1.0,
            "estimate_mbps_p50": _p50([c.estimate_mbps for c in ctrl]),
            "scheduler_mbps_p50": _p50([c.bandwidth_mbps for c in ctrl]),
            "recent_error_p50": _p50([c.recent_error for c in ctrl]),
            "rtt_estimate_ms_p50": _p50([c.rtt_ms for c in ctrl]),
            "link_sample_mbps_p10_p50_p90": [float(np.percentile(samples, q)) for q in (10, 50, 90)] if samples else None,
            "server_over_profile_p50": {k: _p50(v) for k, v in parts.items()},
            "server_timed_requests": len(parts["server"]),
            "per_edge_violations": [float(np.mean([r.measured.total_ms > sla for r in rs])) if rs else None
                                    for rs in records]}


def simulated(demo: Path, window: Any, mode: str, args: Any, rtt_ms: float) -> dict[str, Any]:
    edge, cloud = load_profile(args.profiles[0]), load_profile(args.profiles[1])
    acc = accuracy_of(demo)
    ctrl = ControllerConfig(cloud_load=args.cloud_load, deflate=not args.no_deflate)
    cfg = FleetConfig(edges=args.edges, sim=SimConfig(sla_ms=args.sla, rtt_ms=rtt_ms, timeout_factor=1.0, controller=ctrl,
                                                      fps=args.fps or None),
                      server=ServerModel(instances=args.instances, max_batch=args.sim_max_batch,
                                         batch_slope=args.batch_slope), modes=(mode,))
    r = simulate_fleet(window, edge, cloud, cfg, accuracy=acc)[mode]
    return {"requests": r.fleet["requests"], "violation_ratio": r.fleet["violation_ratio"],
            "goodput_rps": r.fleet["goodput_rps"], "offloaded": r.fleet["offloaded"], "fallbacks": r.fleet["fallbacks"],
            "scheduler_mbps_p50": _p50([v for lg in r.logs for v in lg.est_mbps]),
            "utilisation": r.server["utilisation"], "queue_ms_p95": r.server["queue_ms_p95"]}


def _fmt(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, required=True, help="a `janus-deploy demo --levels 2` output folder")
    ap.add_argument("--edges", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds per (engine, controller) run")
    ap.add_argument("--engines", default="builtin", help="builtin,triton")
    ap.add_argument("--modes", default="aware,unaware")
    ap.add_argument("--sla", type=float, default=100.0)
    ap.add_argument("--fps", type=float, default=0.0, help="frames per second per edge (0: back to back)")
    ap.add_argument("--trace", default="uplink-5g-lte/throughput/static/5g/*.list")
    ap.add_argument("--sample-interval", type=float, default=0.05)
    ap.add_argument("--trace-start", type=float, default=0.0)
    ap.add_argument("--edge-slowdown", type=float, default=8.0, help="as the demo's edge profile (8)")
    ap.add_argument("--edge-timing", choices=("real", "profile"), default="real",
                    help="real: the head runs here, slowed --edge-slowdown x (contention multiplied too); profile: "
                         "every edge segment takes its profiled time (testbed.run.ProfiledRunner: absorbs the "
                         "neighbours' load up to the profile)")
    ap.add_argument("--cloud-load", default="factor", help="the aware controller's --cloud-load")
    ap.add_argument("--no-deflate", action="store_true",
                    help="the controllers (loopback and simulator) do not deflate the bandwidth by its recent error")
    ap.add_argument("--instances", type=int, default=1, help="server concurrency (built-in) / Triton instances")
    ap.add_argument("--server-threads", type=int, default=0,
                    help="intra-op threads of the built-in server's sessions and of the cloud profile (0: all); "
                         "1 keeps the server's speed its profile's while the edges share the cores")
    ap.add_argument("--batch-slope", type=float, default=1.0,
                    help="the simulator's Triton batch model: a batch of b costs 1 + slope·(b − 1) requests")
    ap.add_argument("--profile-runs", type=int, default=5, help="timed runs per engine when profiling again")
    ap.add_argument("--demo-profiles", action="store_true", help="use the demo's profiles, not ones measured now")
    ap.add_argument("--profiles-from", type=Path, default=None, metavar="DIR",
                    help="edge-profile.json and cloud-profile.json from DIR (an earlier run's --work folder): the "
                         "same profiles for several runs, not ones measured again on a box as loaded as it is now")
    ap.add_argument("--batch-curve", default=None, metavar="1,2,4,8",
                    help="only measure the cloud's batch curve at these sizes (1 first) and print it")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-fleet"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.nice(10)
    if args.edges < 1 or args.seconds <= 0:
        sys.exit("error: --edges must be >= 1 and --seconds > 0")
    demo, work = args.demo, args.work
    for f in ("plan", "engines", "edge-profile.json", "cloud-profile.json"):  # accuracy, images: optional
        if not (demo / f).exists():
            sys.exit(f"error: {demo} has no {f}: make it with `janus-deploy demo --levels 2 --out {demo}`")
    work.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(demo / "plan")
    if args.batch_curve:
        sizes = [int(v) for v in args.batch_curve.split(",")]
        if sizes[0] != 1:
            sys.exit("error: --batch-curve sizes start at 1")
        curve = batch_curve(demo, manifest, sizes, max(args.profile_runs, 5))
        print("batch sizes " + ",".join(map(str, sizes)) + "; simulate --batch-curve "
              + ",".join(f"{c:.3f}" for c in curve) + f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        return
    window = load_trace(args.trace, interval_s=args.sample_interval).window(args.trace_start, args.seconds)
    if args.profiles_from is not None:
        args.profiles = (args.profiles_from / "edge-profile.json", args.profiles_from / "cloud-profile.json")
        for f in args.profiles:
            if not f.is_file():
                sys.exit(f"error: --profiles-from {args.profiles_from} has no {f.name} (a --work folder of an earlier run)")
    else:
        args.profiles = ((demo / "edge-profile.json", demo / "cloud-profile.json") if args.demo_profiles
                         else reprofile(demo, manifest, args, work))
    rows = []
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if engine == "builtin":
            server, url, stop = start_builtin(demo, args.instances, args.server_threads)
            args.sim_max_batch = 1
        elif engine == "triton":
            server, url, stop = start_triton(demo, manifest, work, args.instances)
            args.sim_max_batch = 64  # Triton's dynamic batcher (the repository's max batch)
        else:
            sys.exit(f"error: unknown engine {engine!r}; choose builtin or triton")
        try:
            warm_up(demo, manifest, url, args)
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                print(f"{engine} {mode}: {args.edges} edges for {args.seconds:g} s ...", file=sys.stderr)
                records = run_fleet(demo, manifest, url, mode, args, window, work)
                real = summarise(records, args.sla, args.seconds)
                rtt = observed_rtt_ms([r for rs in records for r in rs])
                sim = simulated(demo, window, mode, args, rtt)
                rows.append({"engine": engine, "mode": mode, "edges": args.edges, "rtt_ms": rtt, "loopback": real,
                             "simulated": sim})
        finally:
            stop()
    print("| engine | controller | edges | over SLA loopback | over SLA sim | diff (points) | goodput/s loopback | "
          "goodput/s sim | offloaded loopback / sim | fallbacks | server ms p50 | mean cloud factor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        lo, si = r["loopback"], r["simulated"]
        sp = lo["server_ms_p50"]
        print(f"| {r['engine']} | {r['mode']} | {r['edges']} | {100 * lo['violation_ratio']:.1f} % | "
              f"{100 * si['violation_ratio']:.1f} % | {100 * (lo['violation_ratio'] - si['violation_ratio']):+.1f} | "
              f"{lo['goodput_rps']:.1f} | {si['goodput_rps']:.1f} | {100 * lo['offloaded']:.0f} % / {100 * si['offloaded']:.0f} % | "
              f"{lo['fallbacks']} | {'-' if sp is None else f'{sp:.1f}'} | {lo['cloud_factor_mean']:.2f} |")
    print()
    print("| engine | controller | scheduler Mbit/s loopback / sim | link samples Mbit/s p10/p50/p90 | recent error | "
          "RTT estimate ms | server / profile: total, queue, compute, rest |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        lo, si = r["loopback"], r["simulated"]
        ls, sp = lo["link_sample_mbps_p10_p50_p90"], lo["server_over_profile_p50"]
        print(f"| {r['engine']} | {r['mode']} | {_fmt(lo['scheduler_mbps_p50'])} / {_fmt(si['scheduler_mbps_p50'])} | "
              f"{'-' if ls is None else '/'.join(f'{v:.0f}' for v in ls)} | {_fmt(lo['recent_error_p50'], '{:.2f}')} | "
              f"{_fmt(lo['rtt_estimate_ms_p50'])} | "
              + ", ".join(_fmt(sp[k], "{:.2f}") for k in ("server", "queue", "compute", "rest"))
              + f" ({lo['server_timed_requests']} answers) |")
    meta = {"seconds": args.seconds, "trace": window.name, "sla_ms": args.sla, "edge_slowdown": args.edge_slowdown,
            "fps": args.fps, "edge_timing": args.edge_timing, "deflate": not args.no_deflate, "server_threads": args.server_threads,
            "instances": args.instances, "cores": os.cpu_count(), "load": os.getloadavg()}
    print(f"trace {window.name}, SLA {args.sla:g} ms, {args.seconds:g} s per run, load average "
          f"{meta['load'][0]:.1f} on {meta['cores']} cores")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
