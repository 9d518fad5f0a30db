"""Accuracy of every pruning level of a plan: the table the scheduler trades latency against.

The plan's model is re-created in PyTorch from the manifest's model spec (timm name, overrides,
checkpoint; or the export's init seed when there is no checkpoint), pruned with the token
schedule of each level (``PrunedViT``), and run on the given frames. For every level the table
holds top-1 accuracy against the labels (null without labels) and top-1 agreement with the
unpruned model. The file format is ``kind: "janus-deploy/accuracy"`` in ``docs/profile-format.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from janus_deploy import JanusError, read_json
from janus_deploy.images import ImageError, list_images, load_frame, normalize
from janus_deploy.levels import LevelKey
from janus_deploy.profile.schema import AccuracyDoc, validate_doc

KIND = "janus-deploy/accuracy"
FORMAT_VERSION = 1
DEFAULT_BATCH_SIZE = 32

ProgressFn = Callable[[int, int, str], None]


class AccuracyError(JanusError):
    """An accuracy table is malformed, or calibration inputs do not fit the plan."""


# -- the table file ------------------------------------------------------------------------------
def validate_accuracy(data: Any, where: str = "accuracy table") -> dict[str, Any]:
    """Check an accuracy table (a parsed JSON object): its shape with the schema
    (:class:`~janus_deploy.profile.schema.AccuracyDoc`), then one value per level and no level
    twice. Returns the table; raises :class:`AccuracyError`."""
    if not isinstance(data, dict):
        raise AccuracyError(f"{where} must be a JSON object, got {type(data).__name__}")
    if data.get("kind") != KIND:
        raise AccuracyError(f"{where} has kind {data.get('kind')!r}, expected {KIND!r} "
                            "(is this a profile or a manifest rather than an accuracy table?)")
    if data.get("format_version") != FORMAT_VERSION:
        raise AccuracyError(f"{where} has format_version {data.get('format_version')!r}; this janus-deploy "
                            f"reads {FORMAT_VERSION}; re-run `janus-deploy calibrate`")
    doc = validate_doc(AccuracyDoc, data, where, AccuracyError)
    seen: set[LevelKey] = set()
    for i, lv in enumerate(doc.levels):  # type: ignore[attr-defined]  # validate_doc is typed BaseModel; here it returns an AccuracyDoc
        at = f"{where}.levels[{i}]"
        key = LevelKey.of(lv.policy, lv.alpha)
        if key in seen:
            raise AccuracyError(f"{at} repeats level {lv.policy} {lv.alpha}")
        seen.add(key)
        if lv.accuracy is None and lv.agreement is None:
            raise AccuracyError(f"{at} has neither accuracy nor agreement")
        _check_cells(lv.codecs or {}, at)
    return data


def _check_cells(cells: dict[str, Any], at: str) -> None:
    """The codec dimension of one level: known codecs, integer splits, frame codecs at 0 only."""
    from janus_deploy.wire.codecs import CODECS, is_frame_codec

    for codec, splits in cells.items():
        if codec not in CODECS:
            raise AccuracyError(f"{at}.codecs has unknown codec {codec!r} (known: {', '.join(CODECS)})")
        for key in splits:
            if not (key.isascii() and key.isdigit()):
                raise AccuracyError(f"{at}.codecs.{codec} has a non-integer split {key!r}")
            if is_frame_codec(codec) and key != "0":
                raise AccuracyError(f"{at}.codecs.{codec}: a frame codec has a cell at split 0 only, not {key}")


def check_accuracy_for_plan(table: dict[str, Any], plan_hash: str, where: str = "accuracy table") -> None:
    """An accuracy table made for another plan describes other models: refuse it."""
    made_for = table.get("plan_hash")
    if made_for is not None and made_for != plan_hash:
        raise AccuracyError(f"{where} was made for plan {str(made_for)[:12]}, not for this plan ({plan_hash[:12]}); "
                            "run `janus-deploy calibrate` on this plan")
    if made_for is None and any(lv.get("codecs") for lv in table.get("levels", [])):
        raise AccuracyError(f"{where} has codec cells but no plan_hash: they describe engines of an unknown plan; "
                            "run `janus-deploy calibrate --codecs` on this plan")


def check_codec_cells(table: dict[str, Any], candidates: list[int], num_blocks: int, where: str = "accuracy table") -> None:
    """The codec cells' splits must be the plan's (token codecs at 1..N, frame codecs at 0)."""
    ok = {s for s in candidates if s <= num_blocks}
    for i, lv in enumerate(table.get("levels", [])):
        for codec, splits in (lv.get("codecs") or {}).items():
            bad = sorted(int(k) for k in splits if int(k) not in ok)
            if bad:
                raise AccuracyError(f"{where}.levels[{i}].codecs.{codec} has splits {bad} that are not this plan's "
                                    f"(candidates {candidates}); calibrate this plan")


def load_accuracy(path: str | Path) -> dict[str, Any]:
    """Read and validate an accuracy table written by :func:`save_accuracy`."""
    data = read_json(path, AccuracyError, "run `janus-deploy calibrate` to make an accuracy table")
    return validate_accuracy(data, str(path))


def save_accuracy(table: dict[str, Any], path: str | Path) -> Path:
    """Validate and write an accuracy table as JSON (parent folders are created)."""
    validate_accuracy(table)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1) + "\n")
    return path


# -- labelled image folders -------------------------------------------------------------------
def labelled_files(folder: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(path, class index)], class names)`` of an ImageFolder-layout folder ``DIR/<class>/*``.

    The classes are the sub-folders of ``DIR`` (empty ones included, hidden ones skipped). When
    every class name is a number (``0``, ``1``, ... ``10``) the number is the class index;
    otherwise the sorted names are numbered from 0, as torchvision's ImageFolder does. The files
    are ordered round-robin over the classes (first image of every class, then the second, ...)
    so that any prefix (``--limit``) is class-balanced. ``class names[i]`` names index ``i``
    (``""`` where no folder has that number).
    """
    items = list_images(folder, labelled=True)
    names = sorted(d.name for d in Path(folder).iterdir() if d.is_dir() and not d.name.startswith("."))
    if names and all(n.isascii() and n.isdigit() for n in names):
        index = {n: int(n) for n in names}
        classes = [""] * (max(index.values()) + 1)
        for n, i in index.items():
            classes[i] = n
    else:
        index = {n: i for i, n in enumerate(names)}
        classes = names
    by_class: dict[str, list[Path]] = {n: [] for n in names}
    for p, c in items:
        by_class[c].append(p)
    ordered: list[tuple[Path, int]] = []
    for rank in range(max(len(v) for v in by_class.values())):
        for n in names:
            if rank < len(by_class[n]):
                ordered.append((by_class[n][rank], index[n]))
    return ordered, classes


