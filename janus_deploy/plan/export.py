"""Export a pruned, sliced timm ViT into a plan: per-level segment graphs + unsplit graph, one
shared weight file, and ``manifest.json``. Resumable: graphs whose inputs did not change are kept.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from janus_deploy import __version__, levels
from janus_deploy.model.load import ModelSpec, create_from_spec, file_sha256, model_info
from janus_deploy.model.merge import GRAPH_REVISION
from janus_deploy.model.pruned import LevelFreeSegment, Segment, build_level_free_segments, build_segments
from janus_deploy.plan.manifest import FORMAT_VERSION, KIND, MANIFEST_FILE, Manifest, PlanError
from janus_deploy.plan.weights import INDEX_FILE, WEIGHTS_FILE, SharedWeights
from janus_deploy.wire.codecs import payload_bytes

DEFAULT_OPSET = 17
DEFAULT_LEVELS = 8
INIT_SEED = 0  # models without a checkpoint are initialised deterministically
STATE_FILE = "export-progress.json"  # graphs done so far; removed when the manifest is written


@dataclass(frozen=True)
class ExportConfig:
    k: int = 3
    policy: str = "exponential"
    levels: int | None = None
    step: float | None = None
    baseline_r: int | None = None  # extra constant-policy level (ToMe's r) for the baselines
    opset: int = DEFAULT_OPSET

    def __post_init__(self) -> None:
        """Everything that can be checked before a model is built is checked here (a wrong
        ``levels=0`` fails at once, not after the model is created)."""
        if self.opset < 17:
            raise PlanError(f"opset {self.opset} is too old; use 17 or newer")
        levels.check_plan_args(self.policy, self.k, step=self.step, levels=self.levels,
                               baseline_r=self.baseline_r)
        if self.levels is None and self.step is None:
            object.__setattr__(self, "levels", DEFAULT_LEVELS)

    def level_list(self, x0: int, n: int) -> list[tuple[str, float]]:
        grid = levels.level_grid(x0, n, self.policy, step=self.step, levels=self.levels)
        out = [(self.policy, a) for a in grid]
        if self.baseline_r is not None:
            amax = int(levels.alpha_max(x0, n, "constant"))
            if self.baseline_r > amax:
                raise levels.PolicyError(
                    f"baseline r {self.baseline_r} merges more tokens than the model has ({x0} tokens, "
                    f"{n} blocks: r <= {amax}); pick a smaller baseline r")
            out.append(("constant", float(self.baseline_r)))
        return out


def _io(name: str, shape: Sequence[int | str], dtype: str = "float32") -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "dtype": dtype}


def segment_io(seg: Segment | LevelFreeSegment, info) -> tuple[list, list]:
    """Names, shapes and dtypes of a segment's graph inputs and outputs (batch dynamic). Token
    counts are the segment's: numbers for a level's ``Segment``, symbolic names for a
    ``LevelFreeSegment``, whose blocks' reductions come last among its inputs."""
    d, tokens_in, tokens_out = info.embed_dim, seg.in_tokens, seg.out_tokens
    if seg.first:
        ins = [_io("image", ["batch", 3, info.img_size, info.img_size])]
    else:
        ins = [_io("tokens", ["batch", tokens_in, d]), _io("size", ["batch", tokens_in, 1])]
    if seg.takes_reductions:
        ins.append(_io("reductions", [seg.num_blocks], "int64"))
    if seg.last:
        outs = [_io("logits", ["batch", info.num_classes])]
    else:
        outs = [_io("tokens_out", ["batch", tokens_out, d]), _io("size_out", ["batch", tokens_out, 1])]
    return ins, outs


def _set_shapes(model: onnx.ModelProto, ios: list[dict[str, Any]], values) -> None:
    by_name = {io_["name"]: io_ for io_ in ios}
    for vi in values:
        spec = by_name.get(vi.name)
        if spec is None:
            continue
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for d in spec["shape"]:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


def _compact_names(graph: onnx.GraphProto) -> None:
    """Short names for intermediate values and nodes: the exporter's scope paths are most of a
    small graph's bytes, and every level repeats them."""
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {i.name for i in graph.initializer}
    rename: dict[str, str] = {}
    for node in graph.node:
        node.name = ""
        for i, name in enumerate(node.output):
            if name and name not in keep:
                rename.setdefault(name, f"v{len(rename)}")
                node.output[i] = rename[name]
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.value_info[:]


