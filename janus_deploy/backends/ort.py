"""ONNX Runtime backend (the embedded default): CPU or CUDA execution provider.

Builder: checks every segment graph of the plan loads into a session and records the session settings in
``engines.json`` (ORT optimises graphs when a session is created, so the plan's graphs are the
engines). Runner: one session per (level, segment), created lazily; every session uses the same
in-memory copy of the plan's weight file through ``SessionOptions.add_initializer``, so keeping all
levels resident costs little more than the weights once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from janus_deploy.backends.base import EngineError, read_engines_file, write_engines_file
from janus_deploy.plan.manifest import Manifest
from janus_deploy.plan.weights import external_initializers

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
_NP_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
              onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT8: np.int8, onnx.TensorProto.UINT8: np.uint8,
              onnx.TensorProto.INT32: np.int32}


def _ort():
    import onnxruntime

    return onnxruntime


def resolve_provider(device: str) -> str:
    ort = _ort()
    if device not in PROVIDERS:
        raise EngineError(f"unknown ORT device {device!r}; choose one of {', '.join(PROVIDERS)}")
    name = PROVIDERS[device]
    if name not in ort.get_available_providers():
        raise EngineError(
            f"{name} is not available in this onnxruntime ({', '.join(ort.get_available_providers())}); "
            "install the [gpu] extra (onnxruntime-gpu) on a machine with CUDA, or use --device cpu"
        )
    return name


class OrtRunner:
    """Lazily created ORT sessions per (level, segment), all sharing the plan's weights."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        provider: str = "CPUExecutionProvider",
        threads: int = 0,
        share_weights: bool = True,
        disable_prepacking: bool = True,
    ) -> None:
        self.manifest = manifest
        self.provider = provider
        self.threads = threads
        self.share_weights = share_weights
        self.disable_prepacking = disable_prepacking
        self._sessions: dict[tuple[int, int | str], Any] = {}
        self._values: dict[str, Any] = {}  # shared OrtValues by initializer name
        self._feed_positions: dict[tuple[int, int], list[tuple[int, str]]] = {}
        self._lock = threading.Lock()
        self._weights: np.ndarray | None = None

    # -- sessions ------------------------------------------------------------------------------
    def _weight_file(self) -> np.ndarray:
        if self._weights is None:
            path = self.manifest.path(self.manifest.data["weights"]["file"])
            if not path.is_file():
                raise EngineError(f"plan weight file {path} is missing; re-export the plan")
            self._weights = np.memmap(path, dtype=np.uint8, mode="r")
        return self._weights

    def _options(self, graph_path: Path):
        ort = _ort()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = False  # per-session arenas would hold every level's activations
        opts.enable_mem_pattern = False
        # Segments run one after another in different sessions: a finished session's spinning
        # worker threads would steal the cores the next segment needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.disable_prepacking:
            opts.add_session_config_entry("session.disable_prepacking", "1")
        if self.share_weights:
            ortvalue = ort.OrtValue
            blob = self._weight_file()
            model = onnx.load(str(graph_path), load_external_data=False)
            for name, (dtype, offset, length, dims) in external_initializers(model).items():
                if name not in self._values:
                    arr = blob[offset: offset + length].view(_NP_DTYPES[dtype]).reshape(dims)
                    self._values[name] = ortvalue.ortvalue_from_numpy(arr)
                opts.add_initializer(name, self._values[name])
        return opts

    def _session(self, key: tuple[int, int | str], rel: str):
        sess = self._sessions.get(key)
        if sess is not None:
            return sess
        with self._lock:  # threads sharing a runner create each session once
            return self._sessions.get(key) or self._create(key, rel)

    def _create(self, key: tuple[int, int | str], rel: str):
        ort = _ort()
        path = self.manifest.path(rel)
        if not path.is_file():
            raise EngineError(f"graph {path} is missing; re-export the plan")
        try:
            sess = ort.InferenceSession(str(path), self._options(path), providers=[self.provider])
        except Exception as exc:  # ORT raises its own types for corrupt graphs
            raise EngineError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self._sessions[key] = sess
        return sess

    def session(self, level: int, segment: int):
        entry = self.manifest.level(level)["segments"][segment]
        return self._session((level, segment), entry["file"])

    def loaded(self) -> int:
        return len(self._sessions)

    def unload(self, level: int, segment: int) -> None:
        """Drop a session (the shared weights stay mapped for the others)."""
        with self._lock:
            self._sessions.pop((level, segment), None)

    def preload(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Create every segment session (the unsplit graphs stay lazy: only verify/profile use them)."""
        keys = [(li, si) for li, lv in enumerate(self.manifest.levels) for si in range(len(lv["segments"]))]
        for i, (li, si) in enumerate(keys, 1):
            self.session(li, si)
            if progress:
                progress(i, len(keys))

    # -- running -------------------------------------------------------------------------------
    def _positions(self, key: tuple[int, int], sess, entry: dict[str, Any]) -> list[tuple[int, str]]:
        """(input position, name) of the inputs a graph really consumes (a head-only segment may
        not read ``size``); cached, since this runs on every request."""
        pos = self._feed_positions.get(key)
        if pos is None:
            wanted = {i.name for i in sess.get_inputs()}
            pos = [(i, spec["name"]) for i, spec in enumerate(entry["inputs"]) if spec["name"] in wanted]
            self._feed_positions[key] = pos
        return pos

    def run_segment(self, level: int, segment: int, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        entry = self.manifest.level(level)["segments"][segment]
        sess = self.session(level, segment)
        feed = {name: inputs[i] for i, name in self._positions((level, segment), sess, entry)}
        return sess.run(None, feed)

    def run_unsplit(self, level: int, image: np.ndarray) -> np.ndarray:
        entry = self.manifest.level(level)["unsplit"]
        sess = self._session((level, "full"), entry["file"])
        return sess.run(None, {"image": image})[0]


def build(
    manifest: Manifest,
    out_dir: Path,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    device_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Check every graph loads in ORT on this device and write ``engines.json``."""
    ort = _ort()
    if precision != "fp32":
        raise EngineError(
            f"the ort backend builds fp32 engines; {precision} is available with --backend trt "
            "(fp16 needs a GPU; int8 is experimental there)"
        )
    provider = resolve_provider(device)
    runner = OrtRunner(manifest, provider=provider)
    t0 = time.perf_counter()
    runner.preload(progress)
    engines = [
        {"level": li, "segment": si, "file": seg["file"], "sha256": seg["sha256"]}
        for li, lv in enumerate(manifest.levels) for si, seg in enumerate(lv["segments"])
    ]
    data = {
        "backend": "ort",
        "plan_hash": manifest.hash,
        "plan_dir": str(manifest.dir.resolve()) if manifest.dir else None,
        "precision": precision,
        "device": device,
        "provider": provider,
        "device_name": device_name,
        "onnxruntime_version": ort.__version__,
        "session": {"graph_optimization_level": "ORT_ENABLE_ALL", "share_weights": True,
                    "disable_prepacking": True},
        "build_seconds": round(time.perf_counter() - t0, 3),
        "engines": engines,
    }
    write_engines_file(out_dir, data)
    return data


def load(manifest: Manifest, engine_dir: str | Path, *, threads: int = 0) -> OrtRunner:
    data = read_engines_file(engine_dir, manifest)
    if data["backend"] != "ort":
        raise EngineError(f"{engine_dir} holds {data['backend']} engines, not ort")
    provider = resolve_provider(data.get("device", "cpu"))
    session = data.get("session", {})
    return OrtRunner(manifest, provider=provider, threads=threads,
                     share_weights=session.get("share_weights", True),
                     disable_prepacking=session.get("disable_prepacking", True))
