"""A STAND-IN for TensorRT and cuda-python, for tests only. It is NOT TensorRT and never claims
that TensorRT ran.

It enforces the documented rules the trt backend relies on and executes each "engine" (the ONNX
graph handed to the parser) with ONNX Runtime on the CPU:

* the 11.x API: ``BuilderFlag`` has no ``FP16``/``INT8``, there are no ``IInt8*Calibrator``
  classes (``version="10.3.0"`` gives a 10.x module, which still has them);
* optimization-profile bounds: ``set_input_shape`` returns False outside ``[min, max]``;
* output shapes read -1 until every input shape is set; ``get_tensor_mode`` is NONE for unknown names;
* one execution context serves one execution at a time: a second thread touching a context
  while another thread's execution is in progress raises (the real thing corrupts or crashes);
* device memory is host memory (``cudaMalloc`` returns real addresses, copies are ``memmove``);
* explicit quantization (Q/DQ), as onnx-tensorrt 10.x's operator table and TensorRT's Quantize /
  Dequantize operator pages state it (docs.nvidia.com/deeplearning/tensorrt/latest/operators/docs/
  Quantize.html, .../Dequantize.html; onnx-tensorrt docs/operators.md): the scale is a build-time
  constant, a scalar (per tensor) or 1-D (per channel), positive; a zero point, if given, is a
  constant of the scale's shape with only zeros, of type int8 (uint8 is not a TensorRT Q/DQ
  type); the quantized input is float32/float16. Per-channel scales are accepted on constant
  (weight) inputs only, the granularity this project relies on (activations per tensor);
* strong typing vs precision flags: a strongly typed network with ``FP16``/``INT8`` flags set is
  refused ("Precision-control build flags are not required and should not be specified", the
  Explicit Quantization page); a weakly typed 10.x network with Q/DQ needs the ``INT8`` flag
  ("To enable any quantization operations, the INT8 flag must be set", the 8.x-10.x developer
  guide's quantization chapter);
* shape tensors and several optimization profiles: an integer input of rank <= 1 with fixed dims
  is a shape tensor (``is_shape``), which 10.3's ``set_shape_input`` docstring requires to be
  int32; every profile sets its values (``set_shape_input``) and ``set_shape_input`` on any other
  input raises; at run time its address is host memory (``get_tensor_location`` is HOST) and
  its values must lie within the active profile's; ``set_optimization_profile_async`` selects a
  profile and clears the input shapes set before.

``install(monkeypatch)`` puts the stand-in modules in ``sys.modules`` as ``tensorrt`` and
``cuda.bindings.runtime``.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
import threading
import types

import numpy as np

STANDIN_MARK = "janus-deploy TensorRT STAND-IN (not TensorRT)"


class _Enum(enum.IntEnum):
    pass


def _qdq_problems(model, consts) -> list[str]:
    """Q/DQ nodes TensorRT would refuse (see the module docstring for the rules and their sources)."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"stand-in parser: {n.op_type} {n.name or n.output[0]!r}"
        scale = consts.get(n.input[1]) if len(n.input) > 1 else None
        if scale is None:
            out.append(f"{where}: the scale must be a build-time constant")
            continue
        if scale.ndim > 1 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            out.append(f"{where}: the scale must be a positive scalar or 1-D tensor")
        if scale.size > 1 and n.input[0] not in consts:
            out.append(f"{where}: per-channel scales only on constant (weight) inputs; activations are per tensor")
        if len(n.input) > 2 and n.input[2]:
            zp = consts.get(n.input[2])
            zp_type = inits[n.input[2]].data_type if n.input[2] in inits else None
            if zp is not None and ((zp_type is not None and zp_type != TensorProto.INT8) or zp.dtype != np.int8):
                out.append(f"{where}: zero point of type {zp.dtype}; TensorRT's int8 Q/DQ is signed int8")
            elif zp is None or zp.shape != scale.shape or np.any(zp != 0):
                out.append(f"{where}: the zero point must be a constant of zeros shaped like the scale")
    return out