def export_graph(module: torch.nn.Module, args: tuple[torch.Tensor, ...], ins, outs, opset: int) -> onnx.ModelProto:
    """Trace one segment with the TorchScript exporter (fast). Dimensions named in ``ins`` /
    ``outs`` (batch; token counts of level-free graphs) stay symbolic, the rest are static."""
    buf = io.BytesIO()
    in_names = [i["name"] for i in ins]
    out_names = [o["name"] for o in outs]
    dynamic = {io_["name"]: {i: d for i, d in enumerate(io_["shape"]) if isinstance(d, str)} for io_ in ins + outs}
    dynamic = {k: v for k, v in dynamic.items() if v}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, buf, dynamo=False, opset_version=opset, input_names=in_names,
            output_names=out_names, dynamic_axes=dynamic, do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    _compact_names(model.graph)
    _set_shapes(model, ins, model.graph.input)
    _set_shapes(model, outs, model.graph.output)
    return model


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def payloads(info, tokens: Sequence[int], candidates: Sequence[int]) -> dict[str, Any]:
    """What crosses the network at every split point (shapes and bytes per dtype)."""
    n, d = info.num_blocks, info.embed_dim
    out: dict[str, Any] = {}
    for s in candidates:
        if s == 0:
            frame = 3 * info.img_size * info.img_size
            out["0"] = {"tensors": [_io("frame", [info.img_size, info.img_size, 3], "uint8")],
                        "elements": frame, "bytes": {"uint8": frame}}
        elif s == n + 1:
            out[str(s)] = {"tensors": [], "elements": 0, "bytes": {"float32": 0, "float16": 0}}
        else:
            x = tokens[s]
            out[str(s)] = {
                "tensors": [_io("tokens", [x, d]), _io("size", [x, 1])],
                "elements": x * (d + 1),
                "bytes": {"float32": payload_bytes(x, d, "fp32"), "float16": payload_bytes(x, d, "fp16")},
            }
    return out


ProgressFn = Callable[[str, int, int], None]


def check_out_dir(out_dir: str | Path) -> None:
    """Refuse a plan folder that cannot be one (an existing file, or a file on its path); cheap,
    so it runs before anything is loaded."""
    out_dir = Path(out_dir)
    for p in (out_dir, *out_dir.parents):
        if p.exists():
            if not p.is_dir():
                what = "is an existing file" if p == out_dir else f"is inside {p}, an existing file"
                raise PlanError(f"the plan folder {out_dir} {what}; give a new folder path (e.g. plans/{out_dir.stem or 'vit'})")
            break


_PLAN_FILES = (MANIFEST_FILE, STATE_FILE, WEIGHTS_FILE, INDEX_FILE)


def _is_plan_file(name: str) -> bool:
    return name in _PLAN_FILES or (name.endswith(".onnx") and (name.startswith("L") or name.startswith("G_S")))


def check_replace(out_dir: str | Path, spec: ModelSpec, checkpoint_sha256: str | None = None, *,
                  force: bool = False) -> None:
    """Refuse to export into a folder holding another model's plan (same name, overrides and
    checkpoint = the same model, whose unchanged graphs are reused), or into a folder of other
    files, unless ``force``. Hidden entries (``.DS_Store``) do not count."""
    out_dir = Path(out_dir)
    if force or not out_dir.is_dir():
        return
    entries = sorted(p.name for p in out_dir.iterdir() if not p.name.startswith("."))
    if not entries:
        return
    mine = _describe(spec.name, spec.overrides)
    if (out_dir / MANIFEST_FILE).is_file():
        try:
            prev = json.loads((out_dir / MANIFEST_FILE).read_text())["model"]
            prev_name, prev_over = prev["name"], prev.get("overrides") or {}
            prev_sha = prev.get("checkpoint_sha256")
        except (OSError, ValueError, KeyError, TypeError):
            raise PlanError(f"the folder {out_dir} holds a damaged plan manifest; choose another folder, or pass --force to "
                            "replace it") from None
        if (prev_name, prev_over, prev_sha) != (spec.name, dict(spec.overrides), checkpoint_sha256):
            theirs = _describe(prev_name, prev_over) + (" with a checkpoint" if prev_sha else "")
            ours = mine + (" with a checkpoint" if checkpoint_sha256 else "")
            if theirs == ours:  # same name and overrides, another checkpoint
                theirs, ours = f"{theirs} {str(prev_sha)[:12]}", f"{ours} {str(checkpoint_sha256)[:12]}"
            raise PlanError(f"the folder {out_dir} holds the plan of another model ({theirs}); exporting {ours} "
                            "would replace it: choose another folder, or pass --force to replace it")
        return
    foreign = [n for n in entries if not _is_plan_file(n)]
    if foreign:
        raise PlanError(f"the folder {out_dir} is not empty and holds no plan ({len(entries)} "
                        f"entr{'y' if len(entries) == 1 else 'ies'}, e.g. {foreign[0]}); "
                        "choose a new or empty folder, or pass --force to write the plan into it")


