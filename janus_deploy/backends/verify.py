"""`verify`: a plan's files are intact, and every level's segment chain (in a backend) equals the
PyTorch pruned model and the level's unsplit graph.

Reference inputs/outputs per segment can be saved as Polygraphy JSON, so
``polygraphy run L00_S01.onnx --onnxrt --load-inputs L00_S01.inputs.json --load-outputs
L00_S01.outputs.json`` reproduces a check outside janus-deploy.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from janus_deploy import levels
from janus_deploy.backends.base import Runner, read_engines_file, run_segments
from janus_deploy.model.load import ModelSpec, create_from_spec, file_sha256
from janus_deploy.model.pruned import PrunedViT, build_segments
from janus_deploy.plan.manifest import Manifest, PlanError, PlanLevel


@dataclass
class LevelReport:
    index: int
    policy: str
    alpha: float
    max_abs_vs_torch: float
    cosine_vs_torch: float
    top1_vs_torch: float
    max_abs_vs_unsplit: float
    top1_vs_unsplit: float
    ok: bool


@dataclass(frozen=True)
class Tolerance:
    max_abs: float = 1e-3
    min_cosine: float = 0.9999
    min_top1: float = 1.0

    @classmethod
    def for_precision(cls, precision: str) -> Tolerance:
        if precision == "fp16":
            return cls(max_abs=float("inf"), min_cosine=0.999, min_top1=0.9)
        if precision == "int8":
            return cls(max_abs=float("inf"), min_cosine=0.99, min_top1=0.8)
        return cls()


def check_files(manifest: Manifest) -> list[str]:
    """Problems with the plan's files: missing, or changed since export (sha256)."""
    problems = []
    for file, sha in manifest.files_sha256:
        path = manifest.path(file)
        if not path.is_file():
            problems.append(f"{file} is missing")
        elif file_sha256(path) != sha:
            problems.append(f"{file} was modified after export (sha256 mismatch)")
    return problems


def check_engines(manifest: Manifest, engine_dir: str | Path) -> list[str]:
    """Problems with an engine directory's ``engines.json``: an entry whose sha256 is not the
    plan's (ort: the plan's graphs are the engines) or not its file's, a listed file missing."""
    engine_dir = Path(engine_dir)
    data = read_engines_file(engine_dir, manifest)
    where = engine_dir / "engines.json"
    problems = []
    root = engine_dir
    plan_sha: dict[str, str] = {}
    if data.get("backend") == "ort" and data.get("precision") != "int8":  # int8: Q/DQ graphs in engine_dir
        from janus_deploy.backends.ort import index_problems

        problems += [f"{where}: {p}" for p in index_problems(manifest, data)]
        root = manifest.dir or root
        plan_sha = manifest.graph_sha256
    for e in data.get("engines") or []:
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or not isinstance(e.get("sha256"), str):
            continue  # reported above (ort) or below
        if plan_sha and plan_sha.get(e["file"]) != e["sha256"]:
            continue  # an ort entry that disagrees with the plan: reported above
        path = root / e["file"]
        if not path.is_file():
            problems.append(f"{path} (listed in {where}) is missing")
        elif file_sha256(path) != e["sha256"]:
            problems.append(f"{path} does not match its sha256 in {where}")
    if data.get("backend") != "ort":
        bad = sum(1 for e in data.get("engines") or []
                  if not isinstance(e, dict) or not isinstance(e.get("file"), str) or not isinstance(e.get("sha256"), str))
        if bad:
            problems.append(f"{where}: {bad} entries lack a file name or a sha256")
    return problems


def resolve_checkpoint(manifest: Manifest) -> Path | None:
    """The plan's checkpoint: the path as recorded (relative to the working directory), else
    relative to the plan directory or its parents; its sha256 must match the export's."""
    ckpt = manifest.model_info.checkpoint
    if not ckpt:
        return None
    path = Path(ckpt)
    if not path.is_file() and not path.is_absolute() and manifest.dir is not None:
        for base in (manifest.dir, *manifest.dir.resolve().parents):
            if (base / ckpt).is_file():
                path = base / ckpt
                break
    if not path.is_file():
        raise PlanError(f"the plan's checkpoint {ckpt} was not found (looked relative to the working directory "
                        f"and to the plan {manifest.dir}); run from where the plan was exported")
    want = manifest.model_info.checkpoint_sha256
    if want and file_sha256(path) != want:
        raise PlanError(f"checkpoint {path} changed since the plan was exported (sha256 differs); re-export the plan")
    return path


def model_for(manifest: Manifest) -> torch.nn.Module:
    """The PyTorch model a plan was exported from, with the exact weights the export used."""
    m = manifest.model_info
    path = resolve_checkpoint(manifest)
    spec = ModelSpec(m.name, dict(m.overrides), str(path) if path else None)
    return create_from_spec(spec, m.init_seed or 0)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    return float(cos.min())


