"""TensorRT 10 backend (NVIDIA GPUs and Jetson): one serialized engine per (level, segment).

Needs the ``[trt]`` extra (``tensorrt``) and a CUDA GPU; device memory is handled through PyTorch's
CUDA allocator (torch is a core dependency). Engines are keyed by plan hash, level, segment,
precision, TensorRT version and GPU compute capability, and a runner refuses engines built for
another TensorRT version or GPU. A shared timing cache speeds up rebuilding. Every engine file is
read once and checked against its sha256 in ``engines.json`` before it is deserialised.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from janus_deploy.backends.base import EngineError, read_engines_file, write_engines_file
from janus_deploy.plan.integrity import CheckStats, read_verified
from janus_deploy.plan.manifest import Manifest

TIMING_CACHE = "timing.cache"
MAX_BATCH = 8


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError(
            "TensorRT is not installed: the trt backend needs an NVIDIA GPU with TensorRT >= 10 "
            "(`pip install janus-deploy[trt]` on that machine, or JetPack on Jetson); use --backend ort here"
        ) from exc
    if int(trt.__version__.split(".")[0]) < 10:
        raise EngineError(f"TensorRT {trt.__version__} is too old; janus-deploy needs TensorRT >= 10")
    return trt


def _cuda():
    import torch

    if not torch.cuda.is_available():
        raise EngineError("the trt backend needs a CUDA GPU, and none is visible (torch.cuda.is_available() is False)")
    return torch


def gpu_key() -> dict[str, str]:
    torch = _cuda()
    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def engine_name(plan_hash: str, level: int, segment: int, precision: str, trt_version: str, cc: str) -> str:
    return f"{plan_hash[:12]}_L{level:02d}_S{segment:02d}_{precision}_trt{trt_version}_sm{cc.replace('.', '')}.engine"


class _Calibrator:
    """INT8 entropy calibrator over normalised calibration images (experimental)."""

    def __new__(cls, batches: list[list[np.ndarray]], cache: Path):
        trt = _trt()
        torch = _cuda()

        class Calib(trt.IInt8EntropyCalibrator2):
            def __init__(self) -> None:
                super().__init__()
                self.batches, self.i, self.dev = batches, 0, []

            def get_batch_size(self) -> int:
                return 1

            def get_batch(self, names_):  # noqa: ARG002 - TensorRT's calibrator protocol passes the names; unused
                if self.i >= len(self.batches):
                    return None
                self.dev = [torch.from_numpy(a).cuda() for a in self.batches[self.i]]
                self.i += 1
                return [t.data_ptr() for t in self.dev]

            def read_calibration_cache(self):
                return cache.read_bytes() if cache.is_file() else None

            def write_calibration_cache(self, data) -> None:
                cache.write_bytes(bytes(data))

        return Calib()


def build(
    manifest: Manifest,
    out_dir: Path,
    *,
    precision: str = "fp16",
    device_name: str | None = None,
    workspace_mb: int = 1024,
    calibration: list[np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Build one TensorRT engine per (level, segment) from the plan's ONNX graphs."""
    trt = _trt()
    if precision not in ("fp32", "fp16", "int8"):
        raise EngineError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    key = gpu_key()
    out_dir.mkdir(parents=True, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_path = out_dir / TIMING_CACHE
    config0 = builder.create_builder_config()
    timing_cache = config0.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    jobs = [(li, si) for li, lv in enumerate(manifest.levels) for si in range(len(lv["segments"]))]
    engines, t0 = [], time.perf_counter()
    for done, (li, si) in enumerate(jobs, 1):
        seg = manifest.level(li)["segments"][si]
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(manifest.path(seg["file"]))):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse {seg['file']}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)
            if calibration is None:
                raise EngineError("int8 needs calibration images (build-engines --calibration DIR)")
            batches = _segment_inputs(manifest, li, si, calibration)
            config.int8_calibrator = _Calibrator(batches, out_dir / f"L{li:02d}_S{si:02d}.calib")
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            shape = [d if d > 0 else 1 for d in t.shape]
            profile.set_shape(t.name, [1, *shape[1:]], [1, *shape[1:]], [MAX_BATCH, *shape[1:]])
        config.add_optimization_profile(profile)
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise EngineError(f"TensorRT failed to build an engine for {seg['file']} (see the log above)")
        name = engine_name(manifest.hash, li, si, precision, trt.__version__, key["compute_capability"])
        (out_dir / name).write_bytes(bytes(blob))
        engines.append({"level": li, "segment": si, "file": name,
                        "sha256": hashlib.sha256(bytes(blob)).hexdigest()})
        if progress:
            progress(done, len(jobs))
    cache_path.write_bytes(bytes(timing_cache.serialize()))
    data = {
        "backend": "trt", "plan_hash": manifest.hash, "precision": precision, "device_name": device_name,
        "tensorrt_version": trt.__version__, **key, "max_batch": MAX_BATCH,
        "build_seconds": round(time.perf_counter() - t0, 3), "engines": engines,
    }
    write_engines_file(out_dir, data)
    return data