def _describe(name: str, overrides: dict[str, Any]) -> str:
    return name + (" " + " ".join(f"{k}={v}" for k, v in overrides.items()) if overrides else "")


def export_plan(
    spec: ModelSpec,
    out_dir: str | Path,
    config: ExportConfig,
    *,
    progress: ProgressFn | None = None,
    force: bool = False,
) -> tuple[Manifest, dict[str, Any]]:
    """Export ``spec`` pruned at the configured levels and sliced at the candidate split points.

    Returns the manifest and export statistics (graphs exported/reused, seconds per graph).
    ``progress(description, done, total)`` is called after every graph. A folder holding another
    model's plan (or other files) is refused unless ``force`` (:func:`check_replace`). Every check
    runs before the folder is created, and a folder this call created is removed again when the
    export fails before writing anything into it.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    model = create_from_spec(spec, INIT_SEED)
    info = model_info(model)
    ckpt_sha = file_sha256(spec.checkpoint) if spec.checkpoint else None
    check_replace(out_dir, spec, ckpt_sha, force=force)
    candidates = levels.candidate_splits(info.num_blocks, config.k)
    ranges = levels.segment_ranges(info.num_blocks, candidates)
    level_list = config.level_list(info.num_tokens, info.num_blocks)
    created = _make_dir(out_dir)
    try:
        return _export(spec, model, info, ckpt_sha, candidates, ranges, level_list, out_dir, config, progress)
    except BaseException:
        _remove_empty(created)
        raise


def _make_dir(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` (and missing parents); the folders created, deepest first."""
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlanError(f"cannot create the plan folder {out_dir}: {exc.strerror}") from None
    return created


def _remove_empty(created: list[Path]) -> None:
    for p in created:
        try:
            p.rmdir()  # only when empty
        except OSError:
            return


