"""int8 by explicit quantization: Q/DQ segment graphs calibrated per level, and their accuracy.

TensorRT 10 deprecates and 11 removes the implicit-quantization calibrators and the INT8 builder
flag; int8 is expressed in the graph itself, as QuantizeLinear/DequantizeLinear (Q/DQ) pairs,
and built as a strongly typed network ("Use explicit quantization with Strong Typing.
Precision-control build flags are not required and should not be specified", TensorRT's
Explicit Quantization page, docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
quantized-types-explicit-quantization.html). The same Q/DQ graphs run in ONNX Runtime on the CPU,
which is how their accuracy is measured here.

* Calibration: the plan's fp32 chain of each level runs on the calibration frames; segment s of
  level L is calibrated on the inputs it really receives at level L (tokens already merged by the
  earlier segments), so every level gets its own scales.
* Quantization: ONNX Runtime's ``quantize_static`` in QDQ format, MinMax, **signed int8 with zero
  points of 0** for activations and weights (TensorRT's Q/DQ scheme is symmetric: "The zero_point
  must only contain zero-valued coefficients", operators/docs/Quantize.html; ORT's default
  activation type, uint8 with a zero point, would not parse), weights per channel, activations
  per tensor, biases left in float (an int32 bias behind a DequantizeLinear does not parse
  either). Only the weight-bearing MatMul/Gemm/Conv are quantized (the nodes whose second input
  is an initializer, the same set the fp16 rewrite casts): attention products, LayerNorm,
  Softmax and the token-merging arithmetic (matching cosines, TopK keys, gathers) stay fp32, so
  merging picks the same tokens as in fp32 unless the block's own inputs moved.
* Accuracy: held-out frames (every 4th calibration image, never used for the scales) through the
  Q/DQ chain and the fp32 chain of each level: top-1 agreement and cosine of the logits, recorded
  in ``engines.json`` (``int8_accuracy``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from janus_deploy.backends.base import EngineError
from janus_deploy.backends.ort import OrtRunner
from janus_deploy.backends.ort_session import session_options
from janus_deploy.plan.integrity import read_verified
from janus_deploy.plan.manifest import GraphEntry, Manifest, TensorSpec

QDQ_FILE = "qdq.json"
#: ops whose weight input is quantized (the others stay fp32)
QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")
#: every n-th calibration image is held out to measure accuracy
HOLDOUT_EVERY = 4
DEFAULT_IMAGES = 64
#: bumped whenever quantize_graph's options change (graphs of another scheme are quantized again)
SCHEME = "int8-sym-perchannel-w-dedicated-nobias-1"
CALIB_BATCH = 8


def calibration_frames(manifest: Manifest, folder: str | Path, limit: int = DEFAULT_IMAGES) -> np.ndarray:
    """Up to ``limit`` images of ``folder`` (any layout below it), normalised for the plan's model."""
    from janus_deploy.images import ImageError, list_images, load_frame, normalize

    if limit < 2:
        raise EngineError(f"int8 calibration needs at least 2 images (calibration and held-out), got a limit of {limit}")
    try:
        files = list_images(folder)[:limit]
    except ImageError as exc:
        raise EngineError(f"--calibration {folder}: {exc}") from exc
    if len(files) < 2:
        raise EngineError(f"--calibration {folder} holds {len(files)} image; int8 needs at least 2 "
                          "(some calibrate the scales, the rest measure accuracy); give a folder of the deployment's images")
    info = manifest.model_info
    frames = np.stack([load_frame(p, info.img_size) for p, _ in files])
    return normalize(frames, info.mean, info.std)


def split(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held-out): every HOLDOUT_EVERY-th frame is held out (at least one)."""
    held = np.zeros(len(frames), bool)
    held[HOLDOUT_EVERY - 1::HOLDOUT_EVERY] = True
    if not held.any():
        held[-1] = True
    return frames[~held], frames[held]


def quantized_nodes(model) -> list[str]:
    """Names of the weight-bearing MatMul/Gemm/Conv nodes (their second input is an initializer).
    Unnamed nodes get unique names first (in place): the exporter leaves them empty, and
    ``nodes_to_quantize=[""]`` would select every unnamed node, attention products included."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and n.input[1] in inits]


