"""``janus-deploy serve`` (cloud V2 server) and ``janus-deploy run`` (edge runtime)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from janus_deploy import JanusError
from janus_deploy.cli.common import console, controller_config, err_console, print_json, render_report
from janus_deploy.cli.options import (
    BreakerFailures,
    CloudLoad,
    Codecs,
    ColdStart,
    EdgeSlowdown,
    Estimator,
    Margin,
    NoDeflate,
    ProbeInterval,
    Rtt,
    RttEstimate,
    SampleInterval,
    Sla,
    Threads,
    TimeoutFactor,
    TokenFile,
    TraceFormat,
    Window,
    codec_list,
    megabytes,
    seconds,
)
from janus_deploy.runtime import limits as _L
from janus_deploy.schedule.controller import ControllerConfig as _C


def _require(module: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:  # a base dependency (pyproject.toml): only an install with --no-deps lacks it
        raise JanusError(f"this command needs {module}: pip install 'janus-deploy' (it is a dependency)") from None


def serve(
    plan: Path = typer.Argument(..., help="Plan directory written by `janus-deploy export`."),
    engines: Path = typer.Option(..., "--engines", help="Engine directory (`janus-deploy build-engines`)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (default: loopback only)."),
    port: int = typer.Option(8000, help="TCP port."),
    max_loaded: int = typer.Option(128, "--max-loaded", help="Most (level, segment) engine sessions kept resident (LRU)."),
    token: str | None = typer.Option(None, "--token", envvar="JANUS_TOKEN",
                                        help="Require 'Authorization: Bearer TOKEN' (health endpoints stay open)."),
    max_body_mb: megabytes("--max-body-mb", "Larger request bodies (also after decompression) get 413.") = 64.0,
    concurrency: int | None = typer.Option(None, help="Inferences running at once (default: CPU count)."),
    threads: Threads = 0,
    body_timeout: seconds("--body-timeout", "Seconds a request body may take to arrive (408 after).") = 60.0,
    token_file: TokenFile = None,
    max_json_mb: megabytes("--max-json-mb", "Most JSON per request (a JSON-only body, or the JSON header before binary tensors); more gets 413. JSON is parsed holding Python's GIL.") = _L.DEFAULT_MAX_JSON_MB,
    max_inflight_mb: megabytes("--max-inflight-mb", "Request bodies held in memory at once; others wait (503 after --body-timeout).") = _L.DEFAULT_MAX_INFLIGHT_MB,
    max_connections: int = typer.Option(_L.DEFAULT_MAX_CONNECTIONS, "--max-connections", help="Open connections; past it the connection idle longest is closed for each new one."),
    header_timeout: seconds("--header-timeout", "Seconds a connection has to send a request's headers (closed after).") = _L.DEFAULT_HEADER_TIMEOUT_S,
    keep_alive: int = typer.Option(_L.DEFAULT_KEEP_ALIVE_S, "--keep-alive", help="Seconds an idle connection stays open after a response."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
    access_log: bool = typer.Option(False, help="Log every HTTP request."),
    preload: bool = typer.Option(False, help="Check every file against its sha256 and load engines (up to --max-loaded) before serving, instead of on first use."),
    engine: str = typer.Option("builtin", "--engine", help="builtin (this process) | triton (the tritonserver bundled in nvidia-pytriton, docs/scale-out.md)."),
    grpc_port: int | None = typer.Option(None, "--grpc-port", help="--engine triton: gRPC port (default --port + 1)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="--engine triton: Prometheus metrics port (default --port + 2)."),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="--engine triton: address the metrics port binds (per-model request counts; loopback by default, 0.0.0.0 for a scraper elsewhere)."),
    repository: Path | None = typer.Option(None, "--repository", help="--engine triton: repository from `janus-deploy export-triton --platform python` (default: export one to a temporary directory)."),
    triton_front: bool = typer.Option(True, "--triton-front/--no-triton-front", help="--engine triton: clients reach tritonserver through a front with this server's body limits and token check (tritonserver unreachable past it: --triton-isolation); --no-triton-front exposes tritonserver itself (the token on its command line, compressed bodies inflated without limit)."),
    triton_isolation: str = typer.Option("auto", "--triton-isolation", help="--engine triton with the front: auto (tritonserver in a network namespace of its own, unreachable past the front; where none can be made, a warning and tritonserver on loopback with its key on its command line) | require (refuse to start without the namespace) | off (always the loopback layout)."),
) -> None:
    """Serve a plan's tail models over KServe V2 / Open Inference Protocol (REST, binary tensors)."""
    from janus_deploy.net.ports import check_port_free

    check_port_free(host, port)  # before anything is loaded: a busy port is one line, at once
    if engine not in ("builtin", "triton"):
        raise JanusError(f"unknown --engine {engine!r}; choose builtin or triton")
    if engine == "triton":
        from janus_deploy.triton.server import ISOLATION

        if triton_isolation not in ISOLATION:
            raise JanusError(f"unknown --triton-isolation {triton_isolation!r}; choose {', '.join(ISOLATION)}")
        check_port_free(host, grpc_port if grpc_port is not None else port + 1, "--grpc-port")
        check_port_free(metrics_host, metrics_port if metrics_port is not None else port + 2, "--metrics-port")
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
                              f"(repository {repo}): {srv.url}/v2, gRPC {srv.grpc_url or 'off (--token: use HTTP)'}, "
                              f"metrics {srv.metrics_url}"
                              + (" [bold](token required)[/]" if token else ""))

        from janus_deploy.triton.front import FrontOptions

        front = FrontOptions(max_body_mb=max_body_mb, max_json_mb=max_json_mb, body_timeout_s=body_timeout,
                             limits=_L.ServerLimits(max_connections=max_connections, header_timeout_s=header_timeout,
                                                    keep_alive_s=keep_alive, max_inflight_mb=max_inflight_mb))
        if not triton_front:
            err_console.print("[yellow]warning:[/] --no-triton-front: tritonserver inflates compressed bodies without "
                              "limit" + (" and shows the token in its command line" if token else ""))
        serve_triton(plan, engines, host=host, port=port, grpc_port=grpc_port, metrics_port=metrics_port,
                     metrics_host=metrics_host, token=token,
                     http_threads=concurrency, repository=repository, on_ready=triton_banner,
                     options=_triton_options(threads), front=front if triton_front else None,
                     isolation=triton_isolation)
        return
    from janus_deploy.runtime.server import serve as serve_app

    def banner(app) -> None:
        st = app.state.janus
        err_console.print(f"[green]serving[/] {len(st.models)} tail models of {st.manifest.model_info.name} "
                          f"(plan {st.manifest.hash[:12]}) on http://{host}:{port}/v2"
                          + (" [bold](token required)[/]" if token else ""))

    serve_app(plan, engines, host=host, port=port, max_loaded=max_loaded, token=token, max_body_mb=max_body_mb,
              concurrency=concurrency, threads=threads, body_timeout_s=body_timeout, log_level=log_level,
              access_log=access_log, preload=preload, on_ready=banner, max_json_mb=max_json_mb,
              limits=_L.ServerLimits(max_connections=max_connections, header_timeout_s=header_timeout,
                                     keep_alive_s=keep_alive, max_inflight_mb=max_inflight_mb))


