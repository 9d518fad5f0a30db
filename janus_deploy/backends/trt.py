"""TensorRT 10 and 11 backend (NVIDIA GPUs and Jetson): one serialized engine per (level, segment).

TensorRT itself has never run in this project's CI: the tests use a stand-in
(``tests/trt_standin.py``) that enforces the documented rules and executes each engine's ONNX
with ONNX Runtime. See ``docs/engines.md``.

* **Versions**: TensorRT 10.x (JetPack 6.1/6.2 ship 10.3) and 11.x. Anything else is one clear line.
* **Precision comes from the graph's own types**, never from builder flags or calibrators (11.x
  removed ``BuilderFlag.FP16``/``INT8`` and the calibrators; networks are always strongly
  typed): fp32 parses the plan's graph; fp16 parses a graph rewritten by
  :func:`fp16_graph` (MatMul/Gemm/Conv weights and inputs in fp16, LayerNorm, Softmax and
  reductions kept in fp32), built as a strongly typed network on 10.x too.
* **Device memory and streams** go through NVIDIA's ``cuda-python`` (``cuda.bindings.runtime``,
  or ``cuda.cudart`` before 12.8): it has binary wheels for x86-64 and aarch64 (Jetson) and
  needs no CUDA build of torch.
* **Concurrency**: each engine has a bounded pool of execution contexts, one per concurrent
  caller, each with its own stream and reusable device buffers; a caller beyond the pool waits.
* **Shapes**: the optimization profile's batch range is recorded in ``engines.json``
  (``min_batch``/``max_batch``); a batch outside it is refused with one line, and the result of
  ``set_input_shape`` is checked (a False is an error, never a stale shape).
* **Portability**: engines are keyed by TensorRT version, compute capability and device name
  (and the hardware-compatibility level when one is asked for); a runner refuses a mismatch
  naming both sides.
* **Resumable builds**: every segment graph is checked against the plan's sha256 first; finished
  engines (file present, sha256 as recorded in ``engines.partial.json``) are skipped; the timing
  cache is saved after every engine; ``progress(done, total)`` after each (the CLI bar shows the
  time left) and ``engines.partial.json`` records ``eta_seconds``.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from janus_deploy.backends.base import (
    EngineError,
    read_engines_file,
    write_engines_file,
)
from janus_deploy.plan.integrity import CheckStats, read_verified
from janus_deploy.plan.manifest import GraphEntry, Manifest

TIMING_CACHE = "timing.cache"
PARTIAL_FILE = "engines.partial.json"
MIN_BATCH = 1
MAX_BATCH = 8
#: execution contexts per engine (one per concurrent caller)
DEFAULT_CONTEXTS = 4
SUPPORTED_MAJORS = (10, 11)
GRAPHS = ("level", "level-free")
#: ops whose math stays fp32 in the fp16 graph (the rest of the graph is fp32 too: only the
#: weight-bearing ops below are cast to fp16)
FP16_OPS = ("MatMul", "Gemm", "Conv")
FP32_KEPT = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceMax", "Pow", "Sqrt", "Div")


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError(
            "TensorRT is not installed: the trt backend needs an NVIDIA GPU with TensorRT 10 or 11 "
            "(`pip install janus-deploy[trt]` on that machine, or JetPack 6 on Jetson); use --backend ort here"
        ) from exc
    check_version(trt.__version__)
    return trt


def check_version(version: str) -> int:
    """The major version of a supported TensorRT (EngineError in one line otherwise)."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = -1
    if major not in SUPPORTED_MAJORS:
        raise EngineError(f"TensorRT {version} is not supported; janus-deploy supports TensorRT 10.x and 11.x "
                          "(install one of those, e.g. `pip install 'tensorrt>=10,<12'`)")
    return major


