"""Backends: a builder (plan -> engine directory) and a runner per runtime.

``ort`` (ONNX Runtime, CPU or CUDA) is the embedded default; ``trt`` (TensorRT 10) needs an
NVIDIA GPU and the [trt] extra. Optional imports stay inside each backend module.
"""

from __future__ import annotations

from pathlib import Path

from janus_deploy.backends.base import EngineError, Runner, read_engines_file, run_segments
from janus_deploy.plan.manifest import Manifest

BACKENDS = ("ort", "trt")


def build_engines(manifest: Manifest, out_dir: str | Path, backend: str = "ort", **kwargs):
    """Build engines for every (level, segment) of a plan into ``out_dir``."""
    if backend == "ort":
        from janus_deploy.backends import ort

        return ort.build(manifest, Path(out_dir), **kwargs)
    if backend == "trt":
        from janus_deploy.backends import trt

        return trt.build(manifest, Path(out_dir), **kwargs)
    raise EngineError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def load_runner(manifest: Manifest, engine_dir: str | Path, **kwargs) -> Runner:
    """A runner for the engines in ``engine_dir`` (backend read from its engines.json)."""
    backend = read_engines_file(engine_dir, manifest)["backend"]
    if backend == "ort":
        from janus_deploy.backends import ort

        return ort.load(manifest, engine_dir, **kwargs)
    if backend == "trt":
        from janus_deploy.backends import trt

        return trt.load(manifest, engine_dir, **kwargs)
    raise EngineError(f"{engine_dir}: unknown backend {backend!r}")


__all__ = ["BACKENDS", "EngineError", "Runner", "build_engines", "load_runner", "run_segments"]