def _export(spec, model, info, ckpt_sha, candidates, ranges, level_list, out_dir: Path, config: ExportConfig,
            progress: ProgressFn | None) -> tuple[Manifest, dict[str, Any]]:
    """The export itself, once every check passed and the folder exists."""
    model_key = (spec.to_dict(), ckpt_sha, INIT_SEED, config.opset, __version__, GRAPH_REVISION)
    weights_key = _key(model_key)
    state_path = out_dir / STATE_FILE
    old = _previous_entries(out_dir, state_path, weights_key)
    if not old:  # another model (or nothing) was exported here: its weights are of no use
        for stale in (WEIGHTS_FILE, INDEX_FILE):
            (out_dir / stale).unlink(missing_ok=True)
    weights = SharedWeights(out_dir)
    can_reuse = bool(weights.index)  # offsets of kept graphs are only valid in the old weight file
    image = torch.randn(1, 3, info.img_size, info.img_size, generator=torch.Generator().manual_seed(1))
    total = len(level_list) * (len(ranges) + 1) + len(ranges)
    done, exported, reused, seconds = 0, 0, 0, []
    level_rows = []
    state = {"weights_key": weights_key, "entries": {}}

    def emit(module, args, ins, outs, fname, key) -> dict[str, Any]:
        nonlocal done, exported, reused
        path = out_dir / fname
        prior = old.get(key)
        if can_reuse and prior and path.is_file() and file_sha256(path) == prior["sha256"]:
            reused += 1
            entry = prior
        else:
            t0 = time.perf_counter()
            graph = weights.externalize(export_graph(module, args, ins, outs, config.opset))
            onnx.save(graph, str(path))
            seconds.append(time.perf_counter() - t0)
            exported += 1
            entry = {"file": fname, "key": key, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                     "inputs": ins, "outputs": outs}
            # checkpoint progress so an interrupted export resumes from here
            weights.save_index()
            state["entries"][key] = entry
            state_path.write_text(json.dumps(state))
        done += 1
        if progress:
            progress(fname, done, total)
        return entry

    for li, (pol, alpha) in enumerate(level_list):
        sched = levels.schedule(pol, alpha, info.num_tokens, info.num_blocks, info.num_prefix_tokens)
        segs = build_segments(model, sched, candidates)
        seg_entries = []
        args: tuple[torch.Tensor, ...] = (image,)
        for si, seg in enumerate(segs):
            ins, outs = segment_io(seg, info)
            key = _key(model_key, pol, alpha, seg.start, seg.end, seg.first, seg.last)
            entry = emit(seg, args, ins, outs, f"L{li:02d}_S{si:02d}.onnx", key)
            seg_entries.append({"index": si, "blocks": [seg.start, seg.end], **entry})
            with torch.no_grad():
                res = seg(*args)
            args = res if isinstance(res, tuple) else (res,)
        full = Segment(model, sched, 1, info.num_blocks, first=True, last=True)
        ins, outs = segment_io(full, info)
        unsplit = emit(full, (image,), ins, outs, f"L{li:02d}_full.onnx",
                       _key(model_key, pol, alpha, "full"))
        level_rows.append({
            "index": li, "policy": pol, "alpha": alpha, "tokens": list(sched.tokens),
            "reductions": list(sched.reductions), "capped_blocks": list(sched.capped),
            "segments": seg_entries, "unsplit": unsplit,
            "payload": payloads(info, sched.tokens, candidates),
        })
    level_free = []
    example = level_rows[-1]  # any level traces the same graph (the ops do not depend on r's values)
    args = (image,)
    for si, seg in enumerate(build_level_free_segments(model, candidates)):
        ins, outs = segment_io(seg, info)
        red = torch.tensor(example["reductions"][seg.start - 1: seg.end], dtype=torch.int64)
        seg_args = args + ((red,) if seg.takes_reductions else ())
        key = _key(model_key, "level-free", seg.start, seg.end, seg.first, seg.last)
        entry = emit(seg, seg_args, ins, outs, f"G_S{si:02d}.onnx", key)
        level_free.append({"index": si, "blocks": [seg.start, seg.end], **entry})
        with torch.no_grad():
            res = seg(*seg_args)
        args = res if isinstance(res, tuple) else (res,)
    weights.save_index()

    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    data = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "janus_deploy_version": __version__,
        "model": {
            "name": spec.name, "overrides": spec.overrides,
            "checkpoint": str(spec.checkpoint) if spec.checkpoint else None,
            "checkpoint_sha256": ckpt_sha, "init_seed": None if spec.checkpoint else INIT_SEED,
            "num_blocks": info.num_blocks, "embed_dim": info.embed_dim, "num_tokens": info.num_tokens,
            "num_prefix_tokens": info.num_prefix_tokens, "img_size": info.img_size,
            "num_classes": info.num_classes, "mean": list(info.mean), "std": list(info.std),
            "weight_bytes": weight_bytes,
        },
        "policy": {"name": config.policy, "k": config.k, "step": config.step, "levels": config.levels,
                   "alpha_max": levels.alpha_max(info.num_tokens, info.num_blocks, config.policy),
                   "baseline_r": config.baseline_r},
        "opset": config.opset,
        "candidates": candidates,
        "segments": [list(r) for r in ranges],
        "weights": {"file": weights.bin.name, "bytes": weights.bin.stat().st_size,
                    "sha256": file_sha256(weights.bin)},
        "levels": level_rows,
        "level_free_segments": level_free,
    }
    data["model"]["weights_key"] = weights_key
    manifest = Manifest(data, out_dir)
    _remove_stale(manifest)
    manifest.save(out_dir)
    state_path.unlink(missing_ok=True)
    stats = {"exported": exported, "reused": reused, "seconds_per_graph": seconds}
    return manifest, stats


def _previous_entries(out_dir: Path, state_path: Path, weights_key: str) -> dict[str, dict[str, Any]]:
    """Graph entries of an earlier export of the same model into ``out_dir``: from its manifest,
    and from the progress file an interrupted export leaves behind."""
    old: dict[str, dict[str, Any]] = {}
    try:
        prev = Manifest.load(out_dir)
        if prev.model.get("weights_key") == weights_key:
            old = {entry["key"]: entry for entry in prev.graph_entries()}
    except PlanError:
        pass
    try:
        state = json.loads(state_path.read_text())
        if state.get("weights_key") == weights_key:
            old.update(state["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return old


def _remove_stale(manifest: Manifest) -> None:
    """Delete graphs of an earlier export that the new manifest no longer lists."""
    live = {e["file"] for e in manifest.graph_entries()}
    for path in [*manifest.dir.glob("L*_*.onnx"), *manifest.dir.glob("G_S*.onnx")]:
        if path.name not in live:
            path.unlink()


def plan_size_bytes(plan_dir: str | Path) -> int:
    """Bytes on disk of the plan directory (graphs, weight file, manifest)."""
    plan_dir = Path(plan_dir)
    return sum(p.stat().st_size for p in plan_dir.iterdir() if p.is_file())


__all__ = ["ExportConfig", "check_out_dir", "check_replace", "export_plan", "plan_size_bytes", "payloads", "MANIFEST_FILE"]
