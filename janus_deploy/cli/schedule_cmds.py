"""``janus-deploy schedule`` (one decision) and ``janus-deploy simulate`` (trace-driven runs)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import typer

from janus_deploy import JanusError
from janus_deploy.cli.common import controller_config
from janus_deploy.cli.options import (
    CloudLoad,
    Codecs,
    Estimator,
    FleetModes,
    Instances,
    Margin,
    NoDeflate,
    PerEdge,
    Rtt,
    RttEstimate,
    SampleInterval,
    Sla,
    TraceFormat,
    Window,
    codec_list,
)
from janus_deploy.net.traces import FORMATS, load_ping, load_trace
from janus_deploy.profile.table import Profile, resolve_profile
from janus_deploy.schedule.accuracy_view import load_accuracy
from janus_deploy.schedule.controller import ControllerConfig as _C
from janus_deploy.schedule.estimators import ESTIMATORS
from janus_deploy.schedule.scheduler import MODES, Scheduler
from janus_deploy.sim.simulator import ALL_SYSTEMS, SYSTEMS, SimConfig, simulate


class CliError(JanusError):
    """A command-line value is invalid."""


_PROFILE_HELP = "Edge profile JSON, or a preset name (e.g. vit_large_patch16_384-jetson-orin-nano)."
_CLOUD_HELP = "Cloud profile JSON, or a preset name (e.g. vit_large_patch16_384-v100)."


def _profiles(edge: str, cloud: str) -> tuple[Profile, Profile]:
    return resolve_profile(edge), resolve_profile(cloud)


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise CliError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


def _console():
    from rich.console import Console

    con = Console()
    # pipes and logs: do not squeeze tables, unless COLUMNS says how wide
    return con if con.is_terminal or os.environ.get("COLUMNS") else Console(width=140)


def _duration(ms: float) -> str:
    """``2.47 ms``, ``81.9 s``, ``55 min 30 s``."""
    from janus_deploy.cli.common import format_seconds

    if ms < 1e3:
        return f"{ms:.3g} ms"
    return f"{ms / 1e3:.3g} s" if ms < 60e3 else format_seconds(ms / 1e3)


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def schedule_cmd(
    profile: str = typer.Option(..., "--profile", help=_PROFILE_HELP),
    cloud_profile: str = typer.Option(..., "--cloud-profile", help=_CLOUD_HELP),
    accuracy: str | None = typer.Option(None, "--accuracy", help="Accuracy table JSON."),
    bandwidth: float = typer.Option(..., "--bandwidth", help="Estimated uplink bandwidth, Mbit/s."),
    rtt: Rtt = 0.0,
    sla: Sla = ...,
    mode: str = typer.Option("janus-deploy", "--mode", help="paper | janus-deploy"),
    codec: str | None = typer.Option(None, "--codec", help="Payload codec (default: the profile's)."),
    codecs: Codecs = None,
    margin: Margin = 0.0,
    frame_bytes: int | None = typer.Option(None, "--frame-bytes",
                                              help="Override the bytes sent at s=0 (cloud only)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Choose the pruning level α and split point for one request."""
    _choice(mode, MODES, "mode")
    if bandwidth < 0:
        raise CliError(f"--bandwidth must be >= 0 Mbit/s, got {bandwidth}")
    if rtt < 0:
        raise CliError(f"--rtt must be >= 0 ms, got {rtt}")
    edge, cloud = _profiles(profile, cloud_profile)
    acc = load_accuracy(accuracy) if accuracy else None
    sched = Scheduler(edge, cloud, acc, mode=mode, codec=codec, sla_ms=sla, frame_bytes=frame_bytes,
                      codecs=codec_list(codecs))
    d = sched.decide(bandwidth, rtt_ms=rtt, margin=margin)
    out = {"mode": mode, "sla_ms": sla, "bandwidth_mbps": bandwidth, "rtt_ms": rtt, "codec": None, **d.to_dict()}
    out["codec"] = d.codec if mode == "janus-deploy" else None  # what is sent (None: device only; paper: fp32 in theory)
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    from rich.table import Table

    from janus_deploy.levels import LevelKey

    t = Table(title=f"{mode} decision at {bandwidth:g} Mbit/s, SLA {sla:g} ms")
    t.add_column("field")
    t.add_column("value", justify="right")
    where = (" (cloud only: the frame is sent)" if d.split == 0 else
             " (device only)" if d.split == sched.n + 1 else f" (the edge runs blocks 1..{d.split})")
    t.add_row("configuration", d.label)
    t.add_row("level", f"{LevelKey.of(d.policy, d.alpha).label} ({d.policy})")
    t.add_row("split", f"{d.split}{where}")
    t.add_row("bytes sent", f"{d.bytes:,}")
    for k, v in d.breakdown.items():
        t.add_row(k, f"{v:.2f}")
    t.add_row("predicted_ms", f"{d.predicted_ms:.2f}")
    t.add_row("meets_sla", "[green]yes[/]" if d.meets_sla else "[red]no[/]")
    if d.accuracy is not None:
        t.add_row(sched.accuracy_metric, f"{d.accuracy:.4f}")
    con = _console()
    con.print(t)
    if d.meets_sla:
        con.print(f"[green]verdict: {d.label} meets the {sla:g} ms SLA (predicted {d.predicted_ms:.1f} ms)[/]",
                  soft_wrap=True)
    else:
        con.print(f"[red]verdict: no configuration meets the {sla:g} ms SLA at {bandwidth:g} Mbit/s; {d.label} is "
                  f"the fastest (predicted {d.predicted_ms:.1f} ms)[/]", soft_wrap=True)


