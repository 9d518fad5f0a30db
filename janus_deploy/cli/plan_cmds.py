"""`export`, `build-engines`, `verify`, `inspect`: thin wrappers over janus_deploy.plan/backends."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from janus_deploy.cli.common import console, err_console, parse_overrides, print_json, progress_bar


def export(
    model: str = typer.Option(..., "--model", "-m", help="timm model name (vit_*/deit_*), e.g. vit_tiny_patch16_224."),
    out: Path = typer.Option(..., "--out", "-o", help="Plan directory to write (created; re-running reuses unchanged graphs and resumes an interrupted export)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Local checkpoint (.safetensors/.pth/.pt). Never downloads; without one the model is randomly initialised with a fixed seed."),
    img_size: Optional[int] = typer.Option(None, help="Input resolution (e.g. 224 or 384); default: the model's."),
    k: int = typer.Option(3, help="Split-point density k of Eq. 3 (paper: 5 for 24 blocks)."),
    levels: Optional[int] = typer.Option(None, help="Number of pruning levels, evenly spaced in [0, alpha_max] (default 8 unless --alpha-step)."),
    alpha_step: Optional[float] = typer.Option(None, help="Pruning level step t (paper: 0.01); alternative to --levels."),
    policy: str = typer.Option("exponential", help="Pruning policy: exponential (Janus), linear, or constant (ToMe r)."),
    baseline_r: Optional[int] = typer.Option(None, help="Also export ToMe's constant-r level for the baselines (paper: 23 for ViT-L@384)."),
    opset: int = typer.Option(17, help="ONNX opset (>= 17)."),
    override: Optional[list[str]] = typer.Option(None, "--set", help="Extra timm constructor argument key=value (repeatable), e.g. --set num_classes=10."),
    force: bool = typer.Option(False, "--force", help="Replace another model's plan (or write into a folder of other files) at --out."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON (plan folder, hash, levels, segments, graphs)."),
) -> None:
    """Export a timm ViT pruned at a grid of levels and sliced at every candidate split point."""
    from janus_deploy import levels as L

    # model-free checks first: a wrong --levels fails at once, before torch is even imported
    L.check_plan_args(policy, k, step=alpha_step, levels=levels, baseline_r=baseline_r)
    overrides = parse_overrides(override)
    if img_size is not None:
        overrides["img_size"] = img_size

    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan
    from janus_deploy.plan.export import check_out_dir

    check_out_dir(out)
    spec = ModelSpec(model, overrides, str(checkpoint) if checkpoint else None)
    config = ExportConfig(k=k, policy=policy, levels=levels, step=alpha_step, baseline_r=baseline_r, opset=opset)
    with progress_bar("exporting") as update:
        manifest, stats = export_plan(spec, out, config, progress=lambda f, d, t: update(d, t, f), force=force)
    secs = stats["seconds_per_graph"]
    if as_json:
        print_json({"plan": str(out), "plan_hash": manifest.hash, "model": manifest.model["name"],
                    "levels": len(manifest.levels), "segments": len(manifest.data["segments"]),
                    "candidates": manifest.candidates, "graphs_exported": stats["exported"],
                    "graphs_reused": stats["reused"],
                    "seconds_per_graph": sum(secs) / len(secs) if secs else None})
        return
    console.print(
        f"[green]plan written[/] to {out}: {len(manifest.levels)} levels x {len(manifest.data['segments'])} "
        f"segments; {stats['exported']} graphs exported"
        + (f" ({sum(secs) / len(secs):.2f} s each)" if secs else "")
        + f", {stats['reused']} unchanged; plan hash {manifest.hash[:12]}"
    )


def build_engines(
    plan: Path = typer.Argument(..., help="Plan directory written by `janus-deploy export`."),
    out: Path = typer.Option(..., "--out", "-o", help="Engine directory to write."),
    backend: str = typer.Option("ort", help="ort (ONNX Runtime, embedded default) or trt (TensorRT 10, NVIDIA GPUs)."),
    precision: Optional[str] = typer.Option(None, help="fp32 | fp16 | int8 (default: fp32 for ort, fp16 for trt)."),
    device: str = typer.Option("cpu", help="ort only: cpu or cuda execution provider."),
    device_name: Optional[str] = typer.Option(None, help="A name for this device, recorded with the engines (e.g. jetson-orin-nano)."),
    graphs: str = typer.Option("level", help="ort only: 'level' (one session per level and segment; fastest) or 'level-free' (one session per segment serving every merging level, plus level 0's; memory does not grow with the number of levels, merging levels run a few percent slower; see docs/engines.md)."),
) -> None:
    """Build engines for every level and segment of a plan on this device."""
    from janus_deploy.backends import build_engines as build
    from janus_deploy.plan import Manifest

    manifest = Manifest.load(plan)
    kwargs = {"precision": precision or ("fp16" if backend == "trt" else "fp32"), "device_name": device_name}
    if backend == "ort":
        kwargs.update(device=device, graphs=graphs)
    elif graphs != "level":
        err_console.print(f"[red]--graphs {graphs} is not for the {backend} backend[/]: only ort has level-free "
                          "graphs; TensorRT engines are built per level")
        raise typer.Exit(2)
    with progress_bar(f"building {backend} engines") as update:
        data = build(manifest, out, backend, progress=lambda d, t: update(d, t), **kwargs)
    console.print(f"[green]{len(data['engines'])} {backend} engines[/] in {out} ({data['build_seconds']:.1f} s)")


def verify(
    plan: Path = typer.Argument(..., help="Plan directory."),
    engines: Optional[Path] = typer.Option(None, help="Engine directory to check (default: both graph families of the plan, per-level and level-free, in ONNX Runtime on the CPU)."),
    images: Optional[Path] = typer.Option(None, help="Folder of images to check with (default: synthetic frames)."),
    num_images: int = typer.Option(4, min=1, help="How many images (synthetic, or the first N of --images)."),
    save_references: Optional[Path] = typer.Option(None, help="Write per-segment reference inputs/outputs as Polygraphy JSON here."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON."),
) -> None:
    """Check every level's segment chain against PyTorch and the level's unsplit graph; non-zero exit beyond tolerance."""
    from janus_deploy.backends import EngineError, load_runner, read_engines_file
    from janus_deploy.backends.ort import GRAPHS, OrtRunner
    from janus_deploy.images import frames_for, normalize
    from janus_deploy.plan import Manifest
    from janus_deploy.backends.verify import Tolerance, check_engines, reports_to_dicts, verify_runners

    manifest = Manifest.load(plan)
    if engines is not None:
        problems = check_engines(manifest, engines)
        if problems:
            raise EngineError(f"engines in {engines} failed their integrity check: " + "; ".join(problems)
                              + ". Rebuild them with `janus-deploy build-engines`")
        runs = [(f"engines {engines}", load_runner(manifest, engines))]
        tol = Tolerance.for_precision(read_engines_file(engines, manifest).get("precision", "fp32"))
    else:  # both graph families of the plan, in ONNX Runtime on the CPU
        runs = [(f"{g} graphs (ORT)", OrtRunner(manifest, graphs=g, level_free_everywhere=True)) for g in GRAPHS]
        tol = Tolerance()
    frames = frames_for(images, num_images, manifest.model["img_size"])
    x = normalize(frames, manifest.model["mean"], manifest.model["std"])
    with progress_bar("verifying levels", len(runs) * len(manifest.levels)) as update:
        per_runner = verify_runners(manifest, [r for _, r in runs], x, tolerance=tol, save_dir=save_references,
                                    progress=lambda d, t: update(d, t))
    results = [(name, reports) for (name, _), reports in zip(runs, per_runner)]
    ok = all(r.ok for _, reports in results for r in reports)
    if as_json:
        print_json({"ok": ok, "tolerance": tol.__dict__,
                    "runs": [{"name": name, "levels": reports_to_dicts(reports)} for name, reports in results]})
    else:
        for name, reports in results:
            table = Table("level", "policy", "alpha", "max|d| torch", "cosine", "top-1 torch", "max|d| unsplit",
                          "top-1 unsplit", "ok", title=f"verify {plan}: {name}, {len(frames)} images")
            for r in reports:
                table.add_row(str(r.index), r.policy, f"{r.alpha:.4g}", f"{r.max_abs_vs_torch:.2e}",
                              f"{r.cosine_vs_torch:.6f}", f"{r.top1_vs_torch:.2f}", f"{r.max_abs_vs_unsplit:.2e}",
                              f"{r.top1_vs_unsplit:.2f}", "[green]yes" if r.ok else "[red]NO")
            console.print(table)
        if save_references:
            console.print(f"Polygraphy references in {save_references}: polygraphy run {plan}/L00_S00.onnx --onnxrt "
                          f"--load-inputs {save_references}/L00_S00.inputs.json --load-outputs {save_references}/L00_S00.outputs.json")
    if not ok:
        for name, reports in results:
            bad = [str(r.index) for r in reports if not r.ok]
            if bad:
                err_console.print(f"[bold red]verify failed[/] ({name}) for level(s) {', '.join(bad)}: beyond tolerance {tol}")
        raise typer.Exit(1)


def inspect(
    plan: Path = typer.Argument(..., help="Plan directory."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON."),
) -> None:
    """Summarise a plan: levels, token schedules, candidates, payload per split, files and sizes."""
    from janus_deploy.plan import Manifest
    from janus_deploy.plan.inspect import summarize

    info = summarize(Manifest.load(plan))
    if as_json:
        print_json(info)
        return
    m = info["model"]
    console.print(f"[bold]{m['name']}[/] N={m['num_blocks']} D={m['embed_dim']} x0={m['num_tokens']} "
                  f"prefix={m['num_prefix_tokens']} img={m['img_size']}  plan {info['plan_hash'][:12]}")
    console.print(f"candidates C = {info['candidates']}   segments = {info['segments']}")
    table = Table("level", "policy", "alpha", "tokens x0..xN", title="pruning levels")
    for lv in info["levels"]:
        table.add_row(str(lv["index"]), lv["policy"], f"{lv['alpha']:.4g}", " ".join(map(str, lv["tokens"])))
    console.print(table)
    pay = Table("level", *[f"s={s}" for s in info["candidates"]], title="payload KiB per split (fp32 tokens + size; s=0 uint8 frame)")
    for lv in info["levels"]:
        pay.add_row(str(lv["index"]), *[f"{lv['payload_bytes_fp32'][str(s)] / 1024:.1f}" for s in info["candidates"]])
    console.print(pay)
    f = info["files"]
    console.print(f"{f['graphs']} graphs ({f['level_free_graphs']} of them level-free), {f['graph_bytes'] / 1e6:.2f} MB; weights {f['weights_bytes'] / 1e6:.2f} MB; "
                  f"total {f['total_bytes'] / 1e6:.2f} MB = {f['size_vs_weights']:.3f} x model weights")


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command("build-engines")(build_engines)
    app.command()(verify)
    app.command()(inspect)
