"""Camera streams: the pipelined runtime against the serial one, and the simulator against both.

The demo's digits ViT (exported, ORT engines, the edge emulated ``--edge-slowdown``× slower on one
thread, profiled through the same wrapper), a loopback V2 server, an LTE driving window of the
shipped traces replayed on the upload, and ``--streams`` cameras at ``--fps`` (the digits test
images). Per mode (serial: one frame at a time, the rest dropped; pipelined: ``--drop``), the
loopback run's goodput, violation ratio among answered frames, p50 latency and drop ratio, and
the simulator's (``sim.streams``: the same pipeline model over the same trace window, the run's
observed loopback RTT) on the same workload, then the ratios the issue asks for:

    python tools/bench_streams.py                          # 8 x 15 fps, 20 s of the LTE drive
    python tools/bench_streams.py --streams 4              # 4 x 15 fps (the serial loop nearly keeps up)
    python tools/bench_streams.py --seconds 10 --json      # shorter; machine-readable

The simulator is given what the warm-up and the runs measured beyond the profiles: the RTT, the
edge client's request set-up before a body's first byte (it holds the uplink: the warm-up's,
or, where the run's uplink queued, the run's own hand-off from one body's last byte to the next
one's first) and the server's time beyond its profile (``--no-calibrate``: neither of the last two).

The plan, engines and profiles are built once under ``--work`` (default runs/bench-streams) and
reused. Exit status 0 whatever the figures (it measures; it does not judge), 1 on a failed run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEYS = ("goodput_fps", "violation_ratio", "latency_ms_p50", "drop_ratio", "frames", "answered", "fallbacks")


def build(work: Path, edge_slowdown: float, runs: int) -> dict[str, Any]:
    """The demo plan, engines, accuracy table and profiles under ``work`` (made once)."""
    from janus_deploy.backends import build_engines
    from janus_deploy.backends.base import SlowedRunner
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.calibrate.digits import SMALL_MODEL_CHECKPOINT, SMALL_MODEL_NAME, SMALL_MODEL_OVERRIDES, make_digits, write_image_folder
    from janus_deploy.demo import BASELINE_R, REPO_ROOT
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan
    from janus_deploy.plan.manifest import Manifest
    from janus_deploy.profile.measure import measure_profile
    from janus_deploy.profile.table import load_profile, save_profile

    plan, engines = work / "plan", work / "engines"
    tag = f"x{edge_slowdown:g}"
    edge_path, cloud_path = work / f"edge-profile-{tag}.json", work / "cloud-profile.json"
    if not (plan / "manifest.json").is_file():
        print(f"building the demo plan under {work} (once)", file=sys.stderr)
        spec = ModelSpec(SMALL_MODEL_NAME, dict(SMALL_MODEL_OVERRIDES), str(REPO_ROOT / SMALL_MODEL_CHECKPOINT))
        manifest, _ = export_plan(spec, plan, ExportConfig(k=2, levels=8, baseline_r=BASELINE_R))
        build_engines(manifest, engines, "ort", device_name="this-cpu")
    manifest = Manifest.load(plan)
    if not (work / "images").is_dir():
        write_image_folder(work / "images", "test", limit=400)
    inner = OrtRunner(manifest, threads=1)
    edge_runner = SlowedRunner(inner, edge_slowdown)
    if not edge_path.is_file() or not cloud_path.is_file():
        print("profiling the edge and the cloud (once)", file=sys.stderr)
        frames, _ = make_digits("test")
        edge, _ = measure_profile(manifest, edge_runner, frames[:8], device_name=f"edge-1-thread-{tag}", threads=1,
                                  warmup=3, runs=runs)
        cloud, _ = measure_profile(manifest, OrtRunner(manifest), frames[:8], device_name="cloud", warmup=3, runs=runs)
        save_profile(edge, edge_path)
        save_profile(cloud, cloud_path)
    inner.preload()  # every session loaded before the first frame (a lazy load stalls the edge for 0.5 s)
    return {"manifest": manifest, "plan": plan, "engines": engines, "runner": edge_runner,
            "edge": load_profile(edge_path), "cloud": load_profile(cloud_path), "images": work / "images"}


def start_server(b: dict[str, Any], where: str) -> tuple[str, Any]:
    """The loopback server: ``process``, ``janus-deploy serve`` in its own process (a deployed
    server is another machine: it shares the cores here, as the kernel testbed's, but not the
    edge's interpreter lock), or ``thread``, in this process; (url, stop)."""
    if where == "thread":
        from janus_deploy.runtime.server import BackgroundServer, create_app

        srv = BackgroundServer(create_app(b["plan"], b["engines"], preload=True)).start()
        return srv.url, srv.stop
    import subprocess
    import time

    import httpx

    from janus_deploy.triton.server import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "janus_deploy.cli.main", "serve", str(b["plan"]), "--engines", str(b["engines"]),
           "--port", str(port), "--preload"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr is not None else ""
            raise SystemExit(f"bench_streams: the server exited: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1, trust_env=False).status_code == 200:
                return url, stop
        except httpx.HTTPError:
            time.sleep(0.2)
    stop()
    raise SystemExit("bench_streams: the server did not start within 120 s")


def warm_up(b: dict[str, Any], server_url: str) -> dict[str, float]:
    """Every (level, split) once, head here and tail on the server, before anything is measured:
    a first inference of an ORT session is several times slower than the next ones, and a cold
    server's timeouts would open the breaker (the controller's rule for a failing server). The
    second round calibrates: its RTT (both runs and the simulator start from it) and the edge
    client's request set-up before a body's first byte (:attr:`Exchange.setup_s`, median; the
    simulator holds the uplink for it)."""
    import numpy as np

    from janus_deploy.demo import observed_rtt_ms
    from janus_deploy.images import synthetic_frames
    from janus_deploy.runtime.edge import EdgeRuntime

    m = b["manifest"]
    frame = synthetic_frames(1, m.model["img_size"], seed=1)[0]
    setups: list[float] = []
    with EdgeRuntime(m, b["runner"], b["edge"], b["cloud"], server_url=server_url, sla_ms=10_000.0) as rt:
        infer = rt.transport.infer

        def timed(*a: Any, **k: Any) -> Any:
            ex = infer(*a, **k)
            if ex.ok:
                setups.append(ex.setup_s * 1e3)
            return ex

        rt.transport.infer = timed  # type: ignore[method-assign]  # this runtime's transport only, to read its set-up times
        for rnd in range(2):
            if rnd == 1:
                setups.clear()
            for level in range(len(m.levels)):
                for split in m.candidates:
                    rt.infer(frame, force=(level, split))
        return {"rtt_ms": observed_rtt_ms(rt.records), "uplink_setup_ms": float(np.median(setups)) if setups else 0.0}


def uplink_handoff_ms(records: list[Any]) -> float | None:
    """Median time the uplink stayed idle between one body's last byte and the next body's first
    byte while that next payload was already waiting (a pipelined run's queue), from the answered
    records (the upload ends ``cloud + (network - upload)`` before the answer); None when the
    uplink never queued. The same cost as the request set-up, measured under the run's own load."""
    import numpy as np

    iv = []
    for r in records:
        m = r.measured
        if not r.server or m.upload_ms is None or r.arrival_t is None:
            continue
        end = r.arrival_t + (m.total_ms - m.cloud_ms - (m.transfer_ms - m.upload_ms)) / 1e3
        iv.append((end - m.upload_ms / 1e3, end, r.arrival_t))
    iv.sort()
    gaps = [(s1 - e0) * 1e3 for (_, e0, _), (s1, _, ready) in zip(iv, iv[1:]) if ready < e0 - 1e-3 and s1 >= e0]
    return float(np.median(gaps)) if len(gaps) >= 20 else None


def server_extra_ms(b: dict[str, Any], records: list[Any]) -> float:
    """Median of what the server reported per answer beyond the profile's decode + tail for the
    same option (parsing, queueing, a busier machine): the simulator charges it."""
    import numpy as np

    from janus_deploy.schedule.scheduler import Scheduler

    sched = Scheduler(b["edge"], b["cloud"], None, "janus-deploy", "fp16", sla_ms=1e9)
    extra = [r.server["janus_server_ms"] - sched.server_ms(r.decision.profile_level, r.decision.split,
                                                          r.decision.codec)
             for r in records if r.server and "janus_server_ms" in r.server and r.decision is not None]
    return max(float(np.median(extra)), 0.0) if extra else 0.0


def loopback(b: dict[str, Any], server_url: str, link: Any, args: argparse.Namespace, serial: bool,
             log: Path, rtt_ms: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One run of the cameras through the runtime (serial or pipelined) on the loopback server,
    its RTT estimate starting at ``rtt_ms`` (the warm-up's; a health check on a busy machine can
    say 30 ms where exchanges then see 4)."""
    from janus_deploy.runtime.edge import EdgeRuntime
    from janus_deploy.runtime.session import check_server, open_source
    from janus_deploy.runtime.streams import StreamRuntime
    from janus_deploy.runtime.transport import TransportOptions
    from janus_deploy.schedule.controller import ControllerConfig
    from janus_deploy.schedule.pipeline import PipelineConfig

    per_stream = int(args.seconds * args.fps)
    with EdgeRuntime(b["manifest"], b["runner"], b["edge"], b["cloud"], server_url=server_url, sla_ms=args.sla,
                     trace=link, log=log, transport=TransportOptions(probe_rtt=False),
                     controller=ControllerConfig(rtt_cold_ms=rtt_ms)) as rt:
        check = check_server(rt, 10.0)
        if not check.reachable:
            raise SystemExit(f"bench_streams: {check.line}")
        sources = [open_source(b["manifest"], {"kind": "images", "where": str(b["images"]), "limit": per_stream},
                               name=f"cam{i}", fps=args.fps) for i in range(args.streams)]
        sr = StreamRuntime(rt, sources, PipelineConfig(drop=args.drop, serial=serial))
        records = sr.run()
        return sr.summary(), records


def simulated(b: dict[str, Any], link: Any, args: argparse.Namespace, serial: bool, rtt_ms: float,
              setup_ms: float, extra_ms: float) -> dict[str, Any]:
    from janus_deploy.sim.simulator import SimConfig, simulate

    cfg = SimConfig(sla_ms=args.sla, systems=["janus-deploy"], requests=int(args.seconds * args.fps), fps=args.fps,
                    rtt_ms=rtt_ms, streams=args.streams, drop=args.drop, serial=serial, timeout_factor=1.0,
                    probe_bytes=32768,  # the runtime's deadline and probe (TransportOptions' defaults)
                    uplink_setup_ms=setup_ms if args.calibrate else 0.0,
                    server_extra_ms=extra_ms if args.calibrate else 0.0)
    return simulate(link, b["edge"], b["cloud"], cfg)["janus-deploy"].metrics


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=8, help="cameras (8 x 15 fps: more than the serial loop keeps up with)")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of frames per camera")
    ap.add_argument("--sla", type=float, default=100.0, help="SLA (ms) of every camera")
    ap.add_argument("--drop", default="stale", choices=("stale", "none"))
    ap.add_argument("--trace", default="throughput/driving/lte/*.list", help="below the shipped traces")
    ap.add_argument("--trace-start", type=float, default=10.0, help="seconds into the trace (the drive's first "
                    "seconds are a near outage)")
    ap.add_argument("--sample-interval", type=float, default=1.0, help="seconds per trace sample")
    ap.add_argument("--edge-slowdown", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=10, help="profiling runs per segment")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-streams"))
    ap.add_argument("--server", default="process", choices=("process", "thread"),
                    help="the loopback server in its own process (default: a deployed server is another "
                         "machine) or in this one (it then competes with the edge runtime's threads for "
                         "the interpreter lock)")
    ap.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                    help="simulate without the measured request set-up and server time beyond the profile")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from janus_deploy.demo import observed_rtt_ms
    from janus_deploy.net.traces import load_trace, shipped_trace
    b = build(args.work, args.edge_slowdown, args.runs)
    link = load_trace(str(shipped_trace(args.trace)), interval_s=args.sample_interval)
    link = link.window(args.trace_start, args.seconds + 5.0)
    out: dict[str, Any] = {"workload": {"streams": args.streams, "fps": args.fps, "seconds": args.seconds,
                                        "sla_ms": args.sla, "drop": args.drop, "trace": link.name,
                                        "trace_mean_mbps": link.mean(), "edge_slowdown": args.edge_slowdown,
                                        "server": args.server}}
    url, stop = start_server(b, args.server)
    try:
        cal = warm_up(b, url)
        rtt0 = cal["rtt_ms"]
        out["workload"]["warm_rtt_ms"] = rtt0
        out["workload"]["uplink_setup_ms"] = cal["uplink_setup_ms"]
        for mode in ("serial", "pipelined"):
            print(f"loopback run: {mode}, {args.streams} x {args.fps:g} fps for {args.seconds:g} s", file=sys.stderr)
            summary, records = loopback(b, url, link, args, mode == "serial", args.work / f"{mode}.jsonl", rtt0)
            answered = [r for r in records if r.server]
            rtt = observed_rtt_ms(answered) if answered else 0.0
            extra = server_extra_ms(b, answered)
            handoff = uplink_handoff_ms(answered)
            setup = cal["uplink_setup_ms"] if handoff is None else handoff
            sim = simulated(b, link, args, mode == "serial", rtt, setup, extra)
            out[mode] = {"loopback": {k: summary[k] for k in KEYS}, "observed_rtt_ms": rtt,
                         "server_extra_ms": extra, "uplink_handoff_ms": handoff, "simulated_setup_ms": setup,
                         "simulated": {k: sim[k] for k in KEYS}}
    finally:
        stop()
    lp, ls = out["pipelined"]["loopback"], out["serial"]["loopback"]
    out["pipelined_vs_serial"] = {
        "goodput_ratio": lp["goodput_fps"] / ls["goodput_fps"] if ls["goodput_fps"] else None,
        "violation_ratio_delta": (lp["violation_ratio"] or 0.0) - (ls["violation_ratio"] or 0.0)}
    for mode in ("serial", "pipelined"):
        lo, si = out[mode]["loopback"], out[mode]["simulated"]
        out[mode]["sim_vs_loopback"] = {
            "goodput_rel": (si["goodput_fps"] - lo["goodput_fps"]) / lo["goodput_fps"] if lo["goodput_fps"] else None,
            "violation_points": 100 * ((si["violation_ratio"] or 0.0) - (lo["violation_ratio"] or 0.0)),
            "p50_rel": (si["latency_ms_p50"] - lo["latency_ms_p50"]) / lo["latency_ms_p50"]
            if lo["latency_ms_p50"] and si["latency_ms_p50"] is not None else None}
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    w = out["workload"]
    print(f"{w['streams']} cameras x {w['fps']:g} fps, {w['seconds']:g} s, SLA {w['sla_ms']:g} ms, --drop {w['drop']}, "
          f"{w['trace']} (mean {w['trace_mean_mbps']:.1f} Mbit/s), edge x{w['edge_slowdown']:g}, server: {w['server']}")
    hand = out["pipelined"]["uplink_handoff_ms"]
    print(f"calibration{'' if args.calibrate else ' (not given to the simulator: --no-calibrate)'}: request set-up "
          f"{w['uplink_setup_ms']:.2f} ms (warm-up), uplink hand-off {'-' if hand is None else f'{hand:.2f}'} ms "
          f"(pipelined run; the simulator's set-up there); server beyond its profile {out['serial']['server_extra_ms']:.2f} ms "
          f"(serial) / {out['pipelined']['server_extra_ms']:.2f} ms (pipelined); RTT "
          f"{out['serial']['observed_rtt_ms']:.2f} / {out['pipelined']['observed_rtt_ms']:.2f} ms")
    print(f"{'mode':<10} {'where':<10} {'goodput fps':>11} {'late %':>7} {'p50 ms':>7} {'dropped %':>9} {'answered':>8}")
    for mode in ("serial", "pipelined"):
        for where in ("loopback", "simulated"):
            m = out[mode][where]
            print(f"{mode:<10} {where:<10} {m['goodput_fps']:>11.2f} {100 * (m['violation_ratio'] or 0):>7.1f} "
                  f"{m['latency_ms_p50'] or 0:>7.1f} {100 * (m['drop_ratio'] or 0):>9.1f} {m['answered']:>8}")
    r = out["pipelined_vs_serial"]
    print(f"pipelined / serial goodput (loopback): {r['goodput_ratio']:.2f}x (target >= 1.8x); violation ratio "
          f"{'+' if r['violation_ratio_delta'] >= 0 else ''}{100 * r['violation_ratio_delta']:.1f} points (target <= 0)")
    for mode in ("serial", "pipelined"):
        d = out[mode]["sim_vs_loopback"]
        fmt = lambda v: "-" if v is None else f"{100 * v:+.1f} %"  # noqa: E731 - a one-line formatter
        print(f"simulator vs loopback, {mode}: goodput {fmt(d['goodput_rel'])} (target within 10 %), violations "
              f"{d['violation_points']:+.1f} points (within 2), p50 {fmt(d['p50_rel'])} (within 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
