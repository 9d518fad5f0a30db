"""``janus-deploy serve`` (cloud V2 server) and ``janus-deploy run`` (edge runtime)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

import typer

from janus_deploy import JanusError
from janus_deploy.cli.common import console, controller_config, err_console, print_json, render_report
from janus_deploy.runtime import limits as _L
from janus_deploy.schedule.controller import ControllerConfig as _C


def _require(module: str, extra: str = "serve") -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise JanusError(f"this command needs {module}: pip install 'janus-deploy[{extra}]'") from None


def serve(
    plan: Path = typer.Argument(..., help="Plan directory written by `janus-deploy export`."),
    engines: Path = typer.Option(..., "--engines", help="Engine directory (`janus-deploy build-engines`)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (default: loopback only)."),
    port: int = typer.Option(8000, help="TCP port."),
    max_loaded: int = typer.Option(128, "--max-loaded", help="Most (level, segment) engine sessions kept resident (LRU)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="JANUS_TOKEN",
                                        help="Require 'Authorization: Bearer TOKEN' (health endpoints stay open)."),
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", help="Larger request bodies (also after decompression) get 413."),
    concurrency: Optional[int] = typer.Option(None, help="Inferences running at once (default: CPU count)."),
    threads: int = typer.Option(0, help="Intra-op threads per engine session (0 = runtime default)."),
    body_timeout: float = typer.Option(60.0, "--body-timeout", help="Seconds a request body may take to arrive (408 after)."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="Read the bearer token from this file (the way: --token is visible in the process list)."),
    max_json_mb: float = typer.Option(_L.DEFAULT_MAX_JSON_MB, "--max-json-mb", help="Most JSON per request (a JSON-only body, or the JSON header before binary tensors); more gets 413. JSON is parsed holding Python's GIL."),
    max_inflight_mb: float = typer.Option(_L.DEFAULT_MAX_INFLIGHT_MB, "--max-inflight-mb", help="Request bodies held in memory at once; others wait (503 after --body-timeout)."),
    max_connections: int = typer.Option(_L.DEFAULT_MAX_CONNECTIONS, "--max-connections", help="Open connections; past it the connection idle longest is closed for each new one."),
    header_timeout: float = typer.Option(_L.DEFAULT_HEADER_TIMEOUT_S, "--header-timeout", help="Seconds a connection has to send a request's headers (closed after)."),
    keep_alive: int = typer.Option(_L.DEFAULT_KEEP_ALIVE_S, "--keep-alive", help="Seconds an idle connection stays open after a response."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
    access_log: bool = typer.Option(False, help="Log every HTTP request."),
    preload: bool = typer.Option(False, help="Check every file against its sha256 and load engines (up to --max-loaded) before serving, instead of on first use."),
    engine: str = typer.Option("builtin", "--engine", help="builtin (this process) | triton (the tritonserver bundled in nvidia-pytriton, docs/scale-out.md)."),
    grpc_port: Optional[int] = typer.Option(None, "--grpc-port", help="--engine triton: gRPC port (default --port + 1)."),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="--engine triton: Prometheus metrics port (default --port + 2)."),
    repository: Optional[Path] = typer.Option(None, "--repository", help="--engine triton: repository from `janus-deploy export-triton --platform python` (default: export one to a temporary directory)."),
) -> None:
    """Serve a plan's tail models over KServe V2 / Open Inference Protocol (REST, binary tensors)."""
    from janus_deploy.net.ports import check_port_free

    check_port_free(host, port)  # before anything is loaded: a busy port is one line, at once
    if engine not in ("builtin", "triton"):
        raise JanusError(f"unknown --engine {engine!r}; choose builtin or triton")
    if engine == "triton":
        check_port_free(host, grpc_port if grpc_port is not None else port + 1, "--grpc-port")
        check_port_free(host, metrics_port if metrics_port is not None else port + 2, "--metrics-port")
    if engine == "builtin":
        _require("fastapi")
        _require("uvicorn")

    token = read_token(token, token_file)
    try:
        public = not ipaddress.ip_address(host).is_loopback
    except ValueError:
        public = host not in ("localhost",)
    if public and not token:
        err_console.print(f"[yellow]warning:[/] serving on {host} without --token: anyone who can reach "
                          "this port can run inference")

    if engine == "triton":
        _require("httpx")
        from janus_deploy.triton.server import serve as serve_triton

        def triton_banner(srv, repo) -> None:
            err_console.print(f"[green]serving[/] the tail models of {plan} on Triton Inference Server "
                              f"(repository {repo}): {srv.url}/v2, gRPC {srv.grpc_url}, metrics {srv.metrics_url}"
                              + (" [bold](token required)[/]" if token else ""))

        serve_triton(plan, engines, host=host, port=port, grpc_port=grpc_port, metrics_port=metrics_port, token=token,
                     http_threads=concurrency, repository=repository, on_ready=triton_banner,
                     options=_triton_options(threads))
        return
    from janus_deploy.runtime.server import serve as serve_app

    def banner(app) -> None:
        st = app.state.janus
        err_console.print(f"[green]serving[/] {len(st.models)} tail models of {st.manifest.model['name']} "
                          f"(plan {st.manifest.hash[:12]}) on http://{host}:{port}/v2"
                          + (" [bold](token required)[/]" if token else ""))

    serve_app(plan, engines, host=host, port=port, max_loaded=max_loaded, token=token, max_body_mb=max_body_mb,
              concurrency=concurrency, threads=threads, body_timeout_s=body_timeout, log_level=log_level,
              access_log=access_log, preload=preload, on_ready=banner, max_json_mb=max_json_mb,
              limits=_L.ServerLimits(max_connections=max_connections, header_timeout_s=header_timeout,
                                     keep_alive_s=keep_alive, max_inflight_mb=max_inflight_mb))