def verify_plan(
    manifest: Manifest,
    runner: Runner,
    images: np.ndarray,
    *,
    tolerance: Tolerance = Tolerance(),
    save_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[LevelReport]:
    """Compare every level's chain in ``runner`` with PyTorch and with the unsplit graph.

    ``images`` are normalised float32 [B, 3, H, W]. Raises :class:`PlanError` if files changed.
    """
    return verify_runners(manifest, [runner], images, tolerance=tolerance, save_dir=save_dir, progress=progress)[0]


def verify_runners(
    manifest: Manifest,
    runners: list[Runner],
    images: np.ndarray,
    *,
    tolerance: Tolerance = Tolerance(),
    save_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[LevelReport]]:
    """``verify_plan`` for several runners of one plan (e.g. both ORT graph families): the file
    check, the PyTorch model and its per-level references are computed once for all of them.
    ``progress(done, total)`` counts (runner, level) pairs."""
    problems = check_files(manifest)
    if problems:
        raise PlanError("plan failed its integrity check: " + "; ".join(problems) + ". Re-run `janus-deploy export`")
    model = model_for(manifest)
    info = manifest.model_info
    x = torch.from_numpy(images)
    reports: list[list[LevelReport]] = [[] for _ in runners]
    total = len(runners) * len(manifest.plan_levels)
    for lv in manifest.plan_levels:
        li = lv.index
        sched = levels.schedule(lv.policy, lv.alpha, info.num_tokens, info.num_blocks, info.num_prefix_tokens)
        with torch.no_grad():
            ref = PrunedViT(model, sched)(x).numpy()
        for ri, runner in enumerate(runners):
            reports[ri].append(_compare(runner, li, lv, images, ref, tolerance))
            if progress:
                progress(li * len(runners) + ri + 1, total)
        if save_dir is not None:
            save_polygraphy_references(manifest, model, sched, li, x[:1], save_dir)
    return reports


def _compare(runner: Runner, li: int, lv: PlanLevel, images: np.ndarray, ref: np.ndarray,
             tolerance: Tolerance) -> LevelReport:
    chain = run_segments(runner, li, 0, lv.num_segments, [images])[0]
    unsplit = runner.run_unsplit(li, images)
    rep = LevelReport(
        index=li, policy=lv.policy, alpha=lv.alpha,
        max_abs_vs_torch=float(np.abs(chain - ref).max()),
        cosine_vs_torch=_cosine(chain, ref),
        top1_vs_torch=float((chain.argmax(1) == ref.argmax(1)).mean()),
        max_abs_vs_unsplit=float(np.abs(chain - unsplit).max()),
        top1_vs_unsplit=float((chain.argmax(1) == unsplit.argmax(1)).mean()),
        ok=False,
    )
    rep.ok = (rep.max_abs_vs_torch <= tolerance.max_abs and rep.cosine_vs_torch >= tolerance.min_cosine
              and rep.top1_vs_torch >= tolerance.min_top1 and rep.top1_vs_unsplit >= tolerance.min_top1)
    return rep


def reports_to_dicts(reports: list[LevelReport]) -> list[dict[str, Any]]:
    return [asdict(r) for r in reports]


# -- Polygraphy JSON ---------------------------------------------------------------------------
def _pg_array(a: np.ndarray) -> dict[str, str]:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return {"array": base64.b64encode(buf.getvalue()).decode(), "polygraphy_class": "ndarray"}


def write_polygraphy_inputs(path: Path, feed: dict[str, np.ndarray]) -> None:
    """A Polygraphy ``--load-inputs`` file: a list of feed dicts."""
    path.write_text(json.dumps([{k: _pg_array(v) for k, v in feed.items()}], indent=1))


def write_polygraphy_outputs(path: Path, outputs: dict[str, np.ndarray], runner_name: str = "pytorch") -> None:
    """A Polygraphy ``--load-outputs`` file (RunResults with one iteration)."""
    iteration = {
        "outputs": {k: {"values": _pg_array(v), "polygraphy_class": "LazyArray"} for k, v in outputs.items()},
        "runtime": None, "runner_name": runner_name, "polygraphy_class": "IterationResult",
    }
    data = {"lst": [[runner_name, [iteration]]], "polygraphy_class": "RunResults"}
    path.write_text(json.dumps(data, indent=1))


def save_polygraphy_references(manifest: Manifest, model, sched, level: int, image: torch.Tensor, out_dir: Path) -> None:
    """PyTorch reference inputs/outputs of every segment of a level (batch 1)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lv = manifest.plan_level(level)
    args: tuple[torch.Tensor, ...] = (image,)
    for seg, entry in zip(build_segments(model, sched, manifest.candidates), lv.segments):
        with torch.no_grad():
            res = seg(*args)
        res = res if isinstance(res, tuple) else (res,)
        stem = Path(entry.file).stem
        feed = {name: a.numpy() for name, a in zip(entry.input_names, args)}
        import onnx

        used = {i.name for i in onnx.load(str(manifest.path(entry.file)), load_external_data=False).graph.input}
        write_polygraphy_inputs(out_dir / f"{stem}.inputs.json", {k: v for k, v in feed.items() if k in used})
        write_polygraphy_outputs(out_dir / f"{stem}.outputs.json",
                                 {name: a.numpy() for name, a in zip(entry.output_names, res)})
        args = res