def _triton_options(threads: int):
    from janus_deploy.triton.repository import ExportOptions

    return ExportOptions(platform="python", threads=threads or 1, fuse=False)  # every tail: ensembles bound the processes


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
    accuracy: Path | None = typer.Option(None, "--accuracy", help="Accuracy table of this plan (default: prefer the lowest α)."),
    server: str = typer.Option(..., "--server", help="URL of `janus-deploy serve`, e.g. http://10.0.0.2:8000."),
    sla: Sla = ...,
    images: Path | None = typer.Option(None, "--images", help="Folder of images."),
    video: Path | None = typer.Option(None, "--video", help="Video file (needs imageio or OpenCV; with --streams/--fps/--serial it is decoded by PyAV, the video extra)."),
    synthetic: int | None = typer.Option(None, "--synthetic", help="N synthetic frames."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many frames of --images/--video."),
    trace: list[str] | None = typer.Option(None, "--trace", help="Bandwidth trace replayed on the upload (file, directory or glob)."),
    trace_format: TraceFormat = "auto",
    sample_interval: SampleInterval = 1.0,
    codec: str | None = typer.Option(None, "--codec", help="fp32 | fp16 | fp16-zstd | int8 | int4 | int4-zstd (default: the profile's)."),
    codecs: Codecs = None,
    estimator: Estimator = _C.estimator,
    window: Window = _C.window,
    cold_start: ColdStart = None,
    rtt: Rtt = None,
    margin: Margin = _C.margin,
    rtt_estimate: RttEstimate = _C.rtt_estimate,
    no_deflate: NoDeflate = False,
    cloud_load: CloudLoad = _C.cloud_load,
    breaker_failures: BreakerFailures = _C.breaker_failures,
    timeout_factor: TimeoutFactor = 1.0,
    token: str | None = typer.Option(None, "--token", envvar="JANUS_TOKEN", help="Bearer token of the server (prefer JANUS_TOKEN or --token-file: a command line is visible to other users)."),
    token_file: TokenFile = None,
    probe_interval: ProbeInterval = _C.probe_interval_s,
    edge_slowdown: EdgeSlowdown = 1.0,
    server_wait: float = typer.Option(10.0, "--server-wait", min=0.0, help="Seconds to wait for the server to answer before the first request (it may still be loading)."),
    max_error_share: float = typer.Option(0.0, "--max-error-share", min=0.0, max=1.0, help="Exit 3 when more than this share of requests errored."),
    threads: Threads = 0,
    preload: bool = typer.Option(False, "--preload", help="Check every engine file's sha256 and load every engine before the first request (else each is checked when first loaded)."),
    log: Path | None = typer.Option(None, "--log", help="Write one JSON line per request here (input of `janus-deploy replay`)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --log file."),
    allow_unverified_server: bool = typer.Option(False, "--allow-unverified-server", help="Use the answers of a server that does not say which plan it serves (refused by default)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    stream: list[str] | None = typer.Option(None, "--stream", help="A camera: KIND=WHERE[,fps=F][,sla=MS][,limit=N], KIND video (file, via PyAV), url (rtsp://... stream), images (folder) or synthetic (count); repeat for several. Runs the pipelined runtime (docs/runtime.md, 'Camera streams')."),
    streams: int | None = typer.Option(None, "--streams", min=1, help="Run N copies of the --images/--video/--synthetic source as N cameras through the pipelined runtime."),
    fps: float | None = typer.Option(None, "--fps", min=0.001, help="Frame rate of every camera (default: a video's own rate, else 15); alone, it runs the one source at that rate, pipelined."),
    drop: str = typer.Option("stale", "--drop", help="Cameras: stale (keep each stream's newest frame, drop frames that can no longer meet the SLA) | none (answer every frame)."),
    serial: bool = typer.Option(False, "--serial", help="Cameras: one frame at a time (the serial loop); frames arriving meanwhile are dropped and counted."),
    exchanges: int = typer.Option(3, "--exchanges", min=1, help="Cameras: exchanges with the server at once (their uploads still take the uplink one at a time)."),
) -> None:
    """Run frames through the edge runtime: decide (α, split), run the head here, the tail on the server."""
    _require("httpx")
    from janus_deploy.net.traces import load_trace
    from janus_deploy.plan.manifest import Manifest
    from janus_deploy.runtime.edge import EdgeRuntime
    from janus_deploy.runtime.session import check_server, edge_runner, frame_source, settings_mismatch
    from janus_deploy.runtime.transport import TransportOptions

    token = read_token(token, token_file)
    if log is not None:
        from janus_deploy import check_output_path

        check_output_path(log, "run log", force=force)
    manifest = Manifest.load(plan)
    cameras = stream or streams is not None or fps is not None or serial
    if cameras:
        if drop not in ("stale", "none"):
            raise JanusError(f"unknown --drop {drop!r}; choose stale or none")
        sources = camera_sources(manifest, stream or [], streams=streams, images=images, video=video,
                                 synthetic=synthetic, limit=limit, fps=fps)
    else:
        frames = frame_source(manifest, images=images, video=video, synthetic=synthetic, limit=limit)
    bw = load_trace(trace, fmt=trace_format, interval_s=sample_interval) if trace else None
    extra = {"probe_interval_s": probe_interval if probe_interval > 0 else None, "cloud_load": cloud_load}
    extra["cold_start_mbps"] = cold_start  # None: ControllerConfig.for_trace's rule
    if rtt is not None:
        extra.update(rtt_cold_ms=rtt, rtt_fixed=True)
    ctrl = controller_config(estimator=estimator, window=window, margin=margin, rtt_estimate=rtt_estimate,
                             no_deflate=no_deflate, breaker_failures=breaker_failures, **extra)
    runner = edge_runner(manifest, engines, edge_slowdown=edge_slowdown, threads=threads, preload=preload)
    rt = EdgeRuntime(manifest, runner, profile_path(profile), profile_path(cloud_profile), server_url=server,
                     sla_ms=sla, accuracy=accuracy, codec=codec, codecs=codec_list(codecs), controller=ctrl,
                     transport=TransportOptions(token=token, timeout_factor=timeout_factor,
                                                allow_unverified_plan=allow_unverified_server), trace=bw, log=log,
                     threads=threads)
    with rt:
        check = check_server(rt, server_wait)
        if not as_json:
            err_console.print(f"[yellow]warning:[/] {check.line}" if check.warning else check.line)
        for line in settings_mismatch(rt.edge_profile.device, edge_slowdown=edge_slowdown, threads=threads):
            err_console.print(f"[yellow]warning:[/] {line}")
        if cameras:
            from janus_deploy.runtime.streams import StreamRuntime
            from janus_deploy.schedule.pipeline import PipelineConfig

            sr = StreamRuntime(rt, sources, PipelineConfig(drop=drop, serial=serial), exchanges=exchanges)
            _run_cameras(sr, as_json)
        else:
            _run_frames(rt, frames, None if synthetic is None else int(synthetic), as_json)
        summary = sr.summary() if cameras else rt.summary()
        summary.update(config_error=rt.config_error, log_error=rt.log_error, server_reachable=check.reachable,
                       server_answers=sum(r.server is not None for r in rt.records))
        records = rt.records
    if as_json:
        print_json(summary)
    else:
        render_report(summary)
        if cameras:
            from janus_deploy.cli.common import streams_table

            streams_table(console, [("all", summary)], f"{len(sources)} camera{'s' if len(sources) > 1 else ''}, "
                          + ("serial" if serial else f"pipelined, --drop {drop}"))
        if log and not summary["log_error"]:
            console.print(f"per-request log: {log} (`janus-deploy replay {log}` re-runs its decisions)")
    _run_exit(summary, max_error_share, check, records, log, cameras)


def _run_frames(rt, frames, total: int | None, as_json: bool) -> None:
    """``run``'s one-request-at-a-time loop, with a progress line per answer unless --json."""
    if as_json:
        rt.run(frames)
        return
    from janus_deploy.cli.common import progress_bars

    with progress_bars() as update:
        done = [0]

        def show(res) -> None:
            d, fb = res.record.decision, res.fallback
            text = (f"{d.label if d is not None else '?'} {res.total_ms:.0f} ms"
                    + (f" [yellow]fallback: {fb.kind}[/]" if fb else "")
                    + (" [red]error[/]" if res.error else ""))
            done[0] += 1
            update("requests", done[0], total, text)

        rt.run(frames, progress=show)


def _run_exit(summary: dict, max_error_share: float, check, records, log, cameras: bool) -> None:
    """``run``'s exit: 1 when the log could not be written, 3 when no camera frame was answered or
    the run did not do its job (``honest_exit``), else 0."""
    if summary["log_error"]:
        err_console.print(f"[bold red]error:[/] the run log {log} could not be written ({summary['log_error']}); "
                          "give another --log path")
        honest_exit(summary, max_error_share, check, records)
        raise typer.Exit(1)
    if cameras and summary["frames"] and not summary["answered"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in summary["drop_reasons"].items())
        err_console.print(f"[bold red]error:[/] no frame of {summary['frames']} was answered (dropped: {reasons}); "
                          "a longer --sla, a lower --fps or --drop none")
        raise typer.Exit(3)
    honest_exit(summary, max_error_share, check, records)


def camera_sources(manifest, specs: list[str], *, streams: int | None, images, video, synthetic, limit, fps):
    """The cameras of ``run``: one per ``--stream``, or ``--streams`` N copies (default 1) of the
    ``--images``/``--video``/``--synthetic`` source."""
    from janus_deploy.runtime.session import open_source, parse_source

    if specs:
        if any(v is not None for v in (images, video, synthetic)) or streams is not None:
            raise JanusError("give cameras as --stream KIND=WHERE (repeatable) or as --streams N with one of "
                             "--images/--video/--synthetic, not both")
        parsed = [parse_source(s) for s in specs]
    else:
        given = [(k, v) for k, v in (("images", images), ("video", video), ("synthetic", synthetic)) if v is not None]
        if len(given) != 1:
            raise JanusError("give exactly one of --images DIR, --video FILE or --synthetic N (or --stream ...)")
        kind, where = given[0]
        parsed = [{"kind": kind, "where": str(where), **({"limit": limit} if limit else {})}] * (streams or 1)
    return [open_source(manifest, p, name=f"cam{i}", fps=fps, seed=1000 * i) for i, p in enumerate(parsed)]


def _run_cameras(sr, as_json: bool) -> None:
    """Run the cameras to the end, with a progress bar of frames by outcome (not with --json)."""
    if as_json:
        sr.run()
        return
    from janus_deploy.cli.common import progress_bars

    with progress_bars() as update:
        counts: dict[str, int] = {}

        def show(rec) -> None:
            if rec.kind == "probe":
                return
            counts[rec.outcome] = counts.get(rec.outcome, 0) + 1
            update("frames", sum(counts.values()), None, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

        sr.run(progress=show)


def honest_exit(summary: dict, max_error_share: float, server=None, records=None) -> None:
    """Exit non-zero when the run did not do its job (one line saying why; the policy is
    :func:`janus_deploy.runtime.session.run_outcome`)."""
    from janus_deploy.runtime.session import run_outcome

    outcome = run_outcome(summary, max_error_share, server, records)
    if outcome.rc:
        err_console.print(f"[bold red]error:[/] {outcome.line}")
        raise typer.Exit(outcome.rc)


def profile_path(spec: str):
    """A profile from a file path or a preset name."""
    from janus_deploy.profile.table import resolve_profile

    return resolve_profile(spec)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(run)
