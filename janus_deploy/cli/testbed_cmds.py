"""``janus-deploy testbed``: a kernel-shaped uplink in a network namespace, the user-space shaper and
the simulator over the same trace window (``docs/testbed.md``; the work is janus_deploy.testbed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from janus_deploy.cli.common import console, controller_config, err_console, print_json
from janus_deploy.cli.options import (
    REQUIRED,
    BreakerFailures,
    CloudLoad,
    ColdStart,
    EdgeSlowdown,
    Estimator,
    FleetModes,
    Instances,
    Margin,
    NoDeflate,
    PerEdge,
    ProbeInterval,
    RttEstimate,
    SampleInterval,
    Sla,
    Threads,
    TimeoutFactor,
    TraceFormat,
    Window,
)
from janus_deploy.cli.schedule_cmds import CliError
from janus_deploy.schedule.controller import ControllerConfig as _C

_RUNS = (("kernel", "kernel"), ("simulated", "simulated"), ("user_space", "user space"))


def testbed(
    plan: Path = typer.Argument(..., help="Plan directory."),
    engines: Path = typer.Option(..., "--engines", help="Engine directory (edge and server use it)."),
    profile: str = typer.Option(..., "--profile", help="Edge profile (file or preset name)."),
    cloud_profile: str = typer.Option(..., "--cloud-profile", help="Cloud profile (file or preset name)."),
    trace: list[str] = typer.Option(..., "--trace", help="Throughput trace replayed on the uplink (file, directory or glob)."),
    ping: list[str] | None = typer.Option(None, "--ping", help="Ping trace (RTT ms, 5G/LTE format) added on the reply path."),
    sla: Sla = REQUIRED,
    requests: int | None = typer.Option(None, "--requests", min=1, help="Requests per run (kernel, user space, simulated); required without --fleet."),
    sample_interval: SampleInterval = 1.0,
    trace_start: float = typer.Option(0.0, "--trace-start", help="Start the window this many seconds into the trace."),
    run: int | None = typer.Option(None, "--run", help="Use only 'Run <n>' of each 5G/LTE throughput file."),
    ping_run: int | None = typer.Option(None, "--ping-run", help="Use only 'Run <n>' of each ping file."),
    trace_format: TraceFormat = "auto",
    accuracy: Path | None = typer.Option(None, "--accuracy", help="Accuracy table of this plan."),
    images: Path | None = typer.Option(None, "--images", help="Folder of images sent in turn (default: 16 synthetic frames)."),
    fps: float | None = typer.Option(None, "--fps", help="Fixed frame rate (default: back to back)."),
    codec: str | None = typer.Option(None, "--codec", help="fp32 | fp16 | fp16-zstd | int8 (default: the profile's)."),
    estimator: Estimator = _C.estimator,
    window: Window = _C.window,
    cold_start: ColdStart = None,
    margin: Margin = _C.margin,
    rtt_estimate: RttEstimate = _C.rtt_estimate,
    no_deflate: NoDeflate = False,
    breaker_failures: BreakerFailures = _C.breaker_failures,
    probe_interval: ProbeInterval = _C.probe_interval_s or 0.0,
    timeout_factor: TimeoutFactor = 1.0,
    edge_timing: str = typer.Option("profile", "--edge-timing", help="profile: every edge segment takes its profiled time (isolates the network) | real: the engines' time x --edge-slowdown."),
    edge_slowdown: EdgeSlowdown = 1.0,
    threads: Threads = 1,
    server_threads: int = typer.Option(0, "--server-threads", help="Intra-op threads of the server's sessions (0 = default)."),
    server_engine: str = typer.Option("builtin", "--server-engine", help="The server in the namespace: builtin | triton (`serve --engine`)."),
    nice: int | None = typer.Option(None, "--nice", help="Run the testbed's processes at this niceness (e.g. -10 on a shared machine; negative needs root)."),
    rtt_mode: str = typer.Option("auto", "--rtt-mode", help="auto (netem if the kernel has it) | netem | user-space"),
    user_space: bool = typer.Option(True, "--user-space/--no-user-space", help="Also run the user-space shaper over the window."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Measure one exchange's cost beyond link and RTT first (the simulator charges it)."),
    log_dir: Path | None = typer.Option(None, "--log-dir", help="Write the runs' request logs (kernel.jsonl, user_space.jsonl) here."),
    as_json: bool = typer.Option(False, "--json", help='Print {"kernel", "simulated", "user_space", "differences", ...} as JSON.'),
    streams: int | None = typer.Option(None, "--streams", min=1, help="Run N cameras at --fps (--requests frames each) through the pipelined runtime, and the simulator's streams."),
    drop: str = typer.Option("stale", "--drop", help="--streams: stale | none (docs/runtime.md, 'Camera streams')."),
    serial: bool = typer.Option(False, "--serial", help="--streams: one frame at a time, the rest dropped."),
    fleet: int | None = typer.Option(None, "--fleet", min=1, help="N edges behind one server, each its own veth pair and link shaped by its own window of the trace (edge i: rotated by i x duration / N), for --trace-seconds; next to simulate --fleet."),
    fleet_modes: FleetModes = "aware,unaware",
    cloud_load: CloudLoad = _C.cloud_load,
    instances: Instances = 1,
    trace_seconds: float | None = typer.Option(None, "--trace-seconds", help="Use only this many seconds of the trace from --trace-start (--fleet: how long each controller runs)."),
    per_edge: PerEdge = False,
) -> None:
    """Kernel-shaped uplink in a network namespace (needs root): the edge runtime against the built-in
    server over a tbf-replayed trace, next to the simulator and the user-space shaper on the same window."""
    from janus_deploy.testbed import TraceWindow, check_privileges, testbed_config

    check_privileges()  # first: one line without root, before anything loads
    if fleet is None and requests is None:
        raise CliError("--requests N is required (requests per run), or --fleet N --trace-seconds S for a fleet")
    if fleet is not None and requests is not None:
        raise CliError("--fleet runs for --trace-seconds, not a number of requests: drop --requests")
    if fleet is not None and trace_seconds is None:
        raise CliError("--fleet needs --trace-seconds S: every controller's fleet runs for that window")
    ctrl = controller_config(estimator=estimator, window=window, margin=margin, rtt_estimate=rtt_estimate,
                             no_deflate=no_deflate, breaker_failures=breaker_failures,
                             probe_interval_s=probe_interval if probe_interval > 0 else None, cold_start_mbps=cold_start,
                             cloud_load=cloud_load)
    cfg = testbed_config(
        plan, engines, edge_profile=profile, cloud_profile=cloud_profile, sla_ms=sla,
        requests=requests if requests is not None else 1,  # a fleet is time-driven: the count is not used
        trace=TraceWindow(trace, fmt=trace_format, run=run, interval_s=sample_interval, start_s=trace_start,
                          seconds=trace_seconds),
        ping=TraceWindow(ping, run=ping_run, interval_s=sample_interval, start_s=trace_start,
                         seconds=trace_seconds) if ping else None,
        images=images, accuracy=accuracy, codec=codec, controller=ctrl, fps=fps, edge_timing=edge_timing,
        edge_slowdown=edge_slowdown, threads=threads, server_threads=server_threads, timeout_factor=timeout_factor,
        user_space=user_space, calibrate=calibrate, log_dir=log_dir, rtt_mode=rtt_mode, nice=nice,
        server_engine=server_engine, streams=streams, drop=drop, serial=serial)
    if fleet is not None:
        from janus_deploy.testbed.fleet import FleetSettings

        settings = FleetSettings(fleet, tuple(m.strip() for m in fleet_modes.split(",") if m.strip()), instances)
        settings.validate(cfg)
    try:
        if fleet is not None:
            out = _run_fleet(cfg, settings, quiet=as_json)
        else:
            out = _run_quiet(cfg) if as_json else _run_with_progress(cfg)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted:[/] the testbed's namespace, veth pair and qdiscs were removed")
        raise typer.Exit(130) from None
    if fleet is not None:
        results = out.pop("results")
        if as_json:
            print_json(out)
        else:
            render_fleet(out, results, per_edge=per_edge)
        return
    if as_json:
        print_json(out)
        return
    render(out)


def _run_fleet(cfg: Any, settings: Any, *, quiet: bool) -> dict[str, Any]:
    """run_testbed_fleet with a progress bar per controller (seconds of the window), unless quiet."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from janus_deploy.testbed.fleet import run_testbed_fleet

    if quiet:
        return run_testbed_fleet(cfg, settings)
    with Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bars:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(f"{stage} (s)", total=total)
            bars.update(tasks[stage], completed=done)

        return run_testbed_fleet(cfg, settings, say=lambda s: bars.console.print(f"[bold cyan]{s}"), progress=progress)


