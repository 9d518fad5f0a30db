"""``janus-deploy export-table``: the decision table libjanus (C) decides from."""

from __future__ import annotations

from pathlib import Path

import typer

from janus_deploy.cli.common import console, controller_config, print_json
from janus_deploy.cli.options import (
    BreakerFailures,
    Codecs,
    ColdStart,
    Estimator,
    Margin,
    NoDeflate,
    ProbeInterval,
    Rtt,
    RttEstimate,
    Sla,
    Window,
    codec_list,
)
from janus_deploy.schedule.controller import COLD_START_MBPS, SYSTEMS
from janus_deploy.schedule.controller import ControllerConfig as _C


def export_table(
    profile: str = typer.Option(..., "--profile", help="Edge profile JSON, or a preset name."),
    cloud_profile: str = typer.Option(..., "--cloud-profile", help="Cloud profile JSON, or a preset name."),
    out: Path = typer.Option(..., "--out", help="Decision table file to write (docs/decision-table.md)."),
    plan: Path | None = typer.Option(None, "--plan", help="Plan directory: adds the V2 model name of every "
                                        "(level, split) and the engine file of every edge segment."),
    engines: Path | None = typer.Option(None, "--engines", help="Engine directory whose files to name (with "
                                           "--plan; default: the plan's own graphs)."),
    accuracy: Path | None = typer.Option(None, "--accuracy", help="Accuracy table of the plan."),
    codec: str | None = typer.Option(None, "--codec", help="Default payload codec (default: the profile's)."),
    codecs: Codecs = None,
    sla: Sla = 300.0,
    frame_bytes: int | None = typer.Option(None, "--frame-bytes", help="Override the bytes sent at s=0."),
    baseline_level: float | None = typer.Option(None, "--baseline-level", help="ToMe r of the baselines "
                                                   "(default: the profiles' only constant level)."),
    system: str = typer.Option(_C.system, "--system", help=" | ".join(SYSTEMS)),
    estimator: Estimator = _C.estimator,
    window: Window = _C.window,
    cold_start: ColdStart = COLD_START_MBPS,
    margin: Margin = _C.margin,
    rtt: Rtt = None,
    rtt_estimate: RttEstimate = _C.rtt_estimate,
    no_deflate: NoDeflate = False,
    probe_interval: ProbeInterval = _C.probe_interval_s or 0.0,
    breaker_failures: BreakerFailures = _C.breaker_failures,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON (file, bytes, format, crc32, levels, splits)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
) -> None:
    """Write the decision table (levels, splits, latencies, payloads, accuracy, names, controller
    settings) that libjanus and `janus-decide` load: Janus's decisions without Python."""
    from janus_deploy import JanusError, check_output_path
    from janus_deploy.calibrate.accuracy import load_accuracy
    from janus_deploy.profile.table import resolve_profile
    from janus_deploy.schedule.table_file import read_header, write_table

    check_output_path(out, "decision table", force=force)

    extra = {"system": system, "cold_start_mbps": cold_start,
             "probe_interval_s": probe_interval if probe_interval > 0 else None}
    if rtt is not None:
        extra.update(rtt_cold_ms=rtt, rtt_fixed=True)
    ctrl = controller_config(estimator=estimator, window=window, margin=margin, rtt_estimate=rtt_estimate,
                             no_deflate=no_deflate, breaker_failures=breaker_failures, **extra)
    edge, cloud = resolve_profile(profile), resolve_profile(cloud_profile)
    try:
        path = write_table(out, edge, cloud, accuracy=load_accuracy(accuracy) if accuracy else None, plan=plan,
                           engines=engines, codec=codec, sla_ms=sla, frame_bytes=frame_bytes,
                           baseline_level=baseline_level, controller=ctrl, codecs=codec_list(codecs))
    except OSError as exc:
        raise JanusError(f"cannot write the decision table {out}: {exc.strerror or exc}; give another --out") from None
    head = read_header(path.read_bytes())
    if as_json:
        print_json({"table": str(path), "bytes": head.size, "format": head.version, "crc32": f"{head.crc32:08x}",
                    "levels": len(edge.levels), "splits": len(edge.candidates), "names": plan is not None})
        return
    console.print(f"wrote {path} ({head.size:,} bytes, format {head.version}, crc32 {head.crc32:08x}): "
                  f"{len(edge.levels)} levels × {len(edge.candidates)} splits"
                  + (", with model and engine names" if plan else ""), soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export-table")(export_table)