def simulate_cmd(
    trace: list[str] = typer.Option(..., "--trace", help="Throughput trace: file, directory or "
                                    "glob (repeatable; several are pooled)."),
    ping: list[str] | None = typer.Option(None, "--ping", help="Ping trace(s) (RTT ms) in the "
                                             "5G/LTE format; else --rtt is used."),
    rtt: Rtt = 0.0,
    profile: str = typer.Option(..., "--profile", help=_PROFILE_HELP),
    cloud_profile: str = typer.Option(..., "--cloud-profile", help=_CLOUD_HELP),
    accuracy: str | None = typer.Option(None, "--accuracy", help="Accuracy table JSON."),
    sla: Sla = ...,
    systems: str = typer.Option(",".join(SYSTEMS), "--systems", help="Comma-separated systems; besides the default ones the "
                                "static baselines cloud-jpeg, device-fast and best-static (docs/scheduler.md)."),
    requests: int | None = typer.Option(None, "--requests",
                                           help="Number of requests (default: one pass of the trace)."),
    fps: float | None = typer.Option(None, "--fps", help="Fixed frame rate (default: back to back)."),
    sample_interval: SampleInterval = 1.0,
    paper_mode: bool = typer.Option(False, "--paper-mode", help="One trace sample = one request."),
    estimator: Estimator = _C.estimator,
    window: Window = _C.window,
    margin: Margin = _C.margin,
    rtt_estimate: RttEstimate = _C.rtt_estimate,
    no_deflate: NoDeflate = False,
    codec: str | None = typer.Option(None, "--codec", help="janus-deploy payload codec."),
    codecs: Codecs = None,
    jpeg_codec: str = typer.Option("jpeg85", "--jpeg-codec", help="The cloud-jpeg baseline's frame codec."),
    frame_bytes: int | None = typer.Option(None, "--frame-bytes",
                                              help="Override the bytes sent at s=0 (cloud only)."),
    trace_format: TraceFormat = "auto",
    run: int | None = typer.Option(None, "--run", help="Use only 'Run <n>' of each 5G/LTE file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    plot: str | None = typer.Option(None, "--plot", help="Write Fig. 7/8-style PNGs (OUT.png, "
                                       "OUT-timeseries.png) and janus-deploy's decision map (OUT-decisions.png)."),
    trace_start: float = typer.Option(0.0, "--trace-start", help="Start the trace this many seconds in."),
    trace_seconds: float | None = typer.Option(None, "--trace-seconds",
                                                  help="Use only this many seconds of the trace (a shorter pass)."),
    jobs: int = typer.Option(1, "--jobs", help="Simulate the systems in this many processes at once "
                             "(0: one per core)."),
    engine: str = typer.Option("fast", "--engine", help="fast: the per-request loop in libjanus (C; the same "
                               "decisions as python, bit for bit; the python loop runs where it does not model "
                               "a setting, and says why); python: the Python loop."),
    streams: int | None = typer.Option(None, "--streams", help="Camera streams, each at --fps, through the "
                                          "pipelined edge (docs/scheduler.md, 'Camera streams'); the table then "
                                          "shows goodput and drops."),
    drop: str = typer.Option("stale", "--drop", help="--streams: stale (keep each stream's newest frame, drop "
                             "frames that can no longer meet the SLA) | none (answer every frame)."),
    serial: bool = typer.Option(False, "--serial", help="--streams: one frame at a time (the serial runtime); "
                                "frames arriving meanwhile are dropped and counted."),
    stream_sla: str | None = typer.Option(None, "--stream-sla", help="--streams: comma-separated SLA (ms) per "
                                             "stream (default: --sla for every stream)."),
    timeout_factor: float | None = typer.Option(None, "--timeout-factor", help="Cancel an exchange at SLA x "
                                                   "this and finish on the edge, as the runtime does (default: "
                                                   "no deadline; --fleet: 1)."),
    cloud_load: CloudLoad = _C.cloud_load,
    fleet: str | None = typer.Option(None, "--fleet",
                                     help="Simulate N edges (each its own window of the trace) against one server with "
                                          "a queue, load-aware vs load-unaware janus-deploy; N1,N2,...: a sweep that "
                                          "stops at the first size where load-unaware exceeds 10 %% violations "
                                          "(docs/scale-out.md)."),
    instances: Instances = 1,
    max_batch: int = typer.Option(1, "--max-batch", min=1, max=10_000,
                                  help="--fleet: the largest batch the server forms per tail model (1: the built-in server)."),
    batch_slope: float = typer.Option(1.0, "--batch-slope", min=0.0, max=100.0,
                                      help="--fleet: a batch of b costs 1 + slope·(b − 1) requests (without --batch-curve)."),
    batch_curve: str | None = typer.Option(None, "--batch-curve",
                                           help="--fleet: measured time of batch 1,2,... over batch 1, e.g. 1,1.5,1.9,2.4."),
    queue_delay: float = typer.Option(0.0, "--queue-delay-ms", min=0.0, max=60_000.0,
                                      help="--fleet: how long a free instance waits for a batch to fill (Triton's max_queue_delay)."),
    fleet_modes: FleetModes = "aware,unaware",
    per_edge: PerEdge = False,
) -> None:
    """Trace-driven simulation of Janus and the baselines (``--fleet N``: N edges against one server,
    with the runtime's deadline rule, --timeout-factor; one edge keeps the paper's model, no deadline)."""
    from janus_deploy.cli.common import err_console, progress_bars
    from janus_deploy.sim.simulator import SimulationError, engine_for, estimate_requests

    names = [s.strip() for s in systems.split(",") if s.strip()]
    for s in names:
        _choice(s, ALL_SYSTEMS, "system")
    _choice(estimator, ESTIMATORS, "estimator")
    _choice(trace_format, FORMATS, "trace format")
    if sample_interval <= 0:
        raise CliError(f"--sample-interval must be > 0 s, got {sample_interval}")
    if jobs < 0:
        raise CliError(f"--jobs must be >= 0 (0: one per core), got {jobs}")
    jobs = jobs or (os.cpu_count() or 1)
    if plot:
        from janus_deploy import check_output_path

        check_output_path(plot, "--plot file")
    edge, cloud = _profiles(profile, cloud_profile)
    acc = load_accuracy(accuracy) if accuracy else None
    bw = load_trace(trace, fmt=trace_format, run=run, interval_s=sample_interval)
    rtt_trace = load_ping(ping, interval_s=sample_interval) if ping else None
    if trace_start or trace_seconds is not None:
        bw = bw.window(trace_start, trace_seconds)
        rtt_trace = rtt_trace.window(trace_start % rtt_trace.duration_s, trace_seconds) if rtt_trace else None
    ctrl = controller_config(estimator=estimator, window=window, margin=margin, rtt_estimate=rtt_estimate,
                             no_deflate=no_deflate, cloud_load=cloud_load)
    if fleet is not None:
        from janus_deploy.cli.fleet_cmds import run_fleet

        if streams is not None:
            raise CliError("--fleet and --streams cannot be combined yet: a fleet's edges are single-stream; "
                           "drop one of them")

        sim = SimConfig(sla_ms=sla, fps=fps, rtt_ms=rtt, codec=codec, frame_bytes=frame_bytes, controller=ctrl,
                        timeout_factor=1.0 if timeout_factor is None else timeout_factor, codecs=codec_list(codecs))
        run_fleet(bw, edge, cloud, sim, accuracy=acc, ping=rtt_trace, edges=fleet, instances=instances,
                  max_batch=max_batch, batch_slope=batch_slope, batch_curve=batch_curve, queue_delay_ms=queue_delay,
                  modes=fleet_modes,
                  per_edge=per_edge, as_json=as_json)
        return
    _choice(drop, ("stale", "none"), "--drop policy")
    slas = _stream_slas(stream_sla) if stream_sla else None
    cfg = SimConfig(sla_ms=sla, systems=names, requests=requests, fps=fps, paper_mode=paper_mode,
                    rtt_ms=rtt, codec=codec, frame_bytes=frame_bytes, controller=ctrl, streams=streams, drop=drop,
                    serial=serial, stream_sla_ms=slas, timeout_factor=timeout_factor, codecs=codec_list(codecs),
                    jpeg_codec=jpeg_codec)
    if streams is not None:
        cfg.validate()  # --streams' own rules (it needs --fps, ...), before the request estimate
    est = estimate_requests(bw, edge, cloud, cfg, accuracy=acc, ping=rtt_trace)
    try:
        ran, why = engine_for(cfg, engine)
    except SimulationError as exc:
        raise CliError(str(exc)) from None
    _announce(bw, cfg, names, est, ran, why, sample_interval)
    with progress_bars() as update:
        def show(system: str, done: int, total: int | None) -> None:
            e = est[system]
            if total is None and e.exact:
                total = e.low
            update(system, done, total, "" if total is not None else f"of about {e.low:,} to {e.high:,}")

        results = simulate(bw, edge, cloud, cfg, accuracy=acc, ping=rtt_trace, progress=show, jobs=jobs, engine=ran)
    fell_back = [n for n, r in results.items() if r.engine != ran]
    if fell_back:  # libjanus refused a run (e.g. an observation the controller refuses): the Python loop ran it
        err_console.print(f"  engine: python for {', '.join(fell_back)} (libjanus refused the run)", markup=False,
                          highlight=False)
    plots: list[str] = []
    if plot:
        from janus_deploy.sim.plots import plot_simulation

        plots = [str(p) for p in plot_simulation(results, plot, bw.name, edge, cloud, cfg, accuracy=acc,
                                                 rtt_ms=rtt_trace.median() if rtt_trace else rtt)]
    if as_json:
        out = {
            "trace": bw.name, "samples": len(bw), "sample_interval_s": sample_interval,
            "paper_mode": paper_mode, "sla_ms": sla, "controller": ctrl.to_dict(),
            "ping": rtt_trace.name if rtt_trace else None, "rtt_ms": None if rtt_trace else rtt,
            "systems": {n: r.metrics for n, r in results.items()},
        }
        if plots:
            out["plots"] = plots
        typer.echo(json.dumps(out, indent=1))
        return
    con = _console()
    if streams is not None:
        from janus_deploy.cli.common import streams_table

        streams_table(con, [(n, r.metrics) for n, r in results.items()], f"{bw.name}: {streams} stream{'s' if streams > 1 else ''} x {fps:g} fps, "
                                     f"{'serial' if serial else 'pipelined, --drop ' + drop}, SLA {sla:g} ms")
    else:
        _simulate_table(con, results, bw.name, len(bw), cfg, sample_interval)
    for p in plots:
        con.print(f"wrote {p}")


def _announce(bw, cfg: SimConfig, names: list[str], est, ran: str, why: str | None, sample_interval: float) -> None:
    """What ``simulate`` is about to do, on stderr: per system how many requests, and the engine."""
    from janus_deploy.cli.common import err_console, format_seconds
    from janus_deploy.sim.simulator import FAST_LONG_RUN_REQUESTS, long_run_warning

    def count(e) -> str:
        if cfg.streams is not None:
            per = cfg.requests if cfg.requests is not None else math.ceil(bw.duration_s * cfg.fps)  # type: ignore[operator]  # --streams needs --fps (validated)
            return f"{cfg.streams} streams x {per:,} frames ({cfg.fps:g} fps)"
        if e.exact:
            return f"{e.low:,} requests"
        per = (f", {_duration(e.fastest_ms)} to {_duration(e.slowest_ms)} per request"
               if e.fastest_ms is not None and e.slowest_ms is not None else "")
        return f"about {e.low:,} to {e.high:,} requests (one pass of {format_seconds(bw.duration_s)}{per})"

    err_console.print(f"simulating {len(names)} system{'s' if len(names) > 1 else ''} over {bw.name} "
                      f"({len(bw):,} samples x {sample_interval:g} s = {format_seconds(bw.duration_s)}), "
                      f"SLA {cfg.sla_ms:g} ms:", markup=False, highlight=False)
    for n in names:
        err_console.print(f"  {n:<13} {count(est[n])}", markup=False, highlight=False)
    err_console.print(f"  engine: {ran}" + (f" ({why})" if why else ""), markup=False, highlight=False)
    warning = long_run_warning(est, None if ran == "python" else FAST_LONG_RUN_REQUESTS)
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}")