def make_tensorrt(version: str = "11.4.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    trt.STANDIN = True
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})
    trt.MemoryPoolType = _Enum("MemoryPoolType", {"WORKSPACE": 0})
    trt.TensorIOMode = _Enum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    trt.DataType = _Enum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "INT64": 8})
    trt.HardwareCompatibilityLevel = _Enum("HardwareCompatibilityLevel", {"NONE": 0, "AMPERE_PLUS": 1,
                                                                          "SAME_COMPUTE_CAPABILITY": 2})
    trt.ExecutionContextAllocationStrategy = _Enum("ExecutionContextAllocationStrategy",
                                                   {"STATIC": 0, "ON_PROFILE_CHANGE": 1, "USER_MANAGED": 2})
    trt.TensorLocation = _Enum("TensorLocation", {"DEVICE": 0, "HOST": 1})
    trt.NetworkDefinitionCreationFlag = _Enum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
    flags = {"TF32": 1, "REFIT": 2, "STRIP_PLAN": 3, "REFIT_IDENTICAL": 4}
    if major == 10:
        flags.update({"FP16": 10, "INT8": 11})

        class IInt8EntropyCalibrator2:  # deprecated in 10.x, gone in 11.x
            pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.BuilderFlag = _Enum("BuilderFlag", flags)
    onnx_types = {1: trt.DataType.FLOAT, 10: trt.DataType.HALF, 3: trt.DataType.INT8, 6: trt.DataType.INT32,
                  9: trt.DataType.BOOL, 7: trt.DataType.INT64}
    np_types = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16, trt.DataType.INT8: np.int8,
                trt.DataType.INT32: np.int32, trt.DataType.BOOL: np.bool_, trt.DataType.INT64: np.int64}
    trt.nptype = lambda dt: np_types[dt]
    trt.builder_log: list[dict] = []  # what each build was handed (graph, weight bytes, flags)

    class Tensor:
        def __init__(self, name, shape, dtype, is_shape=False):
            self.name, self.shape, self.dtype, self.is_shape = name, shape, dtype, is_shape

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs, self.outputs, self.path, self.weight_bytes = flags, [], [], None, 0
            self.qdq = False

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

        def parse_from_file(self, path):
            import onnx
            from onnx import numpy_helper

            try:
                model = onnx.load(path)  # resolves weights.bin relative to the graph, as onnx-tensorrt does
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"stand-in parser: {exc}")
                return False
            inits = {i.name for i in model.graph.initializer}
            net = self.network
            net.path = path
            net.weight_bytes = sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer)
            consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
            for n in model.graph.node:
                if n.op_type == "Constant":
                    value = next((a.t for a in n.attribute if a.name == "value"), None)
                    if value is not None:
                        consts[n.output[0]] = numpy_helper.to_array(value)
            problems = _qdq_problems(model, consts)
            if problems:
                self.errors.extend(problems)
                return False
            net.qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
            for vi in model.graph.input:
                if vi.name in inits:
                    continue
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
                dtype = onnx_types[vi.type.tensor_type.elem_type]
                is_shape = dtype in (trt.DataType.INT32, trt.DataType.INT64) and len(dims) <= 1 and -1 not in dims
                if is_shape and dtype != trt.DataType.INT32:
                    self.errors.append(f"stand-in parser: shape tensor input {vi.name!r} is {dtype.name}; "
                                       "set_shape_input needs an int32 shape tensor (TensorRT 10.3)")
                    return False
                net.inputs.append(Tensor(vi.name, tuple(dims), dtype, is_shape))
            for vi in model.graph.output:
                net.outputs.append(Tensor(vi.name, None, onnx_types[vi.type.tensor_type.elem_type]))
            return True

    class Profile:
        def __init__(self):
            self.shapes, self.values = {}, {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))

        def set_shape_input(self, name, mn, opt, mx):
            self.values[name] = (tuple(int(v) for v in mn), tuple(int(v) for v in opt), tuple(int(v) for v in mx))

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data) or b"standin-timing-cache"

        def serialize(self):
            return self.data

    class Config:
        def __init__(self):
            self.profiles, self.flags, self.hardware_compatibility_level = [], set(), trt.HardwareCompatibilityLevel.NONE

        def set_memory_pool_limit(self, pool, size):
            assert isinstance(pool, trt.MemoryPoolType) and size > 0

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_flag(self, flag):
            self.flags.add(trt.BuilderFlag(flag))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if network.path is None or not config.profiles:
                return None
            for prof in config.profiles:
                for t in network.inputs:
                    if t.name not in prof.shapes or (t.is_shape and t.name not in prof.values):
                        return None  # TensorRT: every input needs its shape (and a shape tensor its values)
                    if not t.is_shape and t.name in prof.values:
                        raise ValueError(f"set_shape_input on {t.name!r}, which is not a shape tensor")
            strongly = major >= 11 or bool(network.flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
            precision_flags = {f.name for f in config.flags} & {"FP16", "INT8", "BF16", "FP8"}
            if strongly and precision_flags:
                return None  # strongly typed networks take their precision from the types, never flags
            if network.qdq and not strongly and "INT8" not in precision_flags:
                return None  # weakly typed Q/DQ networks need the INT8 flag (10.x)
            trt.builder_log.append({"path": network.path, "weight_bytes": network.weight_bytes,
                                    "flags": sorted(f.name for f in config.flags), "strongly_typed": strongly,
                                    "qdq": network.qdq, "profiles": len(config.profiles)})
            blob = {"mark": STANDIN_MARK, "onnx": network.path, "strongly_typed": strongly,
                    "inputs": {t.name: [int(t.dtype), [list(p.shapes[t.name]) for p in config.profiles],
                                        [list(p.values[t.name]) for p in config.profiles] if t.is_shape else None]
                               for t in network.inputs},
                    "outputs": {t.name: int(t.dtype) for t in network.outputs}}
            return json.dumps(blob).encode()

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses, self.profile = engine, {}, {}, 0
            self._owner, self._guard, self._out_shapes = None, threading.Lock(), {}

        def _enter(self):
            me = threading.get_ident()
            with self._guard:
                if self._owner not in (None, me):
                    raise RuntimeError("TensorRT stand-in: an execution context used by two threads at once "
                                       "(TensorRT needs one context per concurrent execution)")
                self._owner = me

        @property
        def active_optimization_profile(self):
            return self.profile

        def set_optimization_profile_async(self, index, stream):
            self._enter()
            try:
                if not 0 <= int(index) < self.engine.num_optimization_profiles:
                    return False
                self.profile, self.shapes = int(index), {}  # switching invalidates the input shapes
                return True
            finally:
                with self._guard:
                    self._owner = None

        def set_input_shape(self, name, shape):
            self._enter()
            spec = self.engine.inputs.get(name)
            if spec is None:
                return False
            mn, _, mx = spec[1][self.profile]
            shape = tuple(int(d) for d in shape)
            if len(shape) != len(mn) or any(not lo <= d <= hi for d, lo, hi in zip(shape, mn, mx)):
                return False
            self.shapes[name] = shape
            return True

        def set_tensor_address(self, name, ptr):
            self._enter()
            self.addresses[name] = int(ptr)
            return True

        def _values(self, name):
            """A shape tensor's values, read from the host address set for it (None before)."""
            if name not in self.addresses or name not in self.shapes:
                return None
            n = int(np.prod(self.shapes[name])) if self.shapes[name] else 1
            buf = (ctypes.c_char * (4 * max(n, 1))).from_address(self.addresses[name])
            return np.frombuffer(buf, dtype=np.int32, count=n).reshape(self.shapes[name]).copy()

        def _feeds(self, zeros):
            feeds = {}
            for n, s in self.shapes.items():
                dt = np.dtype(trt.nptype(self.engine.inputs[n][0]))
                if self.engine.is_shape_inference_io(n):
                    feeds[n] = self._values(n)
                elif zeros:
                    feeds[n] = np.zeros(s, dt)
                else:
                    nbytes = int(np.prod(s)) * dt.itemsize
                    buf = (ctypes.c_char * max(nbytes, 1)).from_address(self.addresses[n])
                    feeds[n] = np.frombuffer(buf, dtype=dt, count=int(np.prod(s))).reshape(s).copy()
            return feeds

        def get_tensor_shape(self, name):
            if name in self.engine.inputs:
                return self.shapes.get(name, tuple(self.engine.inputs[name][1][self.profile][0]))
            if set(self.shapes) != set(self.engine.inputs):
                return (-1,)
            if any(self.engine.is_shape_inference_io(n) and self._values(n) is None for n in self.engine.inputs):
                return (-1,)  # output shapes need the shape tensors' values too
            feeds = self._feeds(zeros=True)
            key = tuple(sorted((n, v.tobytes() if self.engine.is_shape_inference_io(n) else tuple(v.shape))
                               for n, v in feeds.items()))
            if key not in self._out_shapes:  # shapes from a run on zeros (the stand-in has no shape engine)
                outs = self.engine.session.run(list(self.engine.outputs), feeds)
                self._out_shapes[key] = {n: o.shape for n, o in zip(self.engine.outputs, outs)}
            return self._out_shapes[key][name]

        def execute_async_v3(self, stream):
            self._enter()
            try:
                for n, spec in self.engine.inputs.items():
                    if spec[2] is not None:  # a shape tensor: values within the active profile's
                        vals = self._values(n)
                        lo, _, hi = spec[2][self.profile]
                        if vals is None or np.any(vals < np.asarray(lo)) or np.any(vals > np.asarray(hi)):
                            return False
                feeds = self._feeds(zeros=False)
                outs = self.engine.session.run(list(self.engine.outputs), feeds)
                for n, o in zip(self.engine.outputs, outs):
                    o = np.ascontiguousarray(o)
                    if tuple(o.shape) != tuple(self.get_tensor_shape(n)):
                        raise RuntimeError(f"stand-in: output {n} shape changed")
                    ctypes.memmove(self.addresses[n], o.ctypes.data, o.nbytes)
                return True
            finally:
                with self._guard:
                    self._owner = None

    class Engine:
        def __init__(self, blob):
            import onnxruntime as ort

            self.inputs = {n: (trt.DataType(d), [[tuple(x) for x in p] for p in profs],
                               [[tuple(x) for x in v] for v in vals] if vals is not None else None)
                           for n, (d, profs, vals) in blob["inputs"].items()}
            self.outputs = {n: trt.DataType(d) for n, d in blob["outputs"].items()}
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self.session = ort.InferenceSession(blob["onnx"], so, providers=["CPUExecutionProvider"])
            self.contexts = 0
            self.num_optimization_profiles = len(next(iter(self.inputs.values()))[1]) if self.inputs else 1

        def get_tensor_mode(self, name):
            if name in self.inputs:
                return trt.TensorIOMode.INPUT
            if name in self.outputs:
                return trt.TensorIOMode.OUTPUT
            return trt.TensorIOMode.NONE

        def is_shape_inference_io(self, name):
            return name in self.inputs and self.inputs[name][2] is not None

        def get_tensor_location(self, name):
            return trt.TensorLocation.HOST if self.is_shape_inference_io(name) else trt.TensorLocation.DEVICE

        def get_tensor_profile_shape(self, name, profile):
            return [list(x) for x in self.inputs[name][1][profile]]

        def get_tensor_dtype(self, name):
            return self.inputs[name][0] if name in self.inputs else self.outputs[name]

        def create_execution_context(self, strategy=None):
            assert strategy is None or isinstance(strategy, trt.ExecutionContextAllocationStrategy)
            self.contexts += 1
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                blob = json.loads(bytes(data))
            except ValueError:
                return None
            return Engine(blob) if blob.get("mark") == STANDIN_MARK else None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def make_cudart(name: str = "Stand-in Orin Nano", cc: tuple[int, int] = (8, 7)) -> types.ModuleType:
    cu = types.ModuleType("cuda.bindings.runtime")
    cu.cudaMemcpyKind = _Enum("cudaMemcpyKind", {"cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2})
    cu.allocations: dict[int, np.ndarray] = {}
    props = types.SimpleNamespace(name=name.encode(), major=cc[0], minor=cc[1])
    cu.cudaGetDevice = lambda: (0, 0)
    cu.cudaGetDeviceProperties = lambda dev: (0, props)

    def malloc(n):
        arr = np.empty(int(n), np.uint8)
        cu.allocations[arr.ctypes.data] = arr
        return 0, arr.ctypes.data

    def free(ptr):
        cu.allocations.pop(int(ptr), None)
        return (0,)

    def memcpy(dst, src, n, kind, stream):
        ctypes.memmove(int(dst), int(src), int(n))
        return (0,)

    cu.cudaMemGetInfo = lambda: (0, (8 << 30) - sum(a.nbytes for a in cu.allocations.values()), 8 << 30)
    cu.cudaMalloc, cu.cudaFree, cu.cudaMemcpyAsync = malloc, free, memcpy
    cu.streams = 0

    def stream_create():
        cu.streams += 1
        return 0, cu.streams

    cu.cudaStreamCreate = stream_create
    cu.cudaStreamDestroy = lambda s: (0,)
    cu.cudaStreamSynchronize = lambda s: (0,)
    return cu


def install(monkeypatch, version: str = "11.4.0", gpu: str = "Stand-in Orin Nano", cc=(8, 7)):
    """Put the stand-in in sys.modules; returns (tensorrt, cudart) stand-ins."""
    trt, cu = make_tensorrt(version), make_cudart(gpu, cc)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime, cuda.bindings = cu, bindings
    import importlib.machinery

    for mod in (trt, cuda, bindings, cu):  # importlib.util.find_spec (torch's dynamo calls it) needs one
        mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    for mod_name, mod in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings),
                          ("cuda.bindings.runtime", cu)):
        monkeypatch.setitem(sys.modules, mod_name, mod)
    return trt, cu
