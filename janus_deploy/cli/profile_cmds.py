"""`profile`: measure a plan's engines on this device (or synthesise a profile from a linear model)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from janus_deploy.cli.common import console, print_json, progress_bar
from janus_deploy.cli.options import EdgeSlowdown, Threads


def profile(
    plan: Path = typer.Argument(..., help="Plan directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Profile JSON to write."),
    engines: Path | None = typer.Option(None, help="Engine directory (from build-engines); required unless --from-linear."),
    device_name: str = typer.Option(..., help="Name of this device, e.g. jetson-orin-nano or cloud-v100."),
    warmup: int = typer.Option(5, min=0, help="Untimed runs before measuring each engine."),
    runs: int = typer.Option(30, min=1, help="Timed runs per engine."),
    threads: Threads = 0,
    edge_slowdown: EdgeSlowdown = 1.0,
    images: Path | None = typer.Option(None, help="Folder of images for the codec measurements (default: synthetic frames)."),
    num_images: int = typer.Option(8, min=1, help="Images used for codec agreement."),
    from_linear: str | None = typer.Option(None, help="Synthesise instead of measuring: per-block latency 'a,b' = a + b*tokens ms (e.g. 0.41,0.0235)."),
    as_json: bool = typer.Option(False, "--json", help="Print the consistency report as JSON (with --from-linear: the profile written)."),
) -> None:
    """Measure every (level, segment) engine into a latency profile, with payload codecs and a linear fit."""
    from janus_deploy import JanusError, check_output_path
    from janus_deploy.images import frames_for
    from janus_deploy.plan import Manifest
    from janus_deploy.profile.measure import linear_profile, measure_profile
    from janus_deploy.profile.table import parse_linear, save_profile

    check_output_path(out, "profile file")
    manifest = Manifest.load(plan)
    if from_linear is not None:
        a, b = parse_linear(from_linear)
        prof = linear_profile(manifest, a, b, device_name)
        save_profile(prof, out)
        if as_json:
            print_json({"profile": str(out), "device": device_name, "plan_hash": manifest.hash, "source": "linear",
                        "linear_model": {"a_ms": a, "b_ms_per_token": b}})
        else:
            console.print(f"[green]linear profile[/] ({a} + {b}·tokens ms per block) written to {out}")
        return
    if engines is None:
        raise JanusError("give --engines ENGINE_DIR (from `janus-deploy build-engines`) or --from-linear a,b")
    from janus_deploy.backends import load_runner, read_engines_file

    meta = read_engines_file(engines, manifest)
    runner = load_runner(manifest, engines, threads=threads)
    if edge_slowdown > 1:
        from janus_deploy.backends.base import SlowedRunner

        runner = SlowedRunner(runner, edge_slowdown)
    frames = frames_for(images, num_images, manifest.model_info.img_size)
    with progress_bar("profiling engines") as update:
        prof, report = measure_profile(
            manifest, runner, frames, device_name=device_name, backend=meta["backend"],
            precision=meta.get("precision", "fp32"), threads=threads, warmup=warmup, runs=runs,
            progress=lambda d, t, text: update(d, t, text),
        )
    save_profile(prof, out)
    if as_json:
        print_json(report)
        return
    from janus_deploy.cli.common import narrow_table
    from janus_deploy.levels import LevelKey

    table = narrow_table(f"profile of {plan} on {device_name}", "level", "sum of\nsegments ms", "unsplit\nms",
                         "ratio")
    for r in report["levels"]:
        table.add_row(LevelKey.of(r["policy"], r["alpha"]).label, f"{r['sum_segments_ms']:.2f}",
                      f"{r['unsplit_ms']:.2f}", f"{r['ratio']:.3f}")
    console.print(table)
    console.print("[dim]level: α (exponential), linN (linear), rN (ToMe's constant r); ratio: the sum of the level's "
                  "segment times over its unsplit graph's time (near 1: splitting costs little)[/]")
    fit = report["linear_model"]
    if fit["a_ms"] is not None and fit["r"] is not None:
        console.print(f"per-block linear model: {fit['a_ms']:.4f} + {fit['b_ms_per_token']:.6f}·tokens ms "
                      f"(r = {fit['r']:.3f}, max relative error {fit['max_rel_err']:.1%} over {fit['points']} segments)")
    codecs = Table("codec", "lossless", "top-1 agreement vs fp32", title="payload codecs")
    for name, c in report["codecs"].items():
        agree = "n/a" if c["top1_agreement"] is None else f"{c['top1_agreement']:.3f}"
        codecs.add_row(name, str(c["lossless"]), agree)
    console.print(codecs)
    print_slower(prof)
    console.print(f"[green]profile written[/] to {out}")


def print_slower(prof) -> None:
    """Levels slower on this device than a level with fewer merges, and where (or that none is)."""
    from janus_deploy.levels import LevelKey
    from janus_deploy.profile.dominance import describe

    label = lambda p, a: LevelKey.of(p, a).label  # noqa: E731 - a one-line named lambda reads better than a def here
    lines = [line for lv, flags in zip(prof.levels, prof.slower_than_lighter()) for line in describe(lv, flags, prof.levels, label)]
    if not lines:
        console.print(f"every level is faster on {prof.device_name} than each level with fewer merges")
        return
    console.print(f"[yellow]levels that do not pay on {prof.device_name}[/] (slower than a level with fewer merges; "
                  "the scheduler skips an option that another level beats at no loss of accuracy):", soft_wrap=True)
    for line in lines:
        console.print(f"  {line}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(profile)
