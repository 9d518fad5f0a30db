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
* device memory is host memory (``cudaMalloc`` returns real addresses, copies are ``memmove``).

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
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, shape, dtype

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs, self.outputs, self.path, self.weight_bytes = flags, [], [], None, 0

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
            for vi in model.graph.input:
                if vi.name in inits:
                    continue
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
                net.inputs.append(Tensor(vi.name, tuple(dims), onnx_types[vi.type.tensor_type.elem_type]))
            for vi in model.graph.output:
                net.outputs.append(Tensor(vi.name, None, onnx_types[vi.type.tensor_type.elem_type]))
            return True

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))

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
            if network.path is None or len(config.profiles) != 1:
                return None
            for t in network.inputs:
                if t.name not in config.profiles[0].shapes:
                    return None
            strongly = major >= 11 or bool(network.flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
            trt.builder_log.append({"path": network.path, "weight_bytes": network.weight_bytes,
                                    "flags": sorted(f.name for f in config.flags), "strongly_typed": strongly})
            blob = {"mark": STANDIN_MARK, "onnx": network.path, "strongly_typed": strongly,
                    "inputs": {t.name: [int(t.dtype), list(config.profiles[0].shapes[t.name])] for t in network.inputs},
                    "outputs": {t.name: int(t.dtype) for t in network.outputs}}
            return json.dumps(blob).encode()

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}
            self._owner, self._guard, self._out_shapes = None, threading.Lock(), {}

        def _enter(self):
            me = threading.get_ident()
            with self._guard:
                if self._owner not in (None, me):
                    raise RuntimeError("TensorRT stand-in: an execution context used by two threads at once "
                                       "(TensorRT needs one context per concurrent execution)")
                self._owner = me

        def set_input_shape(self, name, shape):
            self._enter()
            spec = self.engine.inputs.get(name)
            if spec is None:
                return False
            mn, _, mx = spec[1]
            shape = tuple(int(d) for d in shape)
            if len(shape) != len(mn) or any(not lo <= d <= hi for d, lo, hi in zip(shape, mn, mx)):
                return False
            self.shapes[name] = shape
            return True

        def set_tensor_address(self, name, ptr):
            self._enter()
            self.addresses[name] = int(ptr)
            return True

        def get_tensor_shape(self, name):
            if name in self.engine.inputs:
                return self.shapes.get(name, tuple(self.engine.inputs[name][1][0]))
            if set(self.shapes) != set(self.engine.inputs):
                return (-1,)
            key = tuple(sorted(self.shapes.items()))
            if key not in self._out_shapes:  # shapes from a run on zeros (the stand-in has no shape engine)
                feeds = {n: np.zeros(s, trt.nptype(self.engine.inputs[n][0])) for n, s in self.shapes.items()}
                outs = self.engine.session.run(list(self.engine.outputs), feeds)
                self._out_shapes[key] = {n: o.shape for n, o in zip(self.engine.outputs, outs)}
            return self._out_shapes[key][name]

        def execute_async_v3(self, stream):
            self._enter()
            try:
                feeds = {}
                for n, s in self.shapes.items():
                    dt = np.dtype(trt.nptype(self.engine.inputs[n][0]))
                    nbytes = int(np.prod(s)) * dt.itemsize
                    buf = (ctypes.c_char * max(nbytes, 1)).from_address(self.addresses[n])
                    feeds[n] = np.frombuffer(buf, dtype=dt, count=int(np.prod(s))).reshape(s).copy()
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

            self.inputs = {n: (trt.DataType(d), [tuple(x) for x in p]) for n, (d, p) in blob["inputs"].items()}
            self.outputs = {n: trt.DataType(d) for n, d in blob["outputs"].items()}
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self.session = ort.InferenceSession(blob["onnx"], so, providers=["CPUExecutionProvider"])
            self.contexts = 0

        def get_tensor_mode(self, name):
            if name in self.inputs:
                return trt.TensorIOMode.INPUT
            if name in self.outputs:
                return trt.TensorIOMode.OUTPUT
            return trt.TensorIOMode.NONE

        def get_tensor_dtype(self, name):
            return self.inputs[name][0] if name in self.inputs else self.outputs[name]

        def create_execution_context(self):
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