def _segment_inputs(manifest: Manifest, level: int, segment: int, images: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Inputs of one segment for each calibration image (earlier segments run in ONNX Runtime)."""
    from janus_deploy.backends.ort import OrtRunner

    runner = OrtRunner(manifest)
    out = []
    for img in images:
        ins = [img]
        for j in range(segment):
            ins = runner.run_segment(level, j, ins)
        out.append(ins)
    return out


class TrtRunner:
    """Deserialised engines per (level, segment), created lazily and kept resident."""

    def __init__(self, manifest: Manifest, engine_dir: str | Path, meta: dict[str, Any]) -> None:
        trt = _trt()
        self.torch = _cuda()
        key = gpu_key()
        if meta.get("tensorrt_version") != trt.__version__:
            raise EngineError(
                f"engines in {engine_dir} were built with TensorRT {meta.get('tensorrt_version')}, this is "
                f"{trt.__version__}; rebuild them with `janus-deploy build-engines --backend trt`"
            )
        if meta.get("compute_capability") != key["compute_capability"]:
            raise EngineError(
                f"engines in {engine_dir} were built for compute capability {meta.get('compute_capability')} "
                f"({meta.get('gpu')}), this GPU is {key['compute_capability']} ({key['gpu']}); rebuild them here"
            )
        self.manifest, self.dir, self.meta = manifest, Path(engine_dir), meta
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.entries = {(e["level"], e["segment"]): e for e in meta["engines"]}
        self.checks = CheckStats()
        self._ctx: dict[tuple[int, int], Any] = {}
        self.stream = self.torch.cuda.Stream()

    def _context(self, level: int, segment: int):
        ctx = self._ctx.get((level, segment))
        if ctx is None:
            path = self.dir / self.entries[(level, segment)]["file"]
            engine = self.runtime.deserialize_cuda_engine(self._engine_bytes(level, segment))
            if engine is None:
                raise EngineError(f"TensorRT cannot load {path} (corrupt, or built for another version/GPU)")
            ctx = (engine, engine.create_execution_context())
            self._ctx[(level, segment)] = ctx
        return ctx

    def _engine_bytes(self, level: int, segment: int) -> bytes:
        entry = self.entries.get((level, segment))
        if entry is None:
            raise EngineError(f"{self.dir / 'engines.json'} lists no engine for level {level} segment {segment}; "
                              "rebuild the engines")
        return read_verified(self.dir / entry["file"], entry["sha256"], f"{self.dir / 'engines.json'}",
                             "rebuild the engines with `janus-deploy build-engines --backend trt`", self.checks)

    def check_files(self, progress: Any = None) -> None:
        """Check every engine file against engines.json now."""
        keys = sorted(self.entries)
        for i, key in enumerate(keys, 1):
            self._engine_bytes(*key)
            if progress:
                progress(i, len(keys))

    def loaded(self) -> int:
        return len(self._ctx)

    def load(self, level: int, segment: int) -> None:
        self._context(level, segment)

    def preload(self, progress: Any = None) -> None:
        pairs = [(li, si) for li, lv in enumerate(self.manifest.levels) for si in range(len(lv["segments"]))]
        for i, (li, si) in enumerate(pairs, 1):
            self._context(li, si)
            if progress:
                progress(i, len(pairs))

    def unload(self, level: int, segment: int) -> None:
        self._ctx.pop((level, segment), None)

    def run_segment(self, level: int, segment: int, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        trt = _trt()
        engine, ctx = self._context(level, segment)
        entry = self.manifest.level(level)["segments"][segment]
        names_in = [i["name"] for i in entry["inputs"]]
        keep = []
        for name, arr in zip(names_in, inputs):
            try:
                engine.get_tensor_mode(name)
            except Exception:
                continue
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                continue
            t = torch.from_numpy(np.ascontiguousarray(arr)).cuda()
            keep.append(t)
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        outs = []
        for o in entry["outputs"]:
            shape = tuple(ctx.get_tensor_shape(o["name"]))
            t = torch.empty(shape, dtype=torch.float32, device="cuda")
            ctx.set_tensor_address(o["name"], t.data_ptr())
            outs.append(t)
        if not ctx.execute_async_v3(self.stream.cuda_stream):
            raise EngineError(f"TensorRT execution failed for level {level} segment {segment}")
        self.stream.synchronize()
        return [t.cpu().numpy() for t in outs]

    def run_unsplit(self, level: int, image: np.ndarray) -> np.ndarray:
        out: list[np.ndarray] = [image]
        for j in range(len(self.manifest.level(level)["segments"])):
            out = self.run_segment(level, j, out)
        return out[0]


def load(manifest: Manifest, engine_dir: str | Path, *, meta: dict[str, Any] | None = None, **_: Any) -> TrtRunner:
    meta = meta if meta is not None else read_engines_file(engine_dir, manifest)
    return TrtRunner(manifest, engine_dir, meta)