def _triton_options(threads: int):
    from janus_deploy.triton.repository import ExportOptions

    return ExportOptions(platform="python", threads=threads or 1)


def read_token(token: str | None, token_file: Path | None) -> str | None:
    """The bearer token: ``--token-file`` (the way: not visible in the process list), else
    ``--token`` / ``JANUS_TOKEN``."""
    if token_file is not None:
        if token is not None:
            raise JanusError("give --token-file or --token (JANUS_TOKEN), not both")
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise JanusError(f"cannot read --token-file {token_file}: {exc.strerror}") from None
        if not token:
            raise JanusError(f"--token-file {token_file} is empty")
    return token


def run(
    plan: Path = typer.Argument(..., help="Plan directory."),
    engines: Path = typer.Option(..., "--engines", help="Engine directory of this (edge) device."),
    profile: str = typer.Option(..., "--profile", help="Edge profile (file or preset name)."),
    cloud_profile: str = typer.Option(..., "--cloud-profile", help="Cloud profile (file or preset name)."),
    accuracy: Optional[Path] = typer.Option(None, "--accuracy", help="Accuracy table of this plan (default: prefer the lowest α)."),
    server: str = typer.Option(..., "--server", help="URL of `janus-deploy serve`, e.g. http://10.0.0.2:8000."),
    sla: float = typer.Option(..., "--sla", help="Latency SLA in ms."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images."),
    video: Optional[Path] = typer.Option(None, "--video", help="Video file (needs imageio or OpenCV)."),
    synthetic: Optional[int] = typer.Option(None, "--synthetic", help="N synthetic frames."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many frames of --images/--video."),
    trace: Optional[list[str]] = typer.Option(None, "--trace", help="Bandwidth trace replayed on the upload (file, directory or glob)."),
    trace_format: str = typer.Option("auto", "--trace-format", help="auto | 5g-lte | pensieve | mahimahi"),
    sample_interval: float = typer.Option(1.0, "--sample-interval", help="Seconds per trace sample."),
    codec: Optional[str] = typer.Option(None, "--codec", help="fp32 | fp16 | fp16-zstd | int8 (default: the profile's)."),
    estimator: str = typer.Option(_C.estimator, "--estimator", help="harmonic | ewma | robustmpc"),
    window: int = typer.Option(_C.window, "--window", help="Estimator window (samples)."),
    cold_start: Optional[float] = typer.Option(None, "--cold-start-mbps", help="Bandwidth assumed before the first transfer (default: trace mean, else 100)."),
    rtt: Optional[float] = typer.Option(None, "--rtt", help="Fixed RTT (ms) for the scheduler (default: measured)."),
    margin: float = typer.Option(_C.margin, "--margin", help="Fraction of the SLA held back when deciding."),
    rtt_estimate: str = typer.Option(_C.rtt_estimate, "--rtt-estimate", help="RTT estimate over the last RTTs: max | median."),
    no_deflate: bool = typer.Option(False, "--no-deflate", help="Do not deflate the bandwidth estimate by its recent error."),
    breaker_failures: int = typer.Option(_C.breaker_failures, "--breaker-failures", help="Consecutive server failures that stop offloading until a probe succeeds (0 = never)."),
    timeout_factor: float = typer.Option(1.0, "--timeout-factor", help="Cancel the server exchange at SLA x this (then finish locally)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="JANUS_TOKEN", help="Bearer token of the server (prefer JANUS_TOKEN or --token-file: a command line is visible to other users)."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="Read the bearer token from this file."),
    probe_interval: float = typer.Option(_C.probe_interval_s, "--probe-interval", help="Probe the uplink after this many seconds without a transfer (0 = never)."),
    edge_slowdown: float = typer.Option(1.0, "--edge-slowdown", min=1.0, help="Emulate an edge this many times slower than this machine (as the demo does; profile with the same factor)."),
    server_wait: float = typer.Option(10.0, "--server-wait", min=0.0, help="Seconds to wait for the server to answer before the first request (it may still be loading)."),
    max_error_share: float = typer.Option(0.0, "--max-error-share", min=0.0, max=1.0, help="Exit 3 when more than this share of requests errored."),
    threads: int = typer.Option(0, help="Intra-op threads per local engine session (0 = default)."),
    preload: bool = typer.Option(False, "--preload", help="Check every engine file's sha256 and load every engine before the first request (else each is checked when first loaded)."),
    log: Optional[Path] = typer.Option(None, "--log", help="Write one JSON line per request here (input of `janus-deploy replay`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run frames through the edge runtime: decide (α, split), run the head here, the tail on the server."""
    _require("httpx")
    from janus_deploy.net.traces import load_trace
    from janus_deploy.plan.manifest import Manifest
    from janus_deploy.runtime.edge import EdgeRuntime, frames_from_images, frames_from_video, frames_synthetic
    from janus_deploy.runtime.transport import TransportOptions

    sources = [s for s in (images, video, synthetic) if s is not None]
    if len(sources) != 1:
        raise JanusError("give exactly one of --images DIR, --video FILE or --synthetic N")
    token = read_token(token, token_file)
    if log is not None:
        from janus_deploy import check_output_path

        check_output_path(log, "run log")
    manifest = Manifest.load(plan)
    img = manifest.model["img_size"]
    if images is not None:
        frames = frames_from_images(images, img, limit)
    elif video is not None:
        frames = frames_from_video(video, img, limit)
    else:
        frames = frames_synthetic(int(synthetic), img)
    bw = load_trace(trace, fmt=trace_format, interval_s=sample_interval) if trace else None
    extra = {"probe_interval_s": probe_interval if probe_interval > 0 else None}
    extra["cold_start_mbps"] = cold_start  # None: ControllerConfig.for_trace's rule
    if rtt is not None:
        extra.update(rtt_cold_ms=rtt, rtt_fixed=True)
    ctrl = controller_config(estimator=estimator, window=window, margin=margin, rtt_estimate=rtt_estimate,
                             no_deflate=no_deflate, breaker_failures=breaker_failures, **extra)
    runner = engines
    if edge_slowdown > 1 or preload:
        from janus_deploy.backends import load_runner
        from janus_deploy.backends.base import SlowedRunner

        runner = load_runner(manifest, engines, threads=threads)
        if preload:
            runner.check_files()
            runner.preload()
        if edge_slowdown > 1:
            runner = SlowedRunner(runner, edge_slowdown)
    rt = EdgeRuntime(manifest, runner, profile_path(profile), profile_path(cloud_profile), server_url=server,
                     sla_ms=sla, accuracy=accuracy, codec=codec, controller=ctrl,
                     transport=TransportOptions(token=token, timeout_factor=timeout_factor), trace=bw, log=log,
                     threads=threads)
    with rt:
        check = check_server(rt, server_wait)
        if not as_json:
            err_console.print(check)
        if as_json:
            rt.run(frames)
        else:
            from janus_deploy.cli.common import progress_bars

            total = int(synthetic) if synthetic is not None else None
            with progress_bars() as update:
                done = [0]

                def show(res) -> None:
                    d = res.record.get("decision") or {}
                    fb = res.record.get("fallback")
                    text = (f"{d.get('label', '?')} {res.record['measured']['total_ms']:.0f} ms"
                            + (f" [yellow]fallback: {fb['kind']}[/]" if fb else "")
                            + (" [red]error[/]" if res.error else ""))
                    done[0] += 1
                    update("requests", done[0], total, text)

                rt.run(frames, progress=show)
        summary = rt.summary()
        summary["config_error"] = rt.config_error
    if as_json:
        print_json(summary)
    else:
        render_report(summary)
        if log:
            console.print(f"per-request log: {log} (`janus-deploy replay {log}` re-runs its decisions)")
    honest_exit(summary, max_error_share)


def check_server(rt, wait_s: float = 0.0) -> str:
    """Ask the server what it serves before the first request, waiting up to ``wait_s`` for it to
    answer (JanusError when it serves another plan); returns one line for the user."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        status, info = rt.transport.server_metadata()
        if status is not None or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    if status is None:
        return (f"[yellow]warning:[/] the server {rt.transport.server_url} is not reachable ({info}); "
                "requests run on this device until it answers")
    if status in (401, 403):
        raise JanusError(f"the server {rt.transport.server_url} refused the token ({status}: {info}); "
                         "set JANUS_TOKEN or --token-file to the server's token")
    if status != 200:
        return f"[yellow]warning:[/] the server answered GET /v2 with {status}: {info}"
    served = (info.get("janus") or {}).get("plan_hash") if isinstance(info, dict) else None
    if served is None:
        return (f"server {rt.transport.server_url} ({info.get('name', '?')} {info.get('version', '')}) reachable; "
                "it does not report a plan hash, so the plan is checked per request")
    if served != rt.manifest.hash:
        raise JanusError(f"the server {rt.transport.server_url} serves plan {served[:12]}, not this plan "
                         f"({rt.manifest.hash[:12]}); start `janus-deploy serve` with the same plan directory")
    return f"server {rt.transport.server_url} serves this plan ({served[:12]})"


def honest_exit(summary: dict, max_error_share: float) -> None:
    """Exit non-zero when the run did not do its job (one line saying why)."""
    n = summary["requests"] or 1
    if summary.get("config_error"):
        err_console.print(f"[bold red]error:[/] {summary['config_error']}: every request ran on this device; "
                          "check the token (JANUS_TOKEN or --token-file)")
        raise typer.Exit(2)
    if summary["errors"] / n > max_error_share:
        err_console.print(f"[bold red]error:[/] {summary['errors']} of {summary['requests']} requests failed "
                          f"(more than --max-error-share {max_error_share:g}); see the log for the causes")
        raise typer.Exit(3)
    if summary["answered"] and summary["fallbacks"] == summary["answered"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in summary["fallback_kinds"].items())
        err_console.print(f"[bold red]error:[/] every request fell back to the device ({kinds}): the server never "
                          "answered usably")
        raise typer.Exit(3)


def profile_path(spec: str):
    """A profile from a file path or a preset name."""
    from janus_deploy.profile.table import resolve_profile

    return resolve_profile(spec)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(run)
