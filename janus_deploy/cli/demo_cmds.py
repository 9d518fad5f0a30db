"""`demo`: the main job end to end on the embedded default (CPU, ONNX Runtime, loopback)."""

from __future__ import annotations

from pathlib import Path

import typer

from janus_deploy.cli.common import console, err_console, print_json, progress_bars, render_report


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for every artefact (plan, engines, profiles, accuracy, images, request log, summary)."),
    requests: int = typer.Option(200, min=1, help="Number of requests (images of the digits task's held-out split, 359 at most)."),
    sla: float = typer.Option(100.0, help="Latency SLA in ms."),
    levels: int = typer.Option(8, min=1, help="Pruning levels to export."),
    k: int = typer.Option(2, min=1, help="Split-point density k (Eq. 3)."),
    trace: str | None = typer.Option(None, help="Uplink trace to replay (default: the shipped LTE driving trace)."),
    sample_interval: float = typer.Option(0.05, help="Seconds per trace sample."),
    runs: int = typer.Option(20, min=1, help="Timed runs per engine when profiling."),
    edge_slowdown: float = typer.Option(8.0, min=1.0, help="Emulate an edge device this many times slower than this machine (edge and cloud share it on loopback)."),
    engine: str = typer.Option("builtin", "--engine", help="Cloud server: builtin | triton (the tritonserver bundled in nvidia-pytriton)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report (summary.json) as JSON on stdout; the steps go to stderr."),
) -> None:
    """Export the small digits ViT, build ORT engines, calibrate, profile, serve on loopback and run the edge client over an LTE trace."""
    from janus_deploy import check_output_path
    from janus_deploy.demo import run_demo

    check_output_path(out, "demo folder", folder=True)

    say_to = err_console if as_json else console
    with progress_bars() as update:
        summary = run_demo(out, requests=requests, sla_ms=sla, levels=levels, k=k, trace=trace,
                           sample_interval_s=sample_interval, runs=runs, edge_slowdown=edge_slowdown, engine=engine,
                           say=lambda s: say_to.print(f"[bold cyan]{s}"),
                           progress=lambda stage, done, total: update(f"  {stage}", done, total))
    if as_json:
        print_json(summary)
        return
    render_report(summary, "janus-deploy demo")
    if summary.get("top1_accuracy") is not None:
        console.print(f"top-1 accuracy of the answers against the images' labels: {summary['top1_accuracy']:.1%}")
    from janus_deploy.report import format_comparison

    if summary.get("comparison"):
        console.print("\nwhat the choice buys: janus-deploy next to the baselines", markup=False, highlight=False)
        console.print(format_comparison(summary["comparison"]), markup=False, highlight=False, soft_wrap=True)
    if summary.get("decision_map"):
        console.print(f"decision map (when it offloads, splits or stays on the device, and why): {summary['decision_map']}",
                      markup=False, highlight=False)
    console.print(f"[green]artefacts in {out}[/]: plan/ engines/ accuracy.json edge-profile.json cloud-profile.json "
                  "images/ requests.jsonl summary.json decision-map.png")
    console.print(f"why did the edge choose that? `janus-deploy replay {out / 'requests.jsonl'}` re-makes every "
                  "decision from the log")


def register(app: typer.Typer) -> None:
    app.command()(demo)
