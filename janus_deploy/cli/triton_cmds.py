"""``janus-deploy export-triton``: the cloud half as a Triton Inference Server model repository."""

from __future__ import annotations

from pathlib import Path

import typer

from janus_deploy import JanusError
from janus_deploy.cli.common import console, err_console, print_json


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise JanusError(f"{what} takes comma-separated integers, got {text!r}") from None


def export_triton(
    plan: Path = typer.Argument(..., help="Plan directory written by `janus-deploy export`."),
    engines: Path = typer.Option(..., "--engines", help="Engine directory of the serving device (its backend picks the platform)."),
    out: Path = typer.Option(..., "--out", help="Repository directory to write (new or empty; --force replaces one)."),
    platform: str = typer.Option("auto", "--platform", help="auto (ort engines: onnxruntime, trt engines: tensorrt) | onnxruntime | tensorrt | python (what the tritonserver bundled in nvidia-pytriton loads)."),
    codec: str = typer.Option("fp16", "--codec", help="Codec of the plain janus_L{l}_S{s} ensembles (fp32 | fp16 | int8)."),
    codecs: str = typer.Option("fp32,fp16,int8,int4", "--codecs", help="One janus_L{l}_S{s}_{codec} ensemble per codec (the edge uses these against Triton); add coded (or a frame codec: jpeg85, png, ...) for janus_L{l}_S0_coded, which decodes JPEG/PNG frames in a python-backend step (the stub needs simplejpeg and Pillow)."),
    max_batch: int | None = typer.Option(None, "--max-batch", help="Triton max_batch_size of every model (default: the TensorRT engines' max_batch from engines.json on --platform tensorrt, else 64)."),
    preferred_batch: str = typer.Option("", "--preferred-batch", help="Dynamic batcher's preferred batch sizes, e.g. 4,8,16 (default: none)."),
    max_queue_delay_us: int = typer.Option(0, "--max-queue-delay-us", help="Dynamic batcher's wait for a fuller batch (µs)."),
    no_dynamic_batching: bool = typer.Option(False, "--no-dynamic-batching", help="No dynamic batcher (one request per execution)."),
    instances: int = typer.Option(1, "--instances", help="Instances per model (instance_group count)."),
    kind: str = typer.Option("auto", "--kind", help="Instance kind: auto (GPU for cuda/trt engines) | cpu | gpu."),
    threads: int = typer.Option(1, "--threads", help="Intra-op threads per instance (ONNX Runtime; 0 = its default)."),
    weights: str = typer.Option("link", "--weights", help="link (hard links of the plan's one weight file) | copy (each model its own tensors: object stores)."),
    fuse: bool | None = typer.Option(None, "--fuse/--ensembles", help="--platform python: one model per tail running decode + segments in one stub (the default there: no process hop per step; more memory) | an ensemble of per-step models (the default on onnxruntime/tensorrt)."),
    tails: str = typer.Option("", "--tails", help="Only these tails, e.g. janus_L0_S1,janus_L2_S4 (default: every tail of the plan)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing repository at --out."),
    manifests: Path = typer.Option(None, "--manifests", help="Also write Kubernetes/KServe manifests for this repository here (docs/scale-out.md)."),
    replicas: int = typer.Option(2, "--replicas", help="--manifests: Triton replicas (KServe: minReplicas)."),
    storage_uri: str = typer.Option("s3://CHANGE-ME/janus-triton-repository", "--storage-uri", help="--manifests: where the repository will be copied (KServe storageUri)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON (repository, platform, model counts, manifests)."),
) -> None:
    """Write a Triton model repository for the plan's cloud half: per-segment models, codec decode steps, per-(level, split) ensembles named like `janus-deploy serve`'s models."""
    from janus_deploy.plan.manifest import Manifest
    from janus_deploy.triton.repository import ExportOptions, export_repository

    opts = ExportOptions(platform=platform, codec=codec, codecs=tuple(c.strip() for c in codecs.split(",") if c.strip()),
                         max_batch=max_batch, dynamic=not no_dynamic_batching,
                         preferred=_ints(preferred_batch, "--preferred-batch"), max_queue_delay_us=max_queue_delay_us,
                         instances=instances, kind=kind, threads=threads, weights=weights,
                         tails=tuple(t.strip() for t in tails.split(",") if t.strip()), fuse=fuse)
    repo = export_repository(Manifest.load(plan), engines, out, opts, force=force)
    say = err_console if as_json else console
    say.print(f"[green]wrote[/] {repo.path}: {len(repo.segments)} segment models, {len(repo.decoders)} decode steps, "
                  f"{len(repo.tails)} ensembles, probe; platform {repo.platform}, "
                  f"instances {opts.instances} × {repo.options['kind']}")
    if manifests is not None:
        from janus_deploy.triton.deploy import DeployOptions, write

        if replicas < 1:
            raise JanusError(f"--replicas must be >= 1, got {replicas}")
        paths = write(manifests, DeployOptions(replicas=replicas, max_replicas=max(replicas, 8), platform=repo.platform,
                                               gpu=repo.options["kind"] == "KIND_GPU", storage_uri=storage_uri))
        say.print(f"[green]wrote[/] {', '.join(str(p) for p in paths)}")
    if repo.platform == "python":
        say.print(f"serve it here: janus-deploy serve {plan} --engines {engines} --engine triton --repository {out}")
    else:
        say.print(f"serve it: tritonserver --model-repository {out} (docs/scale-out.md)")
    if as_json:
        print_json({"repository": str(repo.path), "platform": repo.platform, "segments": len(repo.segments),
                    "decoders": len(repo.decoders), "ensembles": len(repo.tails), "kind": repo.options["kind"],
                    "instances": opts.instances, "manifests": [str(p) for p in paths] if manifests is not None else []})


def register(app: typer.Typer) -> None:
    app.command("export-triton")(export_triton)