def _simulate_table(con, results, trace_name: str, samples: int, cfg: SimConfig, sample_interval: float) -> None:
    """``simulate``'s table: one row per system, the legend, and the frames a fixed --fps skipped."""
    from janus_deploy.cli.common import print_chunked

    rows = []
    for n, r in results.items():
        m = r.metrics
        top = next(iter(m["choices"].items()), ("-", 0))
        rows.append((n, [f"{m['requests']:,}", f"{100 * m['violation_ratio']:.1f} %", _fmt(m["throughput_rps"], 2),
                         _fmt(m["accuracy"], 4), _fmt(m["mean_alpha"], 3), _fmt(m["latency_ms_p50"], 0),
                         _fmt(m["latency_ms_p95"], 0), _fmt(m["latency_ms_p99"], 0), _fmt(m["deviation_rate"]),
                         f"{top[0]} ({100 * top[1] / max(m['requests'], 1):.0f} %)"]))
    print_chunked(con, f"{trace_name} ({samples} samples x {sample_interval:g} s{', paper mode' if cfg.paper_mode else ''}), "
                       f"SLA {cfg.sla_ms:g} ms", "system",
                  ["requests", "over\nSLA", "req/s", "accuracy", "mean α", "p50\nms", "p95\nms", "p99\nms",
                   "over-\nshoot", "most chosen\nlevel@split"], rows)
    con.print(f"[dim]{SIMULATE_LEGEND}[/]")
    if cfg.fps is not None:  # the one-request loop skips what arrives while it is busy: say how much
        for n, r in results.items():
            m = r.metrics
            con.print(f"{n}: {m['dropped']:,} of {m['frames']:,} frames at {cfg.fps:g} fps dropped (they arrived while a "
                      f"request ran; --streams 1 --fps {cfg.fps:g} queues them); goodput {_fmt(m['goodput_fps'], 2)} "
                      "frames/s within the SLA", soft_wrap=True)


