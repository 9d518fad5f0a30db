"""``janus-deploy export-table``: the decision table libjanus (C) decides from."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from janus_deploy.cli.common import console, controller_config, print_json
from janus_deploy.schedule.controller import COLD_START_MBPS, SYSTEMS
from janus_deploy.schedule.controller import ControllerConfig as _C


def export_table(
    profile: str = typer.Option(..., "--profile", help="Edge profile JSON, or a preset name."),
    cloud_profile: str = typer.Option(..., "--cloud-profile", help="Cloud profile JSON, or a preset name."),
    out: Path = typer.Option(..., "--out", help="Decision table file to write (docs/decision-table.md)."),
    plan: Optional[Path] = typer.Option(None, "--plan", help="Plan directory: adds the V2 model name of every "
                                        "(level, split) and the engine file of every edge segment."),
    engines: Optional[Path] = typer.Option(None, "--engines", help="Engine directory whose files to name (with "
                                           "--plan; default: the plan's own graphs)."),
    accuracy: Optional[Path] = typer.Option(None, "--accuracy", help="Accuracy table of the plan."),
    codec: Optional[str] = typer.Option(None, "--codec", help="Default payload codec (default: the profile's)."),
    sla: float = typer.Option(300.0, "--sla", help="Default latency SLA, ms."),
    frame_bytes: Optional[int] = typer.Option(None, "--frame-bytes", help="Override the bytes sent at s=0."),
    baseline_level: Optional[float] = typer.Option(None, "--baseline-level", help="ToMe r of the baselines "
                                                   "(default: the profiles' only constant level)."),
    system: str = typer.Option(_C.system, "--system", help=" | ".join(SYSTEMS)),
    estimator: str = typer.Option(_C.estimator, "--estimator", help="harmonic | ewma | robustmpc"),
    window: int = typer.Option(_C.window, "--window", help="Estimator window (samples)."),
    cold_start: float = typer.Option(COLD_START_MBPS, "--cold-start-mbps", help="Bandwidth before the first sample."),
    margin: float = typer.Option(_C.margin, "--margin", help="Fraction of the SLA held back."),
    rtt: Optional[float] = typer.Option(None, "--rtt", help="Fixed RTT (ms) instead of the measured one."),
    rtt_estimate: str = typer.Option(_C.rtt_estimate, "--rtt-estimate", help="max | median of the last RTTs."),
    no_deflate: bool = typer.Option(False, "--no-deflate", help="Do not deflate the estimate by its recent error."),
    probe_interval: float = typer.Option(_C.probe_interval_s, "--probe-interval", help="Probe after this many "
                                         "seconds without a link sample (0 = never)."),
    breaker_failures: int = typer.Option(_C.breaker_failures, "--breaker-failures", help="Consecutive server "
                                         "failures that stop offloading (0 = never)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON (file, bytes, format, crc32, levels, splits)."),
) -> None:
    """Write the decision table (levels, splits, latencies, payloads, accuracy, names, controller
    settings) that libjanus and `janus-decide` load: Janus's decisions without Python."""
    from janus_deploy.calibrate.accuracy import load_accuracy
    from janus_deploy.profile.table import resolve_profile
    from janus_deploy.schedule.table_file import read_header, write_table

    extra = {"system": system, "cold_start_mbps": cold_start,
             "probe_interval_s": probe_interval if probe_interval > 0 else None}
    if rtt is not None:
        extra.update(rtt_cold_ms=rtt, rtt_fixed=True)
    ctrl = controller_config(estimator=estimator, window=window, margin=margin, rtt_estimate=rtt_estimate,
                             no_deflate=no_deflate, breaker_failures=breaker_failures, **extra)
    edge, cloud = resolve_profile(profile), resolve_profile(cloud_profile)
    path = write_table(out, edge, cloud, accuracy=load_accuracy(accuracy) if accuracy else None, plan=plan,
                       engines=engines, codec=codec, sla_ms=sla, frame_bytes=frame_bytes,
                       baseline_level=baseline_level, controller=ctrl)
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