def render_fleet(out: dict[str, Any], results: dict[str, Any], *, per_edge: bool) -> None:
    """The kernel fleet's report and the simulator's, as ``simulate --fleet`` prints them, and
    their differences per controller."""
    from janus_deploy.sim.fleet import FLEET_LEGEND, format_fleet

    info = out["testbed"]
    typer.echo(f"testbed fleet: {info['fleet']} edges behind one server ({info['instances']} instance(s)) over "
               f"{info['trace']}, {info['seconds']:g} s per controller, SLA {info['sla_ms']:g} ms")
    typer.echo("kernel-shaped links:")
    typer.echo(format_fleet(results["kernel"], info["sla_ms"], per_edge=per_edge, legend=False))
    if "simulated" in results:
        typer.echo("simulator (same windows, controllers and calibrated exchange cost):")
        typer.echo(format_fleet(results["simulated"], info["sla_ms"], per_edge=per_edge, legend=False))
        for mode, d in out["differences"].items():
            typer.echo(f"simulator − kernel, {mode}: violations {d['violation_points']:+.1f} points, goodput "
                       f"{_f(d['goodput_rel'], '{:+.1%}')}, offloaded {d['offloaded_points']:+.1f} points")
    typer.echo(FLEET_LEGEND.format(sla=info["sla_ms"]))
    cal = info.get("calibration")
    typer.echo(f"RTT: {info['rtt']}; edge timing: {info['edge_timing']}; "
               + (f"one exchange costs {cal['exchange_ms']:.2f} ms beyond link and RTT (calibrated); " if cal else "")
               + f"{info['teardown']}")


