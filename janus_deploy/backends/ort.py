"""ONNX Runtime backend (the embedded default): CPU or CUDA execution provider.

Builder: checks the plan's graphs load into sessions and records the session settings in
``engines.json`` (ORT optimises graphs when a session is created, so the plan's graphs are the
engines). Runner: sessions created lazily, all using the same in-memory copy of the plan's weight
file through ``SessionOptions.add_initializer``. Every graph is read once, checked against its
sha256 in the manifest and handed to ONNX Runtime as those bytes; the weight file is mapped and
checked once per process (:mod:`janus_deploy.plan.integrity`).

Two graph families (``graphs=``):

* ``"level"`` (default, fastest): the plan's per-level graphs with static token counts, one
  session per (level, segment).
* ``"level-free"``: the plan's level-free graphs, one session per segment serving every merging
  level (the level's reductions are an input); a level that merges nothing keeps its per-level
  graphs. ONNX Runtime holds 5-8 KB per graph node whatever the weights, so per-level sessions
  pay that once per level and level-free ones twice: memory no longer grows with the number of
  levels, at the price of a few percent at merging levels (symbolic token counts).
  docs/engines.md has the measured trade-off.

Prepacking: ORT re-lays out MatMul/Gemm weights once per session when prepacking is on; without
it every call re-packs them (a fixed cost per call that pruning does not shrink). Packed copies
are per session unless sessions share ORT's prepacked-weights container, which only its C API
offers, so by default the runner turns prepacking off to keep all levels on one copy of the
weights. ``build(..., prepack=True)`` (``build-engines --prepack``) has both, two ways:

* per-level graphs (the default family): every session is created through ONNX Runtime's C API
  (:mod:`janus_deploy.backends.ort_capi`, the library the onnxruntime wheel ships) with one
  prepacked-weights container per runner; the first session that packs a weight stores it there
  and every other level's sessions use that copy (``shared_prepacked``);
* ``graphs="level-free"``: the level-free graphs serve every level, α = 0 included (one session
  per segment, each weight in one session), in ordinary Python sessions with prepacking on.

Either way a session drops its reference to a shared weight once every consumer packed it, and
the runner then returns the weight file's mapped pages (:meth:`OrtRunner._release_mapped`), so
each weight is resident once, packed. docs/benchmarks.md has the measurement.
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
from janus_deploy.backends.ort_session import session_options
from janus_deploy.plan.integrity import CheckStats, IntegrityError, map_verified, read_verified
from janus_deploy.plan.manifest import GraphEntry, Manifest, PlanError
from janus_deploy.plan.weights import external_initializers

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
GRAPHS = ("level", "level-free")
_NP_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
              onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT8: np.int8, onnx.TensorProto.UINT8: np.uint8,
              onnx.TensorProto.INT32: np.int32}


def _ort():
    import onnxruntime

    return onnxruntime


REMEDY = "re-export the plan (`janus-deploy verify PLAN` lists every changed file)"
_ARENA_LOCK = threading.Lock()
_arena_registered = False


def _share_cpu_arena() -> None:
    """Register one CPU arena allocator with ONNX Runtime's process-wide environment (once);
    sessions created with ``session.use_env_allocators=1`` then share it."""
    global _arena_registered
    with _ARENA_LOCK:
        if _arena_registered:
            return
        ort = _ort()
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))  # registering twice does not raise
        _arena_registered = True


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
    """Lazily created ORT sessions, all sharing the plan's weights: one per (level, segment)
    (``graphs="level"``) or one per segment (``graphs="level-free"``)."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        provider: str = "CPUExecutionProvider",
        threads: int = 0,
        share_weights: bool = True,
        disable_prepacking: bool = True,
        graphs: str = "level",
        level_free_everywhere: bool = False,
        shared_prepacked: bool = False,
    ) -> None:
        if graphs not in GRAPHS:
            raise EngineError(f"unknown graph family {graphs!r}; choose one of {', '.join(GRAPHS)}")
        if shared_prepacked and (provider != PROVIDERS["cpu"] or not share_weights):
            raise EngineError("shared prepacked weights (ONNX Runtime's prepacked-weights container) are for CPU sessions "
                              "sharing the plan's weights; use --device cpu, or build without --prepack")
        self.manifest = manifest
        self.graphs = graphs
        # with level-free graphs, levels that merge nothing use their per-level graphs unless this
        # is set (verify sets it, to check the level-free graphs at r = 0 too)
        self.level_free_everywhere = level_free_everywhere
        self.provider = provider
        self.threads = threads
        self.share_weights = share_weights
        # sessions created through ONNX Runtime's C API, sharing one packed copy of every weight
        # (its prepacked-weights container; janus_deploy.backends.ort_capi); prepacking on
        self.shared_prepacked = shared_prepacked
        self.disable_prepacking = disable_prepacking and not shared_prepacked
        self._shared: Any = None  # ort_capi.SharedWeights, made with the first session
        self._sessions: dict[tuple[int | str, int | str], Any] = {}
        self._users: dict[tuple, set[int]] = {}  # session key -> levels using it
        self._routes: dict[tuple[int, int], tuple] = {}  # see _route
        self._values: dict[str, Any] = {}  # shared OrtValues by initializer name
        self._feed_positions: dict[tuple, list[tuple[int, str]]] = {}  # by session key
        self._lock = threading.Lock()
        self._weights: np.ndarray | None = None
        self.checks = CheckStats()  # what the sha256 checks of this runner's files cost

    # -- sessions ------------------------------------------------------------------------------
    def _weight_file(self) -> np.ndarray:
        """The plan's weight file, memory-mapped and checked against the manifest (hashed once
        per process)."""
        if self._weights is None:
            entry = self.manifest.weights_file
            self._weights = map_verified(self.manifest.path(entry.file), entry.sha256, "manifest.json",
                                         REMEDY, self.checks)
        return self._weights

    def _graph_bytes(self, entry: GraphEntry) -> bytes:
        """A graph file's bytes, checked against its sha256 in the manifest."""
        return read_verified(self.manifest.path(entry.file), str(entry.sha256), "manifest.json", REMEDY,
                             self.checks)

    def graph_entries(self) -> list[GraphEntry]:
        """The manifest entries of every graph this runner may load for (level, segment) pairs
        (the unsplit graphs, used by verify and profile only, are checked when loaded)."""
        seen: dict[str, GraphEntry] = {}
        for lv in self.manifest.plan_levels:
            for si in range(lv.num_segments):
                entry = self._route(lv.index, si)[1]
                seen.setdefault(entry.file, entry)
        return list(seen.values())

    def check_files(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Check the weight file and every graph this runner may load against the manifest, now
        (IntegrityError naming the first file that differs)."""
        entries = self.graph_entries()
        self._weight_file()
        for i, entry in enumerate(entries, 1):
            self._graph_bytes(entry)
            if progress:
                progress(i, len(entries))

    def _options(self, model_bytes: bytes):
        ort = _ort()
        opts = session_options(ort, self.threads, prepacking=not self.disable_prepacking)
        if self.provider == PROVIDERS["cpu"]:
            # One CPU arena for every session of the process instead of malloc per tensor (or an
            # arena per session, each holding its own peak): activations of all levels reuse the
            # same memory. It keeps its high-water mark (docs/engines.md).
            _share_cpu_arena()
            opts.enable_cpu_mem_arena = True
            opts.add_session_config_entry("session.use_env_allocators", "1")
        else:
            opts.enable_cpu_mem_arena = False
        # the graph comes as (checked) bytes; external data, where ORT reads it itself, is in the plan
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path", str(self.manifest.dir))
        blob = self._weight_file()  # checked before any session uses it, shared or not
        if self.share_weights:
            ortvalue = ort.OrtValue
            for name, arr in self._shared_arrays(model_bytes, blob).items():
                if name not in self._values:
                    self._values[name] = ortvalue.ortvalue_from_numpy(arr)
                opts.add_initializer(name, self._values[name])
        return opts

    @staticmethod
    def _shared_arrays(model_bytes: bytes, blob: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's initializers stored in the plan's weight file, as views of its mapping."""
        model = onnx.load_from_string(model_bytes)
        return {name: blob[offset: offset + length].view(_NP_DTYPES[dtype]).reshape(dims)
                for name, (dtype, offset, length, dims) in external_initializers(model).items()}

    def _create_shared_prepacked(self, data: bytes):
        """A session through ONNX Runtime's C API with the runner's prepacked-weights container:
        the first session to pack a weight stores the packed copy there, every later one (every
        level's graphs) uses it (:mod:`janus_deploy.backends.ort_capi`)."""
        from janus_deploy.backends import ort_capi

        folder = {"session.model_external_initializers_file_folder_path": str(self.manifest.dir)}
        sess = ort_capi.CSession(data, self._shared, self._shared_arrays(data, self._weight_file()),
                                 threads=self.threads, prepacking=True, mem_pattern=True, config=folder)
        ort_capi.trim_heap()  # the packed copy this session made only to find it in the container
        return sess

    def _session(self, key: tuple[int, int | str], entry: GraphEntry):
        sess = self._sessions.get(key)
        if sess is not None:
            return sess
        with self._lock:  # threads sharing a runner create each session once
            return self._sessions.get(key) or self._create(key, entry)

    def _create(self, key: tuple[int, int | str], entry: GraphEntry):
        ort = _ort()
        path = self.manifest.path(entry.file)
        data = self._graph_bytes(entry)
        if self.shared_prepacked and self._shared is None:  # loads the C library (one-line error if it cannot)
            from janus_deploy.backends.ort_capi import SharedWeights

            self._shared = SharedWeights()
        try:
            if self.shared_prepacked:
                sess = self._create_shared_prepacked(data)
            else:
                sess = ort.InferenceSession(data, self._options(data), providers=[self.provider])
        except IntegrityError:
            raise
        except Exception as exc:  # ORT raises its own types for corrupt graphs
            raise EngineError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self._sessions[key] = sess
        if self.share_weights and not self.disable_prepacking:
            self._release_mapped()
        return sess

    def _release_mapped(self) -> None:
        """With prepacking, a session packs its own copy of every weight a MatMul/Gemm consumes
        and drops its reference to the shared original once every consumer packed it (ORT's
        SessionState::PrepackConstantInitializedTensors); the mapped weight-file pages it read
        them through are then returned (MADV_DONTNEED: clean file pages, mapped again from the
        page cache when a graph reads a weight that is not packed, e.g. a LayerNorm's), so the
        process keeps the packed copy, not both. With level-free graphs serving every level
        (one session per segment), each weight is packed once: all levels at prepacked speed
        in about the weight bytes (docs/benchmarks.md)."""
        import mmap

        raw = getattr(self._weights, "_mmap", None)
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if raw is not None and advice is not None and len(raw):
            raw.madvise(advice)

    def _route(self, level: int, segment: int) -> tuple[tuple, GraphEntry, tuple[np.ndarray, ...]]:
        """Session key, manifest entry and extra inputs (a level-free graph's reductions) of the
        graph that runs (level, segment); cached, since this runs on every request. With
        level-free graphs, a level that merges nothing (α = 0) still runs its per-level graphs:
        a level-free graph would compute every block's matching only to discard it."""
        route = self._routes.get((level, segment))
        if route is None:
            lv = self.manifest.plan_level(level)
            if self.graphs == "level-free" and (self.level_free_everywhere or any(lv.reductions)):
                graph = self.manifest.level_free_graphs[segment]
                a, b = graph.blocks or (1, 0)
                extra = (np.asarray(lv.reductions[a - 1: b], dtype=np.int64),) if graph.takes_reductions else ()
                route = (("level-free", segment), graph, extra)
            else:
                route = ((level, segment), lv.segments[segment], ())
            self._routes[(level, segment)] = route
        return route

    def session(self, level: int, segment: int):
        key, entry, _ = self._route(level, segment)
        return self._session_of(level, key, entry)

    def load(self, level: int, segment: int) -> None:
        self.session(level, segment)

    def graph_entry(self, level: int, segment: int) -> GraphEntry:
        """The manifest entry (file, sha256) of the graph that runs (level, segment)."""
        return self._route(level, segment)[1]

    def _session_of(self, level: int, key: tuple, entry: GraphEntry):
        users = self._users.get(key)
        if users is None or level not in users:
            with self._lock:  # unload() reads the users under the lock
                self._users.setdefault(key, set()).add(level)
        return self._session(key, entry)

    def loaded(self) -> int:
        """Sessions resident (with level-free graphs one serves a segment at every level)."""
        return len(self._sessions)

    def unload(self, level: int, segment: int) -> None:
        """Release (level, segment); its session goes once no level uses it (the shared weights
        stay mapped for the others)."""
        key = self._route(level, segment)[0]
        with self._lock:
            users = self._users.get(key, set())
            users.discard(level)
            if not users:
                self._sessions.pop(key, None)

    def preload(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Create the sessions of every (level, segment) (the unsplit graphs stay lazy: only
        verify/profile use them)."""
        pairs = [(lv.index, si) for lv in self.manifest.plan_levels for si in range(lv.num_segments)]
        firsts: dict[tuple, tuple[int, int]] = {}  # one (level, segment) per distinct session
        for li, si in pairs:
            key = self._route(li, si)[0]
            self._users.setdefault(key, set()).add(li)
            firsts.setdefault(key, (li, si))
        for i, (li, si) in enumerate(firsts.values(), 1):
            self.session(li, si)
            if progress:
                progress(i, len(firsts))

    # -- running -------------------------------------------------------------------------------
    def _positions(self, key, sess, entry: GraphEntry) -> list[tuple[int, str]]:
        """(input position, name) of the inputs a graph really consumes (a head-only segment may
        not read ``size``); cached, since this runs on every request."""
        pos = self._feed_positions.get(key)
        if pos is None:
            wanted = {i.name for i in sess.get_inputs()}
            pos = [(i, spec.name) for i, spec in enumerate(entry.inputs) if spec.name in wanted]
            self._feed_positions[key] = pos
        return pos

    def run_segment(self, level: int, segment: int, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        key, entry, extra = self._route(level, segment)
        sess = self._session_of(level, key, entry)
        if extra:
            inputs = [*inputs, *extra]
        feed = {name: inputs[i] for i, name in self._positions(key, sess, entry)}
        return sess.run(None, feed)

    def run_unsplit(self, level: int, image: np.ndarray) -> np.ndarray:
        entry = self.manifest.plan_level(level).unsplit
        if entry is None:
            raise PlanError(f"level {level} of the plan has no unsplit graph")
        sess = self._session((level, "full"), entry)
        return sess.run(None, {"image": image})[0]


def build(
    manifest: Manifest,
    out_dir: Path,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    device_name: str | None = None,
    graphs: str = "level",
    prepack: bool = False,
    calibration: str | Path | None = None,
    calibration_images: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Check every graph of the chosen family (``level`` or ``level-free``, see the module
    docstring) loads in ORT on this device and write ``engines.json``. ``prepack`` (CPU):
    prepacked weights, each packed once for every level: per-level graphs share one packed copy
    through ONNX Runtime's prepacked-weights container (C API), level-free graphs serve every level
    (α = 0 too) from one session per segment (the module docstring). int8: Q/DQ graphs calibrated on ``calibration``
    (:func:`janus_deploy.backends.qdq.build_ort`)."""
    ort = _ort()
    if prepack and device != "cpu":
        raise EngineError(f"--prepack shares packed weights between CPU sessions; --device {device} engines "
                          "leave it out")
    if precision == "int8":
        from janus_deploy.backends import qdq

        if graphs != "level":
            raise EngineError("int8 engines use the per-level graphs (Q/DQ scales are calibrated per level); "
                              "leave --graphs out")
        return qdq.build_ort(manifest, out_dir, calibration=calibration, calibration_images=calibration_images,
                             device=device, device_name=device_name, progress=progress)
    if calibration is not None:
        raise EngineError(f"--calibration is for --precision int8 only (this build is {precision}); leave it out")
    if precision != "fp32":
        raise EngineError(
            f"the ort backend builds fp32 and int8 engines; {precision} is available with --backend trt (it needs a GPU)"
        )
    provider = resolve_provider(device)
    level_free = prepack and graphs == "level-free"
    runner = OrtRunner(manifest, provider=provider, graphs=graphs, disable_prepacking=not prepack,
                       level_free_everywhere=level_free, shared_prepacked=prepack and graphs == "level")
    t0 = time.perf_counter()
    runner.preload(progress)
    by_graph: dict[str, dict[str, Any]] = {}  # one entry per graph, with the levels it serves
    for lv in manifest.plan_levels:
        li = lv.index
        for si in range(lv.num_segments):
            entry = runner.graph_entry(li, si)
            e = by_graph.setdefault(entry.file, {"segment": si, "levels": [], "file": entry.file,
                                                  "sha256": entry.sha256})
            e["levels"].append(li)
    engines = list(by_graph.values())
    data = {
        "backend": "ort",
        "plan_hash": manifest.hash,
        "plan_dir": str(manifest.dir.resolve()) if manifest.dir else None,
        "precision": precision,
        "device": device,
        "provider": provider,
        "device_name": device_name,
        "onnxruntime_version": ort.__version__,
        "session": {"graph_optimization_level": "ORT_ENABLE_ALL", "share_weights": runner.share_weights,
                    "disable_prepacking": runner.disable_prepacking, "graphs": graphs,
                    "level_free_everywhere": runner.level_free_everywhere,
                    "shared_prepacked": runner.shared_prepacked},
        "build_seconds": round(time.perf_counter() - t0, 3),
        "engines": engines,
    }
    write_engines_file(out_dir, data)
    return data


def load(manifest: Manifest, engine_dir: str | Path, *, threads: int = 0,
         meta: dict[str, Any] | None = None, concurrency: int | None = None) -> OrtRunner:
    """``meta``: the engines.json already read by the caller (read here otherwise).
    ``concurrency`` is accepted for the backends' common signature: an ORT session serves
    concurrent runs itself, so there is no pool to size."""
    data = meta if meta is not None else read_engines_file(engine_dir, manifest)
    if data["backend"] != "ort":
        raise EngineError(f"{engine_dir} holds {data['backend']} engines, not ort")
    if data.get("precision") == "int8":  # the engine folder's Q/DQ graphs
        from janus_deploy.backends.qdq import QdqOrtRunner

        return QdqOrtRunner(manifest, engine_dir, data, provider=resolve_provider(data.get("device", "cpu")),
                            threads=threads)
    problems = index_problems(manifest, data)
    if problems:
        raise EngineError(f"{Path(engine_dir) / 'engines.json'} does not match the plan: {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                          + "; rebuild the engines with `janus-deploy build-engines`")
    provider = resolve_provider(data.get("device", "cpu"))
    session = data.get("session", {})
    return OrtRunner(manifest, provider=provider, threads=threads,
                     share_weights=session.get("share_weights", True),
                     disable_prepacking=session.get("disable_prepacking", True),
                     graphs=session.get("graphs", "level"),
                     level_free_everywhere=bool(session.get("level_free_everywhere", False)),
                     shared_prepacked=bool(session.get("shared_prepacked", False)))


def index_problems(manifest: Manifest, data: dict[str, Any]) -> list[str]:
    """Entries of an ort ``engines.json`` whose file is not one of the plan's graphs or whose
    sha256 differs from the manifest's (the graphs themselves are checked when loaded)."""
    plan_sha = manifest.graph_sha256
    problems = []
    for i, e in enumerate(data.get("engines") or []):
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or not isinstance(e.get("sha256"), str):
            problems.append(f"engines[{i}] lacks a file name or a sha256")
        elif e["file"] not in plan_sha:
            problems.append(f"it lists {e['file']}, which is not a graph of this plan")
        elif e["sha256"] != plan_sha[e["file"]]:
            problems.append(f"it records sha256 {e['sha256'][:12]}… for {e['file']}, the plan's manifest "
                            f"{plan_sha[e['file']][:12]}…")
    return problems