def load_labelled_folder(
    folder: str | Path, img_size: int, *, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 ``[N, img_size, img_size, 3]`` and labels int64 ``[N]`` from ``DIR/<class>/*``.

    Raises :class:`~janus_deploy.images.ImageError` for a missing or empty folder, images outside
    class sub-folders, or an unreadable image (naming the file).
    """
    files, _ = labelled_files(folder)
    if limit is not None:
        if limit < 1:
            raise ImageError(f"limit must be >= 1, got {limit}")
        files = files[:limit]
    frames = np.stack([load_frame(p, img_size) for p, _ in files])
    labels = np.asarray([c for _, c in files], dtype=np.int64)
    return frames, labels


# -- calibration --------------------------------------------------------------------------------
def _check_inputs(manifest, frames: np.ndarray, labels: np.ndarray | None) -> None:
    m = manifest.model_info
    size = m.img_size
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        raise AccuracyError(f"frames must be a uint8 array [N, H, W, 3], got "
                            f"{getattr(frames, 'shape', type(frames).__name__)}")
    if len(frames) == 0:
        raise AccuracyError("no frames to calibrate on")
    if frames.shape[1:3] != (size, size):
        raise AccuracyError(f"frames are {frames.shape[1]}x{frames.shape[2]} but the plan's model takes "
                            f"{size}x{size} (load images at the model's resolution)")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(frames),):
            raise AccuracyError(f"{labels.shape} labels for {len(frames)} frames; give one label per frame")
        ncls = m.num_classes or None  # 0: the manifest does not say
        if ncls is not None and len(labels) and (labels.min() < 0 or labels.max() >= ncls):
            raise AccuracyError(f"labels range {labels.min()}..{labels.max()} but the model has {ncls} classes "
                                "(class sub-folders are numbered by name when numeric, else in sorted order from 0)")


def calibrate(
    manifest_or_plan_dir,
    frames: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressFn | None = None,
    task: str = "custom",
) -> dict[str, Any]:
    """Accuracy table of every level of a plan on ``frames`` (uint8 ``[N, H, W, 3]`` at the
    model's resolution), with optional ``labels`` (int ``[N]``).

    ``progress(done, total, text)`` is called after every batch. Returns the table dict
    (``docs/profile-format.md``), each level also carrying its plan ``index`` and ``tokens``.
    """
    import torch

    from janus_deploy import levels
    from janus_deploy.model import PrunedViT
    from janus_deploy.plan import Manifest

    manifest = manifest_or_plan_dir if isinstance(manifest_or_plan_dir, Manifest) else Manifest.load(manifest_or_plan_dir)
    if batch_size < 1:
        raise AccuracyError(f"batch size must be >= 1, got {batch_size}")
    _check_inputs(manifest, frames, labels)
    m = manifest.model_info  # an exported manifest always carries mean and std
    x = torch.from_numpy(normalize(frames, m.mean, m.std))
    y = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    from janus_deploy.backends.verify import model_for  # torch: only when calibrating

    model = model_for(manifest)
    x0, n, prefix = m.num_tokens, m.num_blocks, m.num_prefix_tokens

    scheds = []
    for lv in manifest.plan_levels:
        s = levels.schedule(lv.policy, lv.alpha, x0, n, prefix)
        if list(s.tokens) != list(lv.tokens):
            raise AccuracyError(f"level {lv.policy} {lv.alpha}: the plan's token schedule {list(lv.tokens)} "
                                f"differs from this janus-deploy's {list(s.tokens)}; re-export the plan")
        scheds.append(s)
    # The unpruned reference: a level that removes nothing if the plan has one, else run it extra.
    ref_index = next((i for i, s in enumerate(scheds) if not any(s.reductions)), None)
    jobs = list(range(len(scheds))) if ref_index is not None else [-1, *range(len(scheds))]
    batches = math.ceil(len(x) / batch_size)
    total, done = len(jobs) * batches, 0

    preds: dict[int, torch.Tensor] = {}
    with torch.inference_mode():
        for j in jobs:
            sched = levels.schedule("exponential", 0.0, x0, n, prefix) if j < 0 else scheds[j]
            net = PrunedViT(model, sched).eval()
            label = "unpruned" if j < 0 else f"{sched.policy} {sched.level:g}"
            out = []
            for b in range(batches):
                out.append(net(x[b * batch_size : (b + 1) * batch_size]).argmax(-1))
                done += 1
                if progress:
                    progress(done, total, label)
            preds[j] = torch.cat(out)
    ref = preds[-1 if ref_index is None else ref_index]

    labels_np = None if y is None else y.numpy()
    return _table(manifest, {i: preds[i].numpy() for i in range(len(scheds))}, ref.numpy(), labels_np, task,
                  {"backend": "pytorch", "precision": "fp32"})


def _table(manifest, preds: dict[int, np.ndarray], ref: np.ndarray | None, labels: np.ndarray | None,
           task: str, measured_with: dict[str, Any]) -> dict[str, Any]:
    """The accuracy table from top-1 predictions per plan level (``ref``: the unpruned model's)."""
    y = None if labels is None else np.asarray(labels)
    rows = []
    for lv in manifest.plan_levels:
        p = preds[lv.index]
        rows.append({
            "index": lv.index,
            "policy": lv.policy,
            "alpha": lv.alpha,
            "tokens": list(lv.tokens),
            "accuracy": None if y is None else round(float((p == y).mean()), 6),
            "agreement": None if ref is None else round(float((p == ref).mean()), 6),
        })
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "plan_hash": manifest.hash,
        "task": task,
        "num_images": int(len(next(iter(preds.values())))),
        "model": manifest.model_info.name,
        "measured_with": measured_with,
        "levels": rows,
    }


# -- calibration through the plan's engines (no torch) ----------------------------------------------
def unpruned_level(manifest) -> int | None:
    """The plan index of a level that removes no token (the agreement reference), or None."""
    return next((lv.index for lv in manifest.plan_levels
                 if not any(a > b for a, b in zip(lv.tokens, lv.tokens[1:]))), None)


def engine_predictions(manifest, runner, frames: np.ndarray, level: int, batch_size: int = DEFAULT_BATCH_SIZE,
                       progress: Callable[[], None] | None = None) -> np.ndarray:
    """Top-1 of ``frames`` (uint8 ``[N, H, W, 3]``) through every segment of plan level ``level``
    on an engine runner (:func:`janus_deploy.backends.run_segments`, what a request runs);
    ``progress()`` after every batch."""
    from janus_deploy.backends import run_segments

    m = manifest.model_info
    nseg = manifest.plan_level(level).num_segments
    out = []
    for b in range(0, len(frames), batch_size):
        x = normalize(frames[b:b + batch_size], m.mean, m.std)
        out.append(np.asarray(run_segments(runner, level, 0, nseg, [x])[0]).argmax(-1))
        if progress:
            progress()
    return np.concatenate(out)


def measured_with(engine_meta: dict[str, Any], engine_dir: str | Path) -> dict[str, Any]:
    """What an engine-measured table records about its engines (from their ``engines.json``)."""
    out: dict[str, Any] = {"backend": str(engine_meta.get("backend")),
                           "precision": str(engine_meta.get("precision") or "fp32"),
                           "engines": str(engine_dir)}
    for key in ("device", "onnxruntime_version", "tensorrt_version", "gpu", "graphs"):
        if engine_meta.get(key) is not None:
            out[key] = engine_meta[key]
    return out


def calibrate_engines(
    manifest,
    engine_dir: str | Path,
    frames: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    runner: Any = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressFn | None = None,
    task: str = "custom",
    threads: int = 0,
) -> dict[str, Any]:
    """Accuracy table of every level of a plan measured through the engines in ``engine_dir``
    (``build-engines``: any backend and precision, e.g. int8 Q/DQ graphs), not the PyTorch
    model: each level's segment chain runs on the frames as a request would. The table's
    ``measured_with`` names the engines' backend and precision. ``runner``: an already loaded
    runner of those engines (else :func:`~janus_deploy.backends.load_runner`). Needs no torch."""
    from janus_deploy.backends import load_runner
    from janus_deploy.backends.base import batch_range, read_engines_file

    if batch_size < 1:
        raise AccuracyError(f"batch size must be >= 1, got {batch_size}")
    _check_inputs(manifest, frames, labels)
    meta = read_engines_file(engine_dir, manifest)  # engines of another plan: refused
    if runner is None:
        runner = load_runner(manifest, engine_dir, threads=threads)
    _, hi = batch_range(runner)
    if hi is not None:
        batch_size = min(batch_size, hi)  # TensorRT engines' optimization profile
    ref_index = unpruned_level(manifest)
    if ref_index is None and labels is None:
        raise AccuracyError("the plan has no unpruned level (the agreement reference) and there are no labels: "
                            "give labelled images, or calibrate with the PyTorch model (leave out --engines)")
    batches = math.ceil(len(frames) / batch_size)
    total, done = len(manifest.plan_levels) * batches, 0
    preds: dict[int, np.ndarray] = {}
    for lv in manifest.plan_levels:
        def step(label: str = f"{lv.policy} {lv.alpha:g}") -> None:
            nonlocal done
            done += 1
            if progress:
                progress(done, total, label)

        preds[lv.index] = engine_predictions(manifest, runner, frames, lv.index, batch_size, step)
    ref = None if ref_index is None else preds[ref_index]
    return _table(manifest, preds, ref, labels, task, measured_with(meta, engine_dir))