def _stream_slas(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CliError(f"--stream-sla must be comma-separated numbers of ms, got {text!r}") from None


SIMULATE_LEGEND = (
    "systems: device-only = ToMe's constant r, whole model on the edge; cloud-only = the frame sent, "
    "the model in the cloud; mixed = per request, whichever of those two is predicted faster; janus-paper = "
    "Algorithm 1 (no RTT, fp32 tokens); janus-deploy = with RTT, the codec's payload and safety margins; cloud-jpeg = "
    "JPEG frames (--jpeg-codec) to the unpruned model in the cloud; device-fast = device-only at the fastest level within "
    "0.01 of the best accuracy; best-static = the one option with the fewest violations on this trace in hindsight. "
    "over SLA: share of requests slower than the SLA; req/s: requests completed per simulated second; "
    "accuracy: mean table accuracy of the chosen levels (- without --accuracy); mean α: of the exponential "
    "levels chosen; p50/p95/p99: latency percentiles; overshoot: mean of max(0, latency - SLA) / SLA (the "
    "paper's deviation rate); most chosen: the most frequent configuration, level@split (level: α, or rN "
    "for ToMe's r; split s: the edge runs blocks 1..s, s = N+1 is device-only, s = 0 sends the frame), and "
    "its share of requests.")


def replay_cmd(
    run_log: str = typer.Argument(..., help="JSON-lines log of `janus-deploy run --log` or the demo's requests.jsonl."),
    partial: bool = typer.Option(False, "--partial", help="Replay a log without its trailer (a killed run) as far as it "
                                 "goes; the verdict then says the log was not checked whole."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Feed a run's recorded observations to the controller (the simulator's path) and check that
    it makes the same decisions; the mismatches (if any) say where and why the edge chose.
    The log is checked whole first (every record, ids, trailer, checksum): a bad or tampered log
    exits 2 with one line; a decision not reproduced exits 1."""
    from janus_deploy.sim.simulator import replay_log

    out = replay_log(run_log, partial=partial)
    share = out["decisions_reproduced"]
    if as_json:
        typer.echo(json.dumps(out, indent=1, default=str))
        if share is not None and share < 1.0:
            raise typer.Exit(1)
        return
    con = _console()
    con.print(f"{out['requests']} controller decisions in {run_log} "
              f"({out['log_requests'] - out['requests']} forced or failed requests not counted)")
    if not out["complete"]:
        con.print(f"[yellow]partial log: no trailer, so {out['log_requests']} records were checked but not that none "
                  "is missing at the end[/]")
    if share is None:
        con.print("[yellow]no controller decision to replay[/]")
        return
    colour = "green" if share == 1.0 else "red"
    con.print(f"[{colour}]verdict: {share:.1%} of the decisions reproduced by the simulator's controller[/]")
    for m in out["mismatches"]:
        con.print(f"  t={m['t']:.3f} s: recorded {m['recorded']['label']}, replayed {m['replayed']}")
    if share < 1.0:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_cmd)
    app.command("schedule")(schedule_cmd)
    app.command("simulate")(simulate_cmd)