def _run_quiet(cfg: Any) -> dict[str, Any]:
    from janus_deploy.testbed import run_testbed

    return run_testbed(cfg)


def _run_with_progress(cfg: Any) -> dict[str, Any]:
    """run_testbed with a progress bar per stage and its messages above them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from janus_deploy.testbed import run_testbed

    with Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bars:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage.replace("_", "-"), total=total)
            if done % 10 == 0 or done == total:
                bars.update(tasks[stage], completed=done)

        return run_testbed(cfg, say=lambda s: bars.console.print(f"[bold cyan]{s}"), progress=progress)


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def render(out: dict[str, Any]) -> None:
    """The three reports side by side, the differences from the kernel run and the targets."""
    from rich.table import Table

    info = out["testbed"]
    runs = [(k, name) for k, name in _RUNS if k in out]
    t = Table(title=f"testbed: {info['trace']} ({info['sample_interval_s']:g} s per sample), SLA {info['sla_ms']:g} ms, "
              f"{info['requests']} requests")
    t.add_column("")
    for _, name in runs:
        t.add_column(name, justify="right")
    rows = [("SLA violations", "violation_ratio", "{:.1%}"), ("throughput (req/s)", "throughput_rps", "{:.2f}"),
            ("latency p50 (ms)", "latency_ms_p50", "{:.1f}"), ("latency p95 (ms)", "latency_ms_p95", "{:.1f}"),
            ("latency max (ms)", "latency_ms_max", "{:.1f}"), ("accuracy", "accuracy", "{:.4f}"),
            ("median |prediction error|", "median_abs_pred_err_pct", "{:.1f} %"), ("fallbacks", "fallbacks", "{}"),
            ("elapsed (s)", "elapsed_s", "{:.1f}")]
    for label, key, fmt in rows:
        t.add_row(label, *(_f(out[k].get(key), fmt) for k, _ in runs))
    t.add_row("link: receiver / trace (median)",
              *(_f((out[k].get("link") or {}).get("receiver_over_trace_median"), "{:.3f}") for k, _ in runs))
    console.print(t)
    shares = Table(title="configuration shares (level@split)")
    shares.add_column("configuration")
    for _, name in runs:
        shares.add_column(name, justify="right")
    labels: dict[str, int] = {}
    for k, _ in runs:
        for lab, n in (out[k].get("choices") or {}).items():
            labels[lab] = labels.get(lab, 0) + n
    for lab in sorted(labels, key=lambda x: -labels[x])[:12]:
        cells = []
        for k, _ in runs:
            ch = out[k].get("choices") or {}
            cells.append(f"{ch.get(lab, 0) / max(sum(ch.values()), 1):.1%}")
        shares.add_row(lab, *cells)
    console.print(shares)
    for key, d in out["differences"].items():
        console.print(f"{key.replace('_vs_kernel', '').replace('_', ' ')} − kernel: violations "
                      f"{_f(None if d['violation_ratio'] is None else d['violation_ratio'] * 100, '{:+.1f}')} points, "
                      f"throughput {_f(d.get('throughput_rps_rel'), '{:+.1%}')}, p50 {_f(d.get('latency_ms_p50_rel'), '{:+.1%}')}, "
                      f"p95 {_f(d.get('latency_ms_p95_rel'), '{:+.1%}')}, configurations apart (TV) "
                      f"{d['choices_tv_distance']:.2f}, prediction error {_f(d['median_abs_pred_err_pct'], '{:+.1f}')} points")
    if "targets" in out:
        met = [k for k, v in out["targets"].items() if v["met"]]
        missed = [f"{k} {v['got']:.3g} > {v['limit']:g}" if v["got"] is not None else f"{k} unknown"
                  for k, v in out["targets"].items() if not v["met"]]
        colour = "green" if not missed else "yellow"
        console.print(f"[{colour}]simulator vs kernel: {len(met)} of {len(out['targets'])} targets met"
                      + (f"; missed: {', '.join(missed)}" if missed else "") + "[/]")
    cal = info.get("calibration")
    console.print(f"RTT: {info['rtt']}; edge timing: {info['edge_timing']}; "
                  + (f"nice {info['nice']}; " if info.get("nice") is not None else "")
                  + (f"one exchange costs {cal['exchange_ms']:.2f} ms beyond link and RTT, a probe "
                     f"{cal['probe_exchange_ms']:.2f} ms (calibrated, charged by the simulator); " if cal else "")
                  + f"kernel link: {json.dumps(info.get('kernel_link'))}; {info['teardown']}")


def register(app: typer.Typer) -> None:
    app.command()(testbed)
