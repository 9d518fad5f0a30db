"""`calibrate`: accuracy of every pruning level of a plan (thin wrapper over janus_deploy.calibrate)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from janus_deploy.cli.common import console, print_json, progress_bar
from janus_deploy.levels import LevelKey

TASKS = ("digits",)


def calibrate(
    plan: Path = typer.Argument(..., help="Plan directory written by `janus-deploy export`."),
    out: Path = typer.Option(..., "--out", "-o", help="Accuracy table to write (JSON, kind janus-deploy/accuracy)."),
    images: Path | None = typer.Option(None, "--images", help="Labelled images: DIR/<class>/<image>; numeric class folder names are the class index, other names are numbered in sorted order from 0."),
    task: str | None = typer.Option(None, "--task", help="A built-in offline task instead of --images: 'digits' (held-out cluttered sklearn digits; fits the small 64 px ViT of calibration/)."),
    limit: int | None = typer.Option(None, "--limit", help="Use at most N images (class-balanced prefix)."),
    split: str = typer.Option("test", "--split", help="digits task only: test (held out, default) or train."),
    seed: int = typer.Option(0, "--seed", help="digits task only: rendering seed."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON instead of a rich table."),
    codecs: str | None = typer.Option(None, "--codecs", help="Also measure each payload codec's loss per level: frame "
                                      "codecs (jpeg95, jpeg85, jpeg70) at split 0, token codecs (fp16, int8, int4, ...) at "
                                      "every token split, through the plan's engines (needs --engines); the scheduler's "
                                      "--codecs choose among them."),
    engines: Path | None = typer.Option(None, "--engines", help="Measure through these engines (build-engines: any "
                                        "backend and precision, e.g. int8 Q/DQ) instead of the PyTorch model; "
                                        "--codecs runs them too. The table's measured_with names them."),
) -> None:
    """Measure top-1 accuracy and agreement with the unpruned model at every level of a plan."""
    from janus_deploy import JanusError, check_output_path
    from janus_deploy.calibrate.accuracy import AccuracyError, load_labelled_folder, save_accuracy
    from janus_deploy.calibrate.accuracy import calibrate as run
    from janus_deploy.plan import Manifest

    if (images is None) == (task is None):
        raise JanusError("give exactly one of --images DIR (labelled class sub-folders) or --task digits")
    if limit is not None and limit < 1:
        raise JanusError(f"--limit must be >= 1, got {limit}")
    check_output_path(out, "accuracy table")
    from janus_deploy.cli.options import codec_list

    try:
        codec_names = codec_list(codecs)
    except typer.BadParameter as exc:
        raise JanusError(f"--codecs: {exc}") from None
    if codec_names and engines is None:
        raise JanusError("--codecs runs the plan's engines: give --engines DIR (janus-deploy build-engines)")
    manifest = Manifest.load(plan)
    runner = None
    if engines is not None:  # before the images: engines of another plan fail at once
        from janus_deploy.backends import load_runner

        runner = load_runner(manifest, engines, threads=0)
    m = manifest.model_info
    num_classes = m.num_classes or None  # 0: the manifest does not say
    if images is not None:
        frames, labels = load_labelled_folder(images, m.img_size, limit=limit)
        task_name = f"imagefolder:{images}"
    else:
        from janus_deploy.calibrate import digits

        if task not in TASKS:
            raise JanusError(f"unknown task {task!r}; built-in tasks: {', '.join(TASKS)} (or use --images DIR)")
        if m.img_size != digits.IMG_SIZE or num_classes != digits.NUM_CLASSES:
            raise AccuracyError(
                f"the digits task needs a {digits.IMG_SIZE} px, {digits.NUM_CLASSES}-class model (the small ViT: "
                f"{digits.SMALL_MODEL_NAME} with {digits.SMALL_MODEL_OVERRIDES} and "
                f"{digits.SMALL_MODEL_CHECKPOINT}); this plan's model takes {m.img_size} px and "
                f"{num_classes} classes. Use --images DIR for other models"
            )
        frames, labels = digits.make_digits(split, seed, limit=limit)
        task_name = "digits" if (split, seed) == ("test", 0) else f"digits:{split}:seed={seed}"

    if runner is not None:
        from janus_deploy.calibrate.accuracy import calibrate_engines

        assert engines is not None  # the runner is of --engines
        with progress_bar(f"calibrating {len(frames)} images on {engines}") as update:
            table = calibrate_engines(manifest, engines, frames, labels, runner=runner, batch_size=batch_size,
                                      task=task_name, progress=lambda d, t, text: update(d, t, text))
    else:
        with progress_bar(f"calibrating {len(frames)} images") as update:
            table = run(manifest, frames, labels, batch_size=batch_size, task=task_name,
                        progress=lambda d, t, text: update(d, t, text))
    if codec_names:
        from janus_deploy.calibrate.codecs import calibrate_codecs

        assert runner is not None  # --codecs needs --engines (checked above)
        with progress_bar(f"codec loss on {len(frames)} images") as update:
            table = calibrate_codecs(table, manifest, runner, frames, labels, codec_names, batch_size=batch_size,
                                     progress=lambda d, t, text: update(d, t, text))
    save_accuracy(table, out)
    if as_json:
        print_json(table)
        return
    mw = table["measured_with"]
    t = Table("level", "accuracy", "agreement", "tokens x0..xN (leaving each block)",
              title=f"{task_name}: {table['num_images']} images, plan {table['plan_hash'][:12]}, measured with "
                    f"{mw['backend']} {mw['precision']}", title_justify="left")
    for lv in table["levels"]:
        acc = "-" if lv["accuracy"] is None else f"{lv['accuracy']:.4f}"
        t.add_row(LevelKey.of(lv["policy"], lv["alpha"]).label, acc, f"{lv['agreement']:.4f}",
                  " ".join(map(str, lv["tokens"])))
    for col in t.columns[:3]:
        col.no_wrap = True
    console.print(t)
    if codec_names:
        _print_cells(table)
    console.print("[dim]level: α (exponential), linN (linear), rN (ToMe's constant r); accuracy: top-1 against the "
                  "labels; agreement: top-1 agreement with the unpruned model (level 0)[/]")
    console.print(f"[green]accuracy table written[/] to {out}")


def _print_cells(table: dict) -> None:
    """Per level and codec: the metric with the codec's loss (s = 0 for frame codecs; the worst
    and the best token split for token codecs)."""
    metric = "accuracy" if all(lv["accuracy"] is not None for lv in table["levels"]) else "agreement"
    names = table.get("codecs") or []
    t = Table("level", metric, *names, title=f"{metric} with each codec's loss (token codecs: worst..best split)",
              title_justify="left")
    for lv in table["levels"]:
        row = [LevelKey.of(lv["policy"], lv["alpha"]).label, f"{lv[metric]:.4f}"]
        for c in names:
            vals = [cell[metric] for cell in (lv.get("codecs") or {}).get(c, {}).values() if cell.get(metric) is not None]
            row.append("-" if not vals else f"{min(vals):.4f}" if len(vals) == 1 else f"{min(vals):.4f}..{max(vals):.4f}")
        t.add_row(*row)
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command()(calibrate)