def _cudart():
    """NVIDIA's cuda-python runtime binding (module name moved in cuda-python 12.8)."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise EngineError("the trt backend needs cuda-python (`pip install janus-deploy[trt]`)") from exc
    return cudart


def _check(result, what: str):
    """cuda-python calls return (error, *values); raise on an error, return the values."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EngineError(f"CUDA {what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def gpu_key() -> dict[str, str]:
    cudart = _cudart()
    dev = _check(cudart.cudaGetDevice(), "cudaGetDevice")
    prop = _check(cudart.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    return {"gpu": name.rstrip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def engine_name(plan_hash: str, level: int | None, segment: int, precision: str, trt_version: str, cc: str,
                gpu: str = "") -> str:
    """``level`` None: a level-free engine (every level, one profile each)."""
    tail = f"_{_slug(gpu)}" if gpu else ""
    lv = "LF" if level is None else f"L{level:02d}"
    return (f"{plan_hash[:12]}_{lv}_S{segment:02d}_{precision}_trt{trt_version}"
            f"_sm{cc.replace('.', '')}{tail}.engine")


def fp16_graph(model):
    """A strongly typed fp16 version of an fp32 ONNX model (in place; returns it).

    Every MatMul/Gemm/Conv whose weight is an initializer gets that weight in fp16, its
    activation input cast to fp16 and its output cast back to fp32; everything else (LayerNorm,
    Softmax, reductions, the merge/prune arithmetic) stays fp32, so the graph's own types say
    where fp16 is used and TensorRT needs no precision flag.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    converted: set[str] = set()
    nodes = []
    for node in model.graph.node:
        weight = next((n for n in node.input[1:2] if n in inits
                       and inits[n].data_type == TensorProto.FLOAT), None)
        if node.op_type not in FP16_OPS or weight is None:
            nodes.append(node)
            continue
        if weight not in converted:
            arr = numpy_helper.to_array(inits[weight]).astype(np.float16)
            inits[weight].CopyFrom(numpy_helper.from_array(arr, weight))
            converted.add(weight)
        ins = list(node.input)
        cast_in = f"{node.name or node.output[0]}_in16"
        nodes.append(helper.make_node("Cast", [ins[0]], [cast_in], to=TensorProto.FLOAT16, name=cast_in))
        ins[0] = cast_in
        for j in range(2, len(ins)):  # a bias
            if ins[j] in inits and inits[ins[j]].data_type == TensorProto.FLOAT and ins[j] not in converted:
                arr = numpy_helper.to_array(inits[ins[j]]).astype(np.float16)
                inits[ins[j]].CopyFrom(numpy_helper.from_array(arr, ins[j]))
                converted.add(ins[j])
        out16 = f"{node.output[0]}_out16"
        new = helper.make_node(node.op_type, ins, [out16], name=node.name)
        new.attribute.extend(node.attribute)
        nodes.append(new)
        nodes.append(helper.make_node("Cast", [out16], [node.output[0]], to=TensorProto.FLOAT, name=out16 + "_cast"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.value_info[:]  # stale fp32 annotations of now-fp16 tensors
    onnx.checker.check_model(model)
    return model


def _graph_for(manifest: Manifest, seg: GraphEntry, precision: str, out_dir: Path, stats: CheckStats,
               qdq_graph: Path | None = None) -> Path:
    """The ONNX file TensorRT parses for one segment, checked against the plan's sha256 first
    (int8: the Q/DQ graph :func:`janus_deploy.backends.qdq.quantize_plan` wrote from it)."""
    import onnx

    src = manifest.path(seg.file)
    read_verified(src, str(seg.sha256), str(manifest.dir / "manifest.json") if manifest.dir else "manifest.json",
                  "re-export the plan", stats)
    if precision == "fp32":
        return src
    if precision == "int8":
        if qdq_graph is None:
            raise EngineError("int8 engines are built from Q/DQ graphs: give calibration images (--calibration DIR)")
        return qdq_graph
    dst = out_dir / "graphs" / (Path(seg.file).stem + f"_{precision}.onnx")
    dst.parent.mkdir(parents=True, exist_ok=True)
    model = fp16_graph(onnx.load(str(src)))  # loads weights.bin (external data) beside the graph
    onnx.save(model, str(dst))
    return dst


def weight_bytes(manifest: Manifest, graphs: str = "level", precision: str = "fp32") -> int:
    """Bytes of weights the builder is handed for a whole plan: every per-level (level, segment)
    graph (``graphs="level"``: one copy of a block's weights per level) or every level-free
    segment graph (``"level-free"``: one copy), at ``precision``: fp16 halves the MatMul/Gemm/Conv
    weights and biases :func:`fp16_graph` casts; int8 stores those weights in one byte plus a
    4-byte scale and a 1-byte zero point per output channel (biases float), as
    :mod:`janus_deploy.backends.qdq` writes them. Read from the graphs' initializer
    records, without loading a weight. Weights only: TensorRT's engines add their own layout and
    each execution context its activation memory."""
    import onnx
    from onnx import TensorProto

    if graphs not in GRAPHS or precision not in ("fp32", "fp16", "int8"):
        raise EngineError(f"weight_bytes: graphs in {GRAPHS}, precision fp32/fp16/int8 (got {graphs!r}, {precision!r})")
    entries = manifest.level_free_graphs if graphs == "level-free" else \
        [seg for lv in manifest.plan_levels for seg in lv.segments]
    total = 0
    for entry in entries:
        model = onnx.load(str(manifest.path(entry.file)), load_external_data=False)
        sizes: dict[str, tuple[int, int, int]] = {}  # name -> (bytes, element size, output channels)
        for init in model.graph.initializer:
            n = int(np.prod(init.dims)) if init.dims else 1
            item = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
            sizes[init.name] = (n * item, item, int(init.dims[-1]) if init.dims else 1)
        weights, biases = set(), set()
        for node in model.graph.node:
            if node.op_type in FP16_OPS and len(node.input) > 1 and node.input[1] in sizes:
                weights.add(node.input[1])
                biases.update(i for i in node.input[2:] if i in sizes)
        float_types = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
        for name, (nbytes, item, channels) in sizes.items():
            if precision == "fp16" and name in (weights | biases) and name in float_types:
                nbytes //= 2
            elif precision == "int8" and name in weights and name in float_types:
                nbytes = nbytes // item + 5 * channels
            total += nbytes
    return total


def network_flags(trt) -> int:
    """Strongly typed networks: the flag on 10.x; 11.x networks are always strongly typed."""
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def level_free_graph(model):
    """A level-free segment graph TensorRT can take (in place; returns it): its ``reductions``
    input becomes int32 followed by a Cast to int64. ``reductions`` sets token counts (TopK's K,
    Range), so TensorRT treats it as a shape tensor, and 10.3's ``set_shape_input`` takes int32
    shape tensors only; the rest of the graph is unchanged."""
    import onnx
    from onnx import TensorProto, helper

    for vi in model.graph.input:
        if vi.name == "reductions" and vi.type.tensor_type.elem_type == TensorProto.INT64:
            vi.type.tensor_type.elem_type = TensorProto.INT32
            inner = "reductions_i64"
            for node in model.graph.node:
                for j, name in enumerate(node.input):
                    if name == "reductions":
                        node.input[j] = inner
            model.graph.node.insert(0, helper.make_node("Cast", ["reductions"], [inner], to=TensorProto.INT64,
                                                        name="reductions_to_int64"))
    onnx.checker.check_model(model)
    return model


def _level_free_graph_for(manifest: Manifest, seg: GraphEntry, precision: str, out_dir: Path,
                          stats: CheckStats) -> Path:
    """The level-free segment graph TensorRT parses (checked against the plan first; weights
    inlined, since the graph no longer sits beside ``weights.bin``)."""
    import onnx

    src = manifest.path(seg.file)
    read_verified(src, str(seg.sha256), str(manifest.dir / "manifest.json") if manifest.dir else "manifest.json",
                  "re-export the plan", stats)
    model = level_free_graph(onnx.load(str(src)))
    if precision == "fp16":
        fp16_graph(model)
    dst = out_dir / "graphs" / (Path(seg.file).stem + f"_levelfree_{precision}.onnx")
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def _profiles(manifest: Manifest, network, levels: Sequence[int], segment: int, min_batch: int, max_batch: int,
              level_free: bool) -> list[dict[str, Any]]:
    """One optimization profile per level: each input's (min, opt, max) shape with the batch range
    and the level's token count; a shape tensor (``reductions``) its values at that level."""
    out = []
    for li in levels:
        lv = manifest.plan_level(li)
        specs = {s.name: s for s in lv.segments[segment].inputs}
        shapes: dict[str, tuple] = {}
        values: dict[str, list[int]] = {}
        for i in range(network.num_inputs):
            t = network.get_input(i)
            if getattr(t, "is_shape", False) or t.name == "reductions":
                a, b = manifest.level_free_graphs[segment].blocks or (1, 0)
                vals = [int(v) for v in lv.reductions[a - 1: b]]
                dims = list(t.shape)
                shapes[t.name] = (dims, dims, dims)
                values[t.name] = vals
                continue
            dims = list(t.shape)[1:]
            if level_free:  # the level's static shapes, as its per-level graph has them
                dims = [int(d) for d in specs[t.name].shape[1:]]
            rest = [d if d > 0 else 1 for d in dims]
            shapes[t.name] = ([min_batch, *rest], [min_batch, *rest], [max_batch, *rest])
        out.append({"shapes": shapes, "values": values})
    return out


def build(
    manifest: Manifest,
    out_dir: Path,
    *,
    precision: str = "fp16",
    device_name: str | None = None,
    workspace_mb: int = 1024,
    min_batch: int = MIN_BATCH,
    max_batch: int = MAX_BATCH,
    hardware_compatibility: str | None = None,
    graphs: str = "level",
    calibration: str | Path | None = None,
    calibration_images: int = 64,
    progress: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Build TensorRT engines from the plan's ONNX graphs (resumable).

    ``graphs="level"``: one engine per (level, segment) from the per-level graphs (each holds the
    weights of its blocks: a copy per level). ``graphs="level-free"``: one engine per segment from
    the level-free graphs with one optimization profile per level (token counts and the level's
    reductions), so every level runs on the same engine and its one copy of the weights
    (docs/engines.md, "Weights once").

    int8: ``calibration`` is a folder of images (the deployment's own, any layout); the segment
    graphs are quantized to Q/DQ graphs calibrated per level on them
    (:mod:`janus_deploy.backends.qdq`), their accuracy against fp32 is measured on the held-out
    part with ONNX Runtime and recorded as ``int8_accuracy``, and the Q/DQ graphs are built as
    strongly typed networks (no INT8 flag, no calibrator).
    """
    trt = _trt()
    if precision not in ("fp32", "fp16", "int8"):
        raise EngineError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    if graphs not in GRAPHS:
        raise EngineError(f"unknown graph family {graphs!r}; choose one of {', '.join(GRAPHS)}")
    if precision != "int8" and calibration is not None:
        raise EngineError(f"--calibration is for --precision int8 only (this build is {precision}); leave it out")
    if precision == "int8" and graphs == "level-free":
        raise EngineError("int8 level-free engines are not built: the Q/DQ scales are calibrated per level, and a "
                          "level-free engine serves every level; use --graphs level with int8")
    if not 1 <= min_batch <= max_batch:
        raise EngineError(f"batch range {min_batch}..{max_batch} is empty; need 1 <= min_batch <= max_batch")
    key = gpu_key()
    out_dir.mkdir(parents=True, exist_ok=True)
    level_free = graphs == "level-free"
    levels = [lv.index for lv in manifest.plan_levels]
    if level_free:
        jobs = [(-1, si) for si in range(len(manifest.level_free_graphs))]
    else:
        jobs = [(lv.index, si) for lv in manifest.plan_levels for si in range(lv.num_segments)]
    steps = len(jobs) * (2 if precision == "int8" else 1)  # int8: quantize every graph, then build
    quant: dict[str, Any] = {}
    if precision == "int8":
        from janus_deploy.backends import qdq

        if calibration is None:
            raise EngineError("int8 engines need calibration images: give --calibration DIR (a folder of the "
                              "deployment's images; every 4th one is held out to measure accuracy)")
        frames = qdq.calibration_frames(manifest, calibration, calibration_images)
        quant = qdq.quantize_plan(manifest, out_dir, frames,
                                  progress=(lambda d, _t: progress(d, steps)) if progress else None)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_path = out_dir / TIMING_CACHE
    timing_cache = builder.create_builder_config().create_timing_cache(
        cache_path.read_bytes() if cache_path.is_file() else b"")
    partial_path = out_dir / PARTIAL_FILE
    try:
        partial = json.loads(partial_path.read_text()) if partial_path.is_file() else {}
    except ValueError:
        partial = {}
    stamp = {"plan_hash": manifest.hash, "precision": precision, "tensorrt_version": trt.__version__, **key,
             "min_batch": min_batch, "max_batch": max_batch, "hardware_compatibility": hardware_compatibility}
    if level_free:
        stamp["graphs"] = graphs
    if quant:
        stamp["calibration_sha256"] = quant["frames_sha256"]  # other images, other scales: rebuild
    done_before = {e["file"]: e for e in partial.get("engines", [])} if partial.get("stamp") == stamp else {}
    engines: list[dict[str, Any]] = []
    stats, t0, built = CheckStats(), time.perf_counter(), 0
    for done, (li, si) in enumerate(jobs, 1):
        seg = manifest.level_free_graphs[si] if level_free else manifest.plan_level(li).segments[si]
        name = engine_name(manifest.hash, None if level_free else li, si, precision, trt.__version__, key["compute_capability"], key["gpu"])
        entry = {"segment": si, "file": name, **({"profiles": levels} if level_free else {"level": li})}
        prev = done_before.get(name)
        if prev and (out_dir / name).is_file() and \
                hashlib.sha256((out_dir / name).read_bytes()).hexdigest() == prev["sha256"]:
            engines.append(prev)
        else:
            if level_free:
                graph = _level_free_graph_for(manifest, seg, precision, out_dir, stats)
            else:
                graph = _graph_for(manifest, seg, precision, out_dir, stats, quant.get("graphs", {}).get((li, si)))
            network = builder.create_network(network_flags(trt))
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(graph)):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise EngineError(f"TensorRT cannot parse {seg.file}: {errors}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
            config.set_timing_cache(timing_cache, ignore_mismatch=False)
            if hardware_compatibility:
                hw = getattr(trt.HardwareCompatibilityLevel, hardware_compatibility.upper(), None)
                if hw is None:
                    raise EngineError(f"unknown hardware-compatibility level {hardware_compatibility!r}; "
                                      f"this TensorRT offers {', '.join(trt.HardwareCompatibilityLevel.__members__)}")
                config.hardware_compatibility_level = hw
            for prof in _profiles(manifest, network, levels if level_free else [li], si, min_batch, max_batch,
                                  level_free):
                profile = builder.create_optimization_profile()
                for tname, (mn, opt, mx) in prof["shapes"].items():
                    profile.set_shape(tname, mn, opt, mx)
                for tname, vals in prof["values"].items():
                    profile.set_shape_input(tname, vals, vals, vals)
                config.add_optimization_profile(profile)
            blob = builder.build_serialized_network(network, config)
            if blob is None:
                raise EngineError(f"TensorRT failed to build an engine for {seg.file} (see the log above)")
            data = bytes(blob)
            (out_dir / name).write_bytes(data)
            engines.append({**entry, "sha256": hashlib.sha256(data).hexdigest()})
            cache_path.write_bytes(bytes(timing_cache.serialize()))  # saved as we go
            built += 1
        elapsed = time.perf_counter() - t0
        eta = round(elapsed / built * (len(jobs) - done), 1) if built else None
        partial_path.write_text(json.dumps({"stamp": stamp, "engines": engines, "eta_seconds": eta}))
        if progress:  # the CLI's progress bar shows the time left from these calls
            progress(steps - len(jobs) + done, steps)
    meta = {"backend": "trt", "device_name": device_name, "graph_bytes_checked": stats.bytes, **stamp,
            "graphs": graphs, "built": built, "skipped": len(jobs) - built,
            "build_seconds": round(time.perf_counter() - t0, 3), "engines": engines}
    if quant:
        meta["int8_accuracy"] = quant["accuracy"]
        meta["calibration"] = {"folder": str(calibration), "calibration_images": quant["calibration_images"],
                               "heldout_images": quant["heldout_images"], "method": "ORT quantize_static QDQ MinMax, "
                               "symmetric int8, weights per channel", "quantize_seconds": quant["quantize_seconds"]}
    write_engines_file(out_dir, meta)
    partial_path.unlink(missing_ok=True)
    return meta


class _Slot:
    """One execution context with its own stream and reusable device buffers, bound to one
    optimization profile (a level-free engine has one per level)."""

    def __init__(self, engine, cudart, trt, profile: int = 0) -> None:
        strategy = getattr(getattr(trt, "ExecutionContextAllocationStrategy", None), "ON_PROFILE_CHANGE", None)
        # with several profiles, size the activation memory for the one this context uses
        multi = int(getattr(engine, "num_optimization_profiles", 1)) > 1
        self.ctx = engine.create_execution_context(strategy) if multi and strategy is not None \
            else engine.create_execution_context()
        if self.ctx is None:
            raise EngineError("TensorRT could not create an execution context (out of device memory?)")
        self.cudart = cudart
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        if multi or profile:
            if not self.ctx.set_optimization_profile_async(profile, int(self.stream)):
                raise EngineError(f"TensorRT refused optimization profile {profile} of an engine with "
                                  f"{getattr(engine, 'num_optimization_profiles', 1)}")
            _check(cudart.cudaStreamSynchronize(self.stream), "stream synchronize")

    def buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self.cudart.cudaFree(ptr), "cudaFree")
            ptr = int(_check(self.cudart.cudaMalloc(nbytes), "cudaMalloc"))
            self.buffers[name] = (ptr, nbytes)
        return ptr

    def close(self) -> None:
        for ptr, _ in self.buffers.values():
            self.cudart.cudaFree(ptr)
        self.buffers.clear()
        self.cudart.cudaStreamDestroy(self.stream)


class _Engine:
    """A deserialised engine's bounded pool of execution contexts for one optimization profile."""

    def __init__(self, engine, cudart, trt, contexts: int, profile: int = 0) -> None:
        self.engine, self.cudart, self.trt, self.size, self.profile = engine, cudart, trt, contexts, profile
        self.pool: queue.Queue[_Slot] = queue.Queue()
        self.created = 0
        self.lock = threading.Lock()

    def acquire(self) -> _Slot:
        try:
            return self.pool.get_nowait()
        except queue.Empty:
            pass
        with self.lock:
            if self.created < self.size:
                self.created += 1
                try:
                    return _Slot(self.engine, self.cudart, self.trt, self.profile)
                except Exception:
                    self.created -= 1
                    raise
        return self.pool.get()  # bounded: wait for a context to come back

    def release(self, slot: _Slot) -> None:
        self.pool.put(slot)

    def close(self) -> None:
        while True:
            try:
                self.pool.get_nowait().close()
            except queue.Empty:
                return


class TrtRunner:
    """Deserialised engines, created lazily and kept resident; thread-safe.

    Per-level engines (``graphs: level``): one engine per (level, segment). Level-free engines
    (``graphs: level-free``): one engine per segment serving every level through the level's
    optimization profile; the level's reductions are fed as the engine's shape tensor."""

    def __init__(self, manifest: Manifest, engine_dir: str | Path, meta: dict[str, Any],
                 contexts: int = DEFAULT_CONTEXTS) -> None:
        trt = _trt()
        self.trt, self.cudart = trt, _cudart()
        key = gpu_key()
        here = {"tensorrt_version": trt.__version__, **key}
        for field, label in (("tensorrt_version", "TensorRT"), ("compute_capability", "compute capability"),
                             ("gpu", "device")):
            if field == "gpu" and meta.get("hardware_compatibility"):
                continue  # hardware-compatible engines may move between GPUs of that level
            if meta.get(field) != here[field]:
                raise EngineError(
                    f"engines in {engine_dir} were built for {label} {meta.get(field)!r}, this machine has "
                    f"{here[field]!r}; rebuild them here with `janus-deploy build-engines --backend trt`")
        if contexts < 1:
            raise EngineError(f"a TensorRT runner needs at least one execution context per engine, got {contexts}")
        self.manifest, self.dir, self.meta, self.contexts = manifest, Path(engine_dir), meta, contexts
        self.min_batch = int(meta.get("min_batch", MIN_BATCH))
        self.max_batch = int(meta.get("max_batch", MAX_BATCH))
        self.level_free = meta.get("graphs", "level") == "level-free"
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        # level-free engines are keyed (None, segment): one serves every level
        self.entries = {(None if self.level_free else e["level"], e["segment"]): e for e in meta["engines"]}
        self.checks = CheckStats()
        self._cuda: dict[tuple[int | None, int], Any] = {}  # deserialised engines
        self._engines: dict[tuple[int, int], _Engine] = {}  # context pools per (level, segment)
        self._lock = threading.Lock()

    def _key(self, level: int, segment: int) -> tuple[int | None, int]:
        return (None, segment) if self.level_free else (level, segment)

    def _cuda_engine(self, key: tuple[int | None, int]):
        engine = self._cuda.get(key)
        if engine is None:
            path = self.dir / self.entries.get(key, {}).get("file", "?")
            engine = self.runtime.deserialize_cuda_engine(self._engine_bytes(*key))
            if engine is None:
                raise EngineError(f"TensorRT cannot load {path} (corrupt, or built for another version/GPU)")
            self._cuda[key] = engine
        return engine

    def _engine(self, level: int, segment: int) -> _Engine:
        with self._lock:
            eng = self._engines.get((level, segment))
            if eng is None:
                key = self._key(level, segment)
                engine = self._cuda_engine(key)
                profile = self.entries[key]["profiles"].index(level) if self.level_free else 0
                eng = self._engines[(level, segment)] = _Engine(engine, self.cudart, self.trt, self.contexts, profile)
            return eng

    def _engine_bytes(self, level: int | None, segment: int) -> bytes:
        entry = self.entries.get((level, segment))
        if entry is None:
            what = f"segment {segment}" if level is None else f"level {level} segment {segment}"
            raise EngineError(f"{self.dir / 'engines.json'} lists no engine for {what}; rebuild the engines")
        return read_verified(self.dir / entry["file"], entry["sha256"], f"{self.dir / 'engines.json'}",
                             "rebuild the engines with `janus-deploy build-engines --backend trt`", self.checks)

    def check_files(self, progress: Any = None) -> None:
        keys = sorted(self.entries, key=lambda k: (-1 if k[0] is None else k[0], k[1]))
        for i, key in enumerate(keys, 1):
            self._engine_bytes(*key)
            if progress:
                progress(i, len(keys))

    def loaded(self) -> int:
        """Engines resident (a level-free engine counts once, whatever the levels it serves)."""
        return len(self._cuda)

    def load(self, level: int, segment: int) -> None:
        self._engine(level, segment)

    def preload(self, progress: Any = None) -> None:
        pairs = [(lv.index, si) for lv in self.manifest.plan_levels for si in range(lv.num_segments)]
        for i, (li, si) in enumerate(pairs, 1):
            self._engine(li, si)
            if progress:
                progress(i, len(pairs))

    def unload(self, level: int, segment: int) -> None:
        with self._lock:
            eng = self._engines.pop((level, segment), None)
            key = self._key(level, segment)
            if not any(self._key(*k) == key for k in self._engines):
                self._cuda.pop(key, None)  # no level uses the engine any more
        if eng is not None:
            eng.close()

    def _extra_inputs(self, level: int, segment: int) -> list[tuple[str, np.ndarray]]:
        """A level-free engine's shape tensor: the level's reductions over the segment's blocks."""
        if not self.level_free:
            return []
        lf = self.manifest.level_free_graphs[segment]
        if "reductions" not in lf.input_names:
            return []
        a, b = lf.blocks or (1, 0)
        return [("reductions", np.asarray(self.manifest.plan_level(level).reductions[a - 1: b], dtype=np.int32))]

    def run_segment(self, level: int, segment: int, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        trt, cudart = self.trt, self.cudart
        entry = self.manifest.plan_level(level).segments[segment]
        batch = int(inputs[0].shape[0]) if inputs and np.ndim(inputs[0]) else 0
        if not self.min_batch <= batch <= self.max_batch:
            raise EngineError(f"batch {batch} is outside the engines' range {self.min_batch}..{self.max_batch} "
                              "(rebuild with a wider --max-batch, or send smaller batches)")
        eng = self._engine(level, segment)
        slot = eng.acquire()
        try:
            ctx, engine, h2d = slot.ctx, eng.engine, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            hold = []
            named = [(spec.name, arr) for spec, arr in zip(entry.inputs, inputs)]
            for name, arr in named + self._extra_inputs(level, segment):
                if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                    continue  # an input the engine does not use (TensorRT drops unused inputs)
                host = np.ascontiguousarray(arr, dtype=trt.nptype(engine.get_tensor_dtype(name)))
                hold.append(host)
                if not ctx.set_input_shape(name, tuple(host.shape)):
                    raise EngineError(f"TensorRT refused shape {tuple(host.shape)} for {name!r} of level {level} "
                                      f"segment {segment} (outside the optimization profile)")
                if engine.is_shape_inference_io(name):  # a shape tensor: its values stay in host memory
                    ctx.set_tensor_address(name, host.ctypes.data)
                    continue
                ptr = slot.buffer(name, max(host.nbytes, 1))
                _check(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, h2d, slot.stream), "copy to device")
                ctx.set_tensor_address(name, ptr)
            outs = []
            for name in entry.output_names:
                shape = tuple(ctx.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise EngineError(f"output {name!r} of level {level} segment {segment} has no shape yet {shape}: "
                                      "an input shape was not set")
                host = np.empty(shape, dtype=trt.nptype(engine.get_tensor_dtype(name)))
                ptr = slot.buffer(name, max(host.nbytes, 1))
                ctx.set_tensor_address(name, ptr)
                outs.append((host, ptr))
            if not ctx.execute_async_v3(int(slot.stream)):
                raise EngineError(f"TensorRT execution failed for level {level} segment {segment}")
            d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            for host, ptr in outs:
                _check(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, slot.stream), "copy to host")
            _check(cudart.cudaStreamSynchronize(slot.stream), "stream synchronize")
            return [h.astype(np.float32, copy=False) if h.dtype == np.float16 else h for h, _ in outs]
        finally:
            eng.release(slot)

    def run_unsplit(self, level: int, image: np.ndarray) -> np.ndarray:
        out: list[np.ndarray] = [image]
        for j in range(self.manifest.plan_level(level).num_segments):
            out = self.run_segment(level, j, out)
        return out[0]


def load(manifest: Manifest, engine_dir: str | Path, *, meta: dict[str, Any] | None = None,
         contexts: int | None = None, concurrency: int | None = None, **_: Any) -> TrtRunner:
    """``contexts``: execution contexts per engine; default: ``concurrency`` (the caller's
    concurrent inferences, e.g. serve's ``--concurrency``), else DEFAULT_CONTEXTS."""
    meta = meta if meta is not None else read_engines_file(engine_dir, manifest)
    return TrtRunner(manifest, engine_dir, meta, contexts=int(contexts or concurrency or DEFAULT_CONTEXTS))
