"""Backends: a builder (plan -> engine directory) and a runner per runtime, behind one registry.

``ort`` (ONNX Runtime, CPU or CUDA) is the embedded default; ``trt`` (TensorRT 10 or 11) needs an
NVIDIA GPU and the [trt] extra. Each backend module defines ``build(manifest, out_dir, **kw)``
and ``load(manifest, engine_dir, **kw)``; the registry names the module, which is imported only
when that backend is used (optional heavy imports stay inside it).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from janus_deploy.backends.base import EngineError, Runner, read_engines_file, run_segments
from janus_deploy.plan.manifest import Manifest

#: backend name -> module implementing ``build`` and ``load``
REGISTRY: dict[str, str] = {
    "ort": "janus_deploy.backends.ort",
    "trt": "janus_deploy.backends.trt",
}
BACKENDS = tuple(REGISTRY)


def backend_module(name: str, where: str = "") -> ModuleType:
    """The module of backend ``name`` (EngineError naming the choices otherwise)."""
    module = REGISTRY.get(name)
    if module is None:
        raise EngineError(f"{where}unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(module)


def build_engines(manifest: Manifest, out_dir: str | Path, backend: str = "ort", **kwargs):
    """Build engines for every (level, segment) of a plan into ``out_dir``."""
    return backend_module(backend).build(manifest, Path(out_dir), **kwargs)


def load_runner(manifest: Manifest, engine_dir: str | Path, **kwargs) -> Runner:
    """A runner for the engines in ``engine_dir`` (backend read from its engines.json)."""
    data = read_engines_file(engine_dir, manifest)
    return backend_module(data["backend"], f"{engine_dir}: ").load(manifest, engine_dir, meta=data, **kwargs)


__all__ = ["BACKENDS", "REGISTRY", "EngineError", "Runner", "backend_module", "build_engines", "load_runner",
           "run_segments"]
