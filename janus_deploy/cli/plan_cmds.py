"""`export`, `build-engines`, `verify`, `inspect`: thin wrappers over janus_deploy.plan/backends."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from janus_deploy.cli.common import console, err_console, narrow_table, parse_overrides, print_chunked, print_json, progress_bar
from janus_deploy.levels import LevelKey


def export(
    model: str = typer.Option(..., "--model", "-m", help="timm model name (vit_*/deit_*), e.g. vit_tiny_patch16_224."),
    out: Path = typer.Option(..., "--out", "-o", help="Plan directory to write (created; re-running reuses unchanged graphs and resumes an interrupted export)."),
    checkpoint: Path | None = typer.Option(None, help="Local checkpoint (.safetensors/.pth/.pt). Never downloads; without one the model is randomly initialised with a fixed seed."),
    img_size: int | None = typer.Option(None, help="Input resolution (e.g. 224 or 384); default: the model's."),
    k: int = typer.Option(3, help="Split-point density k of Eq. 3 (paper: 5 for 24 blocks)."),
    levels: int | None = typer.Option(None, help="Number of pruning levels, evenly spaced in [0, alpha_max] (default 8 unless --alpha-step)."),
    alpha_step: float | None = typer.Option(None, help="Pruning level step t (paper: 0.01); alternative to --levels."),
    policy: str = typer.Option("exponential", help="Pruning policy: exponential (Janus), linear, or constant (ToMe r)."),
    baseline_r: int | None = typer.Option(None, help="Also export ToMe's constant-r level for the baselines (paper: 23 for ViT-L@384)."),
    opset: int = typer.Option(17, help="ONNX opset (>= 17)."),
    override: list[str] | None = typer.Option(None, "--set", help="Extra timm constructor argument key=value (repeatable), e.g. --set num_classes=10."),
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
        print_json({"plan": str(out), "plan_hash": manifest.hash, "model": manifest.model_info.name,
                    "levels": len(manifest.plan_levels), "segments": len(manifest.segment_blocks),
                    "candidates": manifest.candidates, "graphs_exported": stats["exported"],
                    "graphs_reused": stats["reused"],
                    "seconds_per_graph": sum(secs) / len(secs) if secs else None})
        return
    console.print(
        f"[green]plan written[/] to {out}: {len(manifest.plan_levels)} levels x {len(manifest.segment_blocks)} "
        f"segments; {stats['exported']} graphs exported"
        + (f" ({sum(secs) / len(secs):.2f} s each)" if secs else "")
        + f", {stats['reused']} unchanged; plan hash {manifest.hash[:12]}"
    )


def build_engines(
    plan: Path = typer.Argument(..., help="Plan directory written by `janus-deploy export`."),
    out: Path = typer.Option(..., "--out", "-o", help="Engine directory to write."),
    backend: str = typer.Option("ort", help="ort (ONNX Runtime, embedded default) or trt (TensorRT 10 or 11, NVIDIA GPUs)."),
    precision: str | None = typer.Option(None, help="fp32 | fp16 | int8 (default: fp32 for ort, fp16 for trt)."),
    device: str = typer.Option("cpu", help="ort only: cpu or cuda execution provider."),
    device_name: str | None = typer.Option(None, help="A name for this device, recorded with the engines (e.g. jetson-orin-nano)."),
    graphs: str = typer.Option("level", help="'level' (one session/engine per level and segment; fastest) or 'level-free' (ort: one session per segment serving every merging level, plus level 0's, memory does not grow with the number of levels, merging levels run a few percent slower; trt: one engine per segment with a profile per level, so the weights are on the device once; see docs/engines.md)."),
    prepack: bool = typer.Option(False, "--prepack", help="ort, cpu: prepacked weights (every level at the speed of a default ONNX Runtime session), each weight resident once, packed: per-level graphs share one packed copy through ONNX Runtime's C API (its prepacked-weights container, from the library the onnxruntime wheel ships); with --graphs level-free the level-free graphs serve every level (docs/benchmarks.md)."),
    calibration: Path | None = typer.Option(None, "--calibration", help="int8 only: a folder of the deployment's images (any layout). Q/DQ graphs are calibrated per level on 3 of every 4 and their accuracy against fp32 measured on the rest (recorded in engines.json)."),
    calibration_images: int = typer.Option(64, min=2, help="int8 only: use at most this many images of --calibration."),
    min_batch: int = typer.Option(1, min=1, help="trt only: smallest batch of the engines' optimization profile."),
    max_batch: int = typer.Option(8, min=1, help="trt only: largest batch of the engines' optimization profile (recorded in engines.json; serve, the Triton export and the edge keep to it)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON (engine folder, backend, precision, engines, seconds)."),
) -> None:
    """Build engines for every level and segment of a plan on this device."""
    from janus_deploy import check_output_path
    from janus_deploy.backends import build_engines as build
    from janus_deploy.plan import Manifest

    check_output_path(out, "engine folder", folder=True)
    manifest = Manifest.load(plan)
    kwargs: dict[str, object] = {"precision": precision or ("fp16" if backend == "trt" else "fp32"),
                                 "device_name": device_name, "graphs": graphs, "calibration": calibration,
                                 "calibration_images": calibration_images}
    if backend == "ort":
        kwargs.update(device=device, prepack=prepack)
    elif prepack:
        from janus_deploy import JanusError

        raise JanusError(f"--prepack is for the ort backend ({backend} engines pack their weights themselves)")
    if backend == "trt":
        kwargs.update(min_batch=min_batch, max_batch=max_batch)
    with progress_bar(f"building {backend} engines") as update:
        data = build(manifest, out, backend, progress=lambda d, t: update(d, t), **kwargs)
    if as_json:
        print_json({"engines_dir": str(out), "plan_hash": manifest.hash, "backend": backend,
                    "precision": data.get("precision", kwargs["precision"]), "device_name": device_name,
                    "engines": len(data["engines"]), "build_seconds": data["build_seconds"],
                    "int8_accuracy": data.get("int8_accuracy")})
        return
    console.print(f"[green]{len(data['engines'])} {backend} engines[/] in {out} ({data['build_seconds']:.1f} s)")
    for a in data.get("int8_accuracy") or []:  # measured on the held-out calibration images
        console.print(f"  level {a['level']}: int8 vs fp32 top-1 agreement {a['top1_agreement']:.3f}, "
                      f"cosine min {a['cosine_min']:.4f} mean {a['cosine_mean']:.4f} ({a['images']} images)")


def verify(
    plan: Path = typer.Argument(..., help="Plan directory."),
    engines: Path | None = typer.Option(None, help="Engine directory to check (default: both graph families of the plan, per-level and level-free, in ONNX Runtime on the CPU)."),
    images: Path | None = typer.Option(None, help="Folder of images to check with (default: synthetic frames)."),
    num_images: int = typer.Option(4, min=1, help="How many images (synthetic, or the first N of --images)."),
    save_references: Path | None = typer.Option(None, help="Write per-segment reference inputs/outputs as Polygraphy JSON here."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON."),
) -> None:
    """Check every level's segment chain against PyTorch and the level's unsplit graph; non-zero exit beyond tolerance."""
    from janus_deploy.backends import EngineError, load_runner, read_engines_file
    from janus_deploy.backends.ort import GRAPHS, OrtRunner
    from janus_deploy.backends.verify import Tolerance, check_engines, reports_to_dicts, verify_runners
    from janus_deploy.images import frames_for, normalize
    from janus_deploy.plan import Manifest

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
    frames = frames_for(images, num_images, manifest.model_info.img_size)
    x = normalize(frames, manifest.model_info.mean, manifest.model_info.std)
    with progress_bar("verifying levels", len(runs) * len(manifest.plan_levels)) as update:
        per_runner = verify_runners(manifest, [r for _, r in runs], x, tolerance=tol, save_dir=save_references,
                                    progress=lambda d, t: update(d, t))
    results = [(name, reports) for (name, _), reports in zip(runs, per_runner)]
    ok = all(r.ok for _, reports in results for r in reports)
    if as_json:
        print_json({"ok": ok, "tolerance": tol.__dict__,
                    "runs": [{"name": name, "levels": reports_to_dicts(reports)} for name, reports in results]})
    else:
        for name, reports in results:
            table = narrow_table(f"verify {plan}: {name}, {len(frames)} images",
                                 "level", "max|Δ|\ntorch", "cosine\ntorch", "top-1\ntorch", "max|Δ|\nunsplit",
                                 "top-1\nunsplit", "ok")
            for r in reports:
                table.add_row(LevelKey.of(r.policy, r.alpha).label, f"{r.max_abs_vs_torch:.1e}",
                              f"{r.cosine_vs_torch:.6f}", f"{r.top1_vs_torch:.2f}", f"{r.max_abs_vs_unsplit:.1e}",
                              f"{r.top1_vs_unsplit:.2f}", "[green]yes" if r.ok else "[red]NO")
            console.print(table)
        console.print(f"[dim]{VERIFY_LEGEND} Tolerance: max|Δ| <= {tol.max_abs:g}, cosine >= {tol.min_cosine:g}, "
                      f"top-1 >= {tol.min_top1:g}.[/]")
        if save_references:
            console.print(f"Polygraphy references in {save_references}: polygraphy run {plan}/L00_S00.onnx --onnxrt "
                          f"--load-inputs {save_references}/L00_S00.inputs.json --load-outputs {save_references}/L00_S00.outputs.json")
    checked = sum(len(reports) for _, reports in results)
    failed = [(name, [LevelKey.of(r.policy, r.alpha).label for r in reports if not r.ok]) for name, reports in results]
    failed = [(name, bad) for name, bad in failed if bad]
    if not as_json:
        if ok:
            console.print(f"[green]verdict: pass: all {checked} level checks ({len(results)} graph families x "
                          f"{len(manifest.plan_levels)} levels) within tolerance[/]", soft_wrap=True)
        else:
            console.print("[red]verdict: FAIL: " + "; ".join(f"{name}: level(s) {', '.join(bad)}" for name, bad in failed)
                          + " beyond tolerance[/]", soft_wrap=True)
    if not ok:
        err_console.print("[bold red]verify failed[/] for " + "; ".join(f"{name}: level(s) {', '.join(bad)}"
                                                                     for name, bad in failed)
                          + f": beyond tolerance {tol}; re-export the plan, or check the engines' precision")
        raise typer.Exit(1)


VERIFY_LEGEND = ("level: α (exponential), linN (linear), rN (ToMe's constant r). max|Δ|: largest absolute "
                 "logit difference; cosine and top-1 agreement of the segment chain with the PyTorch model "
                 "(torch) and with the level's unsplit graph (unsplit).")


def inspect(
    plan: Path = typer.Argument(..., help="Plan directory."),
    profile: Path | None = typer.Option(None, "--profile", help="A profile of this plan: also print each level's device-only latency and the levels slower than a level with fewer merges."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON."),
) -> None:
    """Summarise a plan: levels, token schedules, candidates, payload per split, files and sizes."""
    from janus_deploy.plan import Manifest
    from janus_deploy.plan.inspect import summarize

    manifest = Manifest.load(plan)
    info = summarize(manifest)
    prof = None
    if profile is not None:
        from janus_deploy.profile.measure import check_profile_for_plan
        from janus_deploy.profile.table import load_profile

        prof = load_profile(profile)
        check_profile_for_plan(prof, manifest)
        info["profile"] = {"device": prof.device_name, "levels": [
            {"policy": lv.policy, "alpha": lv.alpha, "device_only_ms": prof.total_ms(i),
             "slower_than": [f.to_dict() for f in flags]}
            for i, (lv, flags) in enumerate(zip(prof.levels, prof.slower_than_lighter()))]}
    if as_json:
        print_json(info)
        return
    m = info["model"]
    console.print(f"[bold]{m['name']}[/] N={m['num_blocks']} D={m['embed_dim']} x0={m['num_tokens']} "
                  f"prefix={m['num_prefix_tokens']} img={m['img_size']}  plan {info['plan_hash'][:12]}")
    console.print(f"candidates C = {info['candidates']}   segments = {info['segments']}")
    table = Table("level", "tokens x0..xN (leaving each block)", title="pruning levels", title_justify="left")
    for lv in info["levels"]:
        table.add_row(LevelKey.of(lv["policy"], lv["alpha"]).label, " ".join(map(str, lv["tokens"])))
    console.print(table)
    print_chunked(console, "payload KiB per split s (fp32 tokens + size; s=0: the uint8 frame)", "level",
                  [f"s={s}" for s in info["candidates"]],
                  [(LevelKey.of(lv["policy"], lv["alpha"]).label,
                    [f"{lv['payload_bytes_fp32'][str(s)] / 1024:.1f}" for s in info["candidates"]]) for lv in info["levels"]])
    console.print(f"[dim]{LEVEL_LEGEND}[/]")
    f = info["files"]
    console.print(f"{f['graphs']} graphs ({f['level_free_graphs']} of them level-free), {f['graph_bytes'] / 1e6:.2f} MB; weights {f['weights_bytes'] / 1e6:.2f} MB; "
                  f"total {f['total_bytes'] / 1e6:.2f} MB = {f['size_vs_weights']:.3f} x model weights")
    if prof is not None:
        from janus_deploy.cli.profile_cmds import print_slower

        console.print("device-only ms on " + prof.device_name + ": " + ", ".join(
            f"{LevelKey.of(lv.policy, lv.alpha).label} {prof.total_ms(i):.2f}" for i, lv in enumerate(prof.levels)), soft_wrap=True)
        print_slower(prof)


LEVEL_LEGEND = "level: α (exponential policy), linN (linear), rN (ToMe's constant r); s: split point (the edge runs blocks 1..s)."


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command("build-engines")(build_engines)
    app.command()(verify)
    app.command()(inspect)