class _Feeds:
    """A CalibrationDataReader over prepared feed dicts (ORT's reader protocol: get_next, rewind)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds, self.i = feeds, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def quantize_graph(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Write the Q/DQ version of ``src`` (an fp32 graph, external weights allowed) to ``dst``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(src))  # resolves weights.bin beside the graph
    nodes = quantized_nodes(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not nodes:  # nothing weight-bearing (cannot happen for a ViT segment, but stay exact)
        onnx.save(model, str(dst))
        return
    tmp = dst.with_suffix(".partial.onnx")
    with _quiet_root_logger():  # ORT logs "consider pre-processing" at WARNING for every graph
        quantize_static(
            model, str(tmp), _Feeds(feeds), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_quantize=nodes,
            calibrate_method=CalibrationMethod.MinMax,
            # biases stay float: ORT would store Conv/Gemm biases as int32 behind a DequantizeLinear,
            # and TensorRT dequantizes int8 (fp8, int4) only (onnx-tensorrt docs/operators.md)
            # DedicatedQDQPair: a tensor read by a quantized MatMul and by fp32 ops (LayerNorm's
            # output, the residual stream) keeps its fp32 value for the latter; outputs of the
            # quantized ops are not quantized (only their inputs are)
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                           "DedicatedQDQPair": True, "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)},
        )
    tmp.replace(dst)


class _quiet_root_logger:
    """Raise the root logger to ERROR for the duration (ORT's quantizer warns on the root logger)."""

    def __enter__(self) -> None:
        import logging

        self.logger = logging.getLogger()
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def _batches(x: np.ndarray, n: int) -> list[np.ndarray]:
    return [x[i:i + n] for i in range(0, len(x), n)]


def _feed(sess_inputs: Sequence[str], specs: Sequence[TensorSpec], values: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    wanted = set(sess_inputs)
    return {s.name: v for s, v in zip(specs, values) if s.name in wanted}


def _frames_hash(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames, np.float32).tobytes()).hexdigest()


def graph_path(out_dir: Path, seg_file: str) -> Path:
    return out_dir / "graphs" / (Path(seg_file).stem + "_int8.onnx")


def quantize_plan(
    manifest: Manifest,
    out_dir: Path,
    frames: np.ndarray,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Q/DQ graphs of every (level, segment) in ``out_dir/graphs``, calibrated per level on the
    calibration part of ``frames``, and their accuracy per level on the held-out part.

    Resumable: ``graphs/qdq.json`` records each finished graph's sha256 with the plan hash and the
    calibration frames' hash; a rerun with the same plan and frames reuses those graphs.
    Returns ``{"graphs": {(level, segment): Path}, "accuracy": [...], ...}``.
    """
    import onnx
    import onnxruntime as ort

    calib, held = split(frames)
    stamp = {"plan_hash": manifest.hash, "frames_sha256": _frames_hash(frames), "holdout_every": HOLDOUT_EVERY,
             "ops": list(QUANTIZED_OPS), "scheme": SCHEME, "onnxruntime_version": ort.__version__}
    record_path = out_dir / "graphs" / QDQ_FILE
    try:
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    except ValueError:
        record = {}
    done = record.get("graphs", {}) if record.get("stamp") == stamp else {}
    ref = OrtRunner(manifest)
    jobs = [(lv.index, si) for lv in manifest.plan_levels for si in range(lv.num_segments)]
    graphs: dict[tuple[int, int], Path] = {}
    t0, n = time.perf_counter(), 0
    for lv in manifest.plan_levels:
        li = lv.index
        values = [[b] for b in _batches(calib, CALIB_BATCH)]  # fp32 inputs of segment si at this level
        for si, seg in enumerate(lv.segments):
            dst = graph_path(out_dir, seg.file)
            prev = done.get(dst.name)
            if not (prev and dst.is_file() and hashlib.sha256(dst.read_bytes()).hexdigest() == prev):
                ref.load(li, si)  # checks the graph (and weights.bin) against the plan's sha256 first
                src = manifest.path(seg.file)
                names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]
                feeds = [_feed(names, seg.inputs, v) for v in values]
                quantize_graph(src, dst, feeds)
                done[dst.name] = hashlib.sha256(dst.read_bytes()).hexdigest()
                record_path.write_text(json.dumps({"stamp": stamp, "graphs": done}))
            graphs[(li, si)] = dst
            values = [ref.run_segment(li, si, v) for v in values]
            n += 1
            if progress:
                progress(n, len(jobs))
    accuracy = measure(manifest, graphs, held, ref)
    return {"graphs": graphs, "accuracy": accuracy, "calibration_images": int(len(calib)),
            "heldout_images": int(len(held)), "frames_sha256": stamp["frames_sha256"],
            "quantize_seconds": round(time.perf_counter() - t0, 3)}


def measure(manifest: Manifest, graphs: dict[tuple[int, int], Path], frames: np.ndarray, ref=None) -> list[dict[str, Any]]:
    """Per level: the Q/DQ chain (ONNX Runtime, CPU) against the plan's fp32 chain on ``frames``:
    top-1 agreement and the minimum / mean cosine of the logits."""
    import onnxruntime as ort

    ref = ref or OrtRunner(manifest)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    out = []
    for lv in manifest.plan_levels:
        li = lv.index
        q: list[np.ndarray] = [frames]
        f: list[np.ndarray] = [frames]
        for si, seg in enumerate(lv.segments):
            sess = ort.InferenceSession(str(graphs[(li, si)]), so, providers=["CPUExecutionProvider"])
            q = sess.run(None, _feed([i.name for i in sess.get_inputs()], seg.inputs, q))
            f = ref.run_segment(li, si, f)
        a, b = q[0].reshape(len(frames), -1), f[0].reshape(len(frames), -1)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        out.append({"level": li, "alpha": lv.alpha, "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
                    "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "images": int(len(frames))})
    return out


# -- the ort backend's int8 engines: the same Q/DQ graphs in ONNX Runtime ----------------------------
def build_ort(
    manifest: Manifest,
    out_dir: Path,
    *,
    calibration: str | Path | None,
    calibration_images: int = DEFAULT_IMAGES,
    device: str = "cpu",
    device_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """``build-engines --backend ort --precision int8``: the Q/DQ graphs TensorRT would build,
    written to ``out_dir/graphs`` and run by ONNX Runtime (CPU or CUDA); ``engines.json`` lists
    them with their sha256 and the accuracy per level."""
    import onnxruntime as ort

    from janus_deploy.backends.base import write_engines_file
    from janus_deploy.backends.ort import resolve_provider

    if calibration is None:
        raise EngineError("int8 engines need calibration images: give --calibration DIR (a folder of the "
                          "deployment's images; every 4th one is held out to measure accuracy)")
    provider = resolve_provider(device)
    frames = calibration_frames(manifest, calibration, calibration_images)
    t0 = time.perf_counter()
    quant = quantize_plan(manifest, out_dir, frames, progress=progress)
    engines = [{"level": li, "segment": si, "file": str(path.relative_to(out_dir)),
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
               for (li, si), path in sorted(quant["graphs"].items())]
    data = {
        "backend": "ort", "plan_hash": manifest.hash,
        "plan_dir": str(manifest.dir.resolve()) if manifest.dir else None,
        "precision": "int8", "device": device, "provider": provider, "device_name": device_name,
        "onnxruntime_version": ort.__version__,
        "session": {"graph_optimization_level": "ORT_ENABLE_ALL", "share_weights": False,
                    "disable_prepacking": False, "graphs": "level"},
        "build_seconds": round(time.perf_counter() - t0, 3), "engines": engines,
        "int8_accuracy": quant["accuracy"],
        "calibration": {"folder": str(calibration), "calibration_images": quant["calibration_images"],
                        "heldout_images": quant["heldout_images"], "frames_sha256": quant["frames_sha256"],
                        "method": "ORT quantize_static QDQ MinMax, symmetric int8, weights per channel"},
    }
    write_engines_file(out_dir, data)
    QdqOrtRunner(manifest, out_dir, data, provider=provider).check_files()
    return data


class QdqOrtRunner(OrtRunner):
    """An OrtRunner whose (level, segment) graphs are the engine folder's Q/DQ graphs (weights
    inline, int8), each checked against its sha256 in ``engines.json`` before first use."""

    def __init__(self, manifest: Manifest, engine_dir: str | Path, meta: dict[str, Any], **kw: Any) -> None:
        # the Q/DQ graphs hold their own (int8) weights: nothing to share from weights.bin
        super().__init__(manifest, graphs="level", share_weights=False, disable_prepacking=False, **kw)
        self.engine_dir = Path(engine_dir)
        self._qdq = {(e["level"], e["segment"]): e for e in meta["engines"]}

    def _route(self, level: int, segment: int):
        route = self._routes.get((level, segment))
        if route is None:
            e = self._qdq.get((level, segment))
            if e is None:
                raise EngineError(f"{self.engine_dir / 'engines.json'} lists no int8 graph for level {level} "
                                  f"segment {segment}; rebuild the engines")
            seg = self.manifest.plan_level(level).segments[segment]
            route = ((level, segment), replace(seg, file=str(e["file"]), sha256=str(e["sha256"])), ())
            self._routes[(level, segment)] = route
        return route

    def _graph_bytes(self, entry: GraphEntry) -> bytes:
        return read_verified(self.engine_dir / entry.file, str(entry.sha256), str(self.engine_dir / "engines.json"),
                             "rebuild the engines with `janus-deploy build-engines --precision int8`", self.checks)

    def _options(self, model_bytes: bytes):
        import onnxruntime as ort

        opts = session_options(ort, self.threads, prepacking=True)  # private int8 weights: prepack them
        opts.enable_cpu_mem_arena = True
        return opts

    def check_files(self, progress: Callable[[int, int], None] | None = None) -> None:
        entries = self.graph_entries()
        for i, entry in enumerate(entries, 1):
            self._graph_bytes(entry)
            if progress:
                progress(i, len(entries))

    def run_unsplit(self, level: int, image: np.ndarray) -> np.ndarray:
        out: list[np.ndarray] = [image]
        for j in range(self.manifest.plan_level(level).num_segments):
            out = self.run_segment(level, j, out)
        return out[0]
