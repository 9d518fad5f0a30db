"""Export the cloud half of a plan as a Triton Inference Server model repository.

Layout (``docs/scale-out.md`` has the why)::

    REPO/janus-repository.json          what was exported (plan hash, platform, codecs, models)
    REPO/janus_L{l}_seg{k}/             one model per (level, segment) graph the cloud runs
        config.pbtxt, 1/model.onnx + 1/weights.bin | 1/model.plan [, 1/model.py]
    REPO/janus_decode_frame/            split 0: uint8 frame -> normalised float32 image
    REPO/janus_decode_{fp32,fp16,int8,int4}/ payload codecs' decode (wire tensors -> float32 tokens, size)
    REPO/janus_decode_coded/            frame codecs' decode (JPEG/PNG rows -> uint8 frames; python backend)
    REPO/janus_probe/                   the edge's bandwidth probe as a V2 model
    REPO/janus_L{l}_S{s}/               ensemble per (level, split), named like the built-in server's
                                        models, taking the --codec's tensors
    REPO/janus_L{l}_S{s}_{codec}/       the same ensemble for each of --codecs (a Triton input has one
                                        datatype, so each codec needs its own model)

Platforms: ``onnxruntime`` (Triton's onnxruntime backend, for ``ort`` engines), ``tensorrt``
(``tensorrt_plan`` models from ``trt`` engines; decode steps stay ONNX), ``python`` (every model
a python-backend model running its ONNX graph with ONNX Runtime: what the ``tritonserver``
bundled in the nvidia-pytriton wheel can load).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from janus_deploy import JanusError, __version__
from janus_deploy.plan.manifest import PlanModel
from janus_deploy.triton.dialect import SERVER_TIMING
from janus_deploy.triton.graphs import DECODE_CODECS, decode_graph, frame_graph, probe_graph
from janus_deploy.triton.pbtxt import TRITON_DTYPES, V2_TO_TRITON, Batching, ModelConfig, Step, Tensor
from janus_deploy.wire.codecs import FRAME_CODED

if TYPE_CHECKING:
    from janus_deploy.plan.manifest import PlanModel

PLATFORMS = ("auto", "onnxruntime", "tensorrt", "python")
KINDS = ("auto", "cpu", "gpu")
WEIGHT_MODES = ("link", "copy")
REPOSITORY_FILE = "janus-repository.json"
REPOSITORY_KIND = "janus-deploy/triton-repository"
PROBE_MODEL = "janus_probe"
FRAME_MODEL = "janus_decode_frame"
CODED_MODEL = "janus_decode_coded"  # frame codecs' images -> uint8 frames (python backend, simplejpeg + Pillow)
CODED = "coded"  # the suffix of the split-0 tails that take frame_coded
DEFAULT_CODEC = "fp16"
DEFAULT_MAX_BATCH = 64
VERSION = "1"


class TritonExportError(JanusError):
    """The repository cannot be written (bad options, engines or plan)."""


@dataclass(frozen=True)
class ExportOptions:
    """``codec``: the codec of the plain ``janus_L{l}_S{s}`` ensembles; ``codecs``: one
    ``janus_L{l}_S{s}_{codec}`` ensemble each. ``max_batch``: Triton's max_batch_size.
    ``preferred`` / ``max_queue_delay_us``: the dynamic batcher (``dynamic=False``: none).
    ``instances`` / ``kind``: instance group of every non-ensemble model. ``threads``: intra-op
    threads per instance. ``weights``: ``link`` (every segment model's ``weights.bin`` a hard link
    of the plan's one weight file: one copy on disk) or ``copy`` (each model a file of only its
    own tensors: for object stores, which have no links). ``tails``: export only these tails.
    ``fuse`` (python platform): each ``janus_L{l}_S{s}[_{codec}]`` is one python model running the
    ensemble's graphs in one stub process instead of an ensemble of per-step models (no process
    hop per step; each tail holds its own sessions, so more memory). None (the default): fused
    tails on the python platform (the layout that meets the serving target against the built-in
    server, ``docs/benchmarks.md``), ensembles on the in-process platforms; False: ensembles."""

    platform: str = "auto"
    codec: str = DEFAULT_CODEC
    codecs: tuple[str, ...] = DECODE_CODECS
    max_batch: int | None = None  # None: the TensorRT engines' max_batch (tensorrt platform), else 64
    dynamic: bool = True
    preferred: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    instances: int = 1
    kind: str = "auto"
    threads: int = 1
    weights: str = "link"
    tails: tuple[str, ...] = ()  # only these janus_L{l}_S{s} (and what they run); empty: every tail
    fuse: bool | None = None  # one model per tail running decode + segments in one stub; None: on python


@dataclass
class Repository:
    """What :func:`export_repository` wrote."""

    path: Path
    platform: str
    plan_hash: str
    tails: dict[str, dict[str, Any]]  # ensemble name -> level, split, codec, steps
    segments: list[str]
    decoders: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return [*self.segments, *self.decoders, PROBE_MODEL, *self.tails]


def segment_model(level: int, segment: int) -> str:
    return f"janus_L{level}_seg{segment}"


def tail_ensemble(level: int, split: int, codec: str | None = None) -> str:
    """The ensemble of tail (level, split): the plain built-in name, or its ``codec`` variant."""
    from janus_deploy.wire.v2 import model_name

    base = model_name(level, split)
    return base if codec is None else f"{base}_{codec}"


def wire_codec(codec: str) -> str:
    """The tensor codec a (possibly compressing) codec sends: fp16-zstd sends fp16 tensors."""
    from janus_deploy.wire.codecs import get_codec

    c = get_codec(codec)
    if c.kind == "frame":
        return CODED
    return {"float32": "fp32", "float16": "fp16", "int8": "int8", "int4": "int4"}[c.token_dtype]


def _graph_io(model: onnx.ModelProto) -> tuple[list[Tensor], list[Tensor]]:
    def conv(vis) -> list[Tensor]:
        out = []
        for v in vis:
            tt = v.type.tensor_type
            if tt.elem_type not in TRITON_DTYPES:
                raise TritonExportError(f"graph tensor {v.name!r} has ONNX type {tt.elem_type}, which the exporter does not map")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            out.append(Tensor(v.name, TRITON_DTYPES[tt.elem_type], tuple(dims)))
        return out

    return conv(model.graph.input), conv(model.graph.output)


def _unbatch(ts: list[Tensor]) -> list[Tensor]:
    return [Tensor(t.name, t.data_type, t.dims[1:]) for t in ts]


def _resolve(options: ExportOptions, engines: dict[str, Any]) -> tuple[str, str]:
    backend = engines.get("backend")
    platform = options.platform
    if platform not in PLATFORMS:
        raise TritonExportError(f"unknown --platform {platform!r}; choose one of {', '.join(PLATFORMS)}")
    if platform == "auto":
        platform = {"ort": "onnxruntime", "trt": "tensorrt"}.get(backend, "")
        if not platform:
            raise TritonExportError(f"engines of backend {backend!r} have no Triton platform; pass --platform")
    if platform == "tensorrt" and backend != "trt":
        raise TritonExportError(f"--platform tensorrt needs trt engines (these are {backend}); build them with "
                                "`janus-deploy build-engines --backend trt` on the serving GPU")
    if options.kind not in KINDS:
        raise TritonExportError(f"unknown --kind {options.kind!r}; choose one of {', '.join(KINDS)}")
    kind = options.kind
    if kind == "auto":
        kind = "gpu" if backend == "trt" or engines.get("device") == "cuda" else "cpu"
    if platform == "tensorrt" and kind != "gpu":
        raise TritonExportError("TensorRT models run on GPU instances only; drop --kind cpu")
    return platform, "KIND_GPU" if kind == "gpu" else "KIND_CPU"


def _max_batch(o: ExportOptions, engines: dict[str, Any], platform: str) -> int:
    """Triton's max_batch_size: as asked, else what the TensorRT engines' profile takes (engines.json),
    else DEFAULT_MAX_BATCH (ONNX Runtime takes any batch)."""
    if o.max_batch is not None:
        return int(o.max_batch)
    if platform == "tensorrt" and isinstance(engines.get("max_batch"), int):
        return int(engines["max_batch"])
    return DEFAULT_MAX_BATCH


def _check_options(o: ExportOptions, engines: dict[str, Any], platform: str) -> None:
    assert o.max_batch is not None  # resolved by _max_batch before the checks
    from janus_deploy.wire.codecs import is_frame_codec

    if o.codec not in DECODE_CODECS:
        raise TritonExportError(f"--codec {o.codec!r}: the plain ensembles take a token codec ({', '.join(DECODE_CODECS)})")
    for c in o.codecs:
        if c not in (*DECODE_CODECS, CODED) and not is_frame_codec(c):
            extra = (" (fp16-zstd sends fp16 tensors: use fp16; Triton takes gzip/deflate bodies, not zstd, so "
                     "the edge compresses with gzip against Triton)") if c == "fp16-zstd" else ""
            raise TritonExportError(f"unknown codec {c!r} for Triton; choose from {', '.join(DECODE_CODECS)} and "
                                    f"{CODED} (frame codecs: jpeg95, jpeg85, jpeg70, png){extra}")
    if not o.codecs:
        raise TritonExportError("--codecs needs at least one codec")
    if o.max_batch < 1:
        raise TritonExportError(f"--max-batch must be >= 1, got {o.max_batch}")
    if platform == "tensorrt" and o.max_batch > int(engines.get("max_batch", o.max_batch)):
        raise TritonExportError(f"--max-batch {o.max_batch} is over what the TensorRT engines were built for "
                                f"({engines['max_batch']}); pass --max-batch {engines['max_batch']}")
    if platform == "tensorrt" and int(engines.get("min_batch", 1)) > 1:
        raise TritonExportError(f"the TensorRT engines take batches from {engines['min_batch']}, and Triton's "
                                "batcher sends any batch from 1; rebuild them with --min-batch 1")
    if platform == "tensorrt" and engines.get("graphs") == "level-free":
        raise TritonExportError("level-free TensorRT engines (one per segment, a profile per level) are not exported "
                                "to Triton: each Triton model loads its own plan, so the weights would not be shared; "
                                "build per-level engines (--graphs level) for Triton")
    if any(p < 1 or p > o.max_batch for p in o.preferred):
        raise TritonExportError(f"--preferred-batch sizes must lie in 1..{o.max_batch}, got {list(o.preferred)}")
    if o.max_queue_delay_us < 0:
        raise TritonExportError(f"--max-queue-delay-us must be >= 0, got {o.max_queue_delay_us}")
    if o.instances < 1:
        raise TritonExportError(f"--instances must be >= 1, got {o.instances}")
    if o.threads < 0:
        raise TritonExportError(f"--threads must be >= 0, got {o.threads}")
    if o.fuse and platform != "python":
        raise TritonExportError("--fuse is for --platform python (in-process backends have no per-step process hop)")
    if o.weights not in WEIGHT_MODES:
        raise TritonExportError(f"unknown --weights {o.weights!r}; choose one of {', '.join(WEIGHT_MODES)}")


def export_repository(manifest: Any, engine_dir: str | Path, out: str | Path,
                      options: ExportOptions = ExportOptions(), *, force: bool = False) -> Repository:
    """Write the Triton repository of ``manifest``'s cloud half to ``out`` (see module docstring)."""
    from janus_deploy.backends.base import read_engines_file
    from janus_deploy.wire.spec import tail_models

    engines = read_engines_file(engine_dir, manifest)
    platform, kind = _resolve(options, engines)
    options = replace(options, max_batch=_max_batch(options, engines, platform))  # engines.json's batch range
    _check_options(options, engines, platform)
    if options.fuse is None:  # the default layout: fused tails where the platform has a process hop per step
        options = replace(options, fuse=platform == "python")
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise TritonExportError(f"{out} exists and is not a directory")
        marker = out / REPOSITORY_FILE
        if any(out.iterdir()) and not marker.is_file():
            raise TritonExportError(f"{out} is a non-empty directory that is not a janus-deploy Triton repository; "
                                    "give a new or empty --out")
        if any(out.iterdir()) and not force:
            raise TritonExportError(f"{out} already holds a repository; pass --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)

    batching = Batching(options.dynamic, tuple(options.preferred), options.max_queue_delay_us, options.instances, kind)
    mb = options.max_batch
    params = _platform_params(platform, options.threads)
    specs = tail_models(manifest)
    if options.tails:
        unknown = sorted(set(options.tails) - set(specs))
        if unknown:
            raise TritonExportError(f"--tails: this plan has no tail {', '.join(unknown)} (it has "
                                    f"janus_L0..{len(manifest.plan_levels) - 1}_S<split> for splits "
                                    f"{sorted({s.split for s in specs.values()})})")
        specs = {k: v for k, v in specs.items() if k in options.tails}

    # -- segment models: every (level, segment) some tail runs
    seg_io: dict[tuple[int, int], tuple[list[Tensor], list[Tensor]]] = {}
    graphs: dict[str, onnx.ModelProto] = {}  # model name -> graph (what a fused tail runs)
    keys = sorted({k for s in specs.values() for k in s.segment_keys})
    trt_files = {(e["level"], e["segment"]): e["file"] for e in engines.get("engines", [])} if platform == "tensorrt" else {}
    for level, seg in keys:
        entry = manifest.plan_level(level).segments[seg]
        graph = onnx.load(str(manifest.path(entry.file)), load_external_data=False)
        ins, outs = _graph_io(graph)
        seg_io[(level, seg)] = (ins, outs)
        graphs[segment_model(level, seg)] = graph

    # -- decode steps and the probe (ONNX graphs; on tensorrt repositories they run on ONNX Runtime)
    small = "onnxruntime" if platform == "tensorrt" else platform
    small_params = _platform_params(small, 1)
    small_batching = Batching(options.dynamic, (), options.max_queue_delay_us, options.instances,
                              "KIND_CPU" if small != "onnxruntime" or kind == "KIND_CPU" else kind)
    m = manifest.model_info
    decoders: list[str] = []
    needed = {wire_codec(c) if c != CODED else CODED for c in (options.codec, *options.codecs)}  # CODED: frame codecs
    if any(s.split == 0 for s in specs.values()):
        decoders.append(FRAME_MODEL)
        graphs[FRAME_MODEL] = frame_graph(m.img_size, list(m.mean), list(m.std))
    first_reads_all = all({"tokens", "size"} <= {t.name for t in seg_io[(s.level, s.first_segment)][0]}
                          for s in specs.values() if s.split > 0)
    for codec in DECODE_CODECS:
        if codec in needed and (codec != "fp32" or not first_reads_all):
            name = f"janus_decode_{codec}"
            decoders.append(name)
            graphs[name] = decode_graph(codec, m.embed_dim)
    coded = CODED in needed and any(s.split == 0 for s in specs.values())
    if coded:
        decoders.append(CODED_MODEL)
    _write_small(out, PROBE_MODEL, probe_graph(), 0, small, Batching(False, (), 0, 1, "KIND_CPU"), small_params)

    # -- ensembles: one per (level, split) for the plain name, one per codec
    tails: dict[str, dict[str, Any]] = {}
    ensembles: list[ModelConfig] = []
    for spec in specs.values():
        variants: list[tuple[str, str | None]] = [(options.codec, None)]
        if spec.split > 0:
            variants += [(c, c) for c in options.codecs if c in DECODE_CODECS]
        elif coded:
            variants.append((CODED, CODED))
        for codec, suffix in variants:
            name = tail_ensemble(spec.level, spec.split, suffix)
            wire = codec if spec.split > 0 else (CODED if suffix == CODED else None)
            cfg = _ensemble(name, spec, wire, seg_io, mb, set(decoders))
            label = codec if spec.split else ("coded" if suffix == CODED else "frame")
            cfg.parameters = {"janus_plan_hash": manifest.hash, "janus_level": str(spec.level),
                              "janus_split": str(spec.split), "janus_codec": label}
            ensembles.append(cfg)
            tails[name] = {"level": spec.level, "split": spec.split, "codec": label,
                           "steps": [s.model for s in cfg.steps]}
    # -- the one place the fuse mode decides the layout: one python model per tail, or the
    #    segment, decode and ensemble models a Triton ensemble chains
    if options.fuse:
        for cfg in ensembles:
            _write_fused(out, manifest, cfg, graphs, batching, params, options.weights)
        keys, decoders = [], []
    else:
        if coded:
            _write_coded_decoder(out, m, mb, small_batching)
        for level, seg in keys:
            name = segment_model(level, seg)
            ins, outs = seg_io[(level, seg)]
            vdir = out / name / VERSION
            vdir.mkdir(parents=True)
            if platform == "tensorrt":
                _place(Path(engine_dir) / trt_files[(level, seg)], vdir / "model.plan")
            else:
                _write_graph(manifest, graphs[name], vdir, options.weights)
            _write_config(out, ModelConfig(name, mb, _unbatch(ins), _unbatch(outs), batching=batching,
                                           parameters={**params, "janus_level": str(level), "janus_segment": str(seg)},
                                           warmup=True, **_runtime(platform)), platform)
        for name in decoders:
            if name != CODED_MODEL:
                _write_small(out, name, graphs[name], mb, small, small_batching, small_params)
        for cfg in ensembles:
            _write_config(out, cfg, "ensemble")
            (out / cfg.name / VERSION).mkdir(exist_ok=True)
    repo = Repository(out, platform, manifest.hash, tails, [segment_model(*k) for k in keys], decoders,
                      {**asdict(options), "kind": kind})
    (out / REPOSITORY_FILE).write_text(json.dumps({
        "kind": REPOSITORY_KIND, "janus_deploy_version": __version__, "plan_hash": manifest.hash,
        "plan_model": m.name, "platform": platform, "engines_backend": engines.get("backend"),
        "options": repo.options, "segments": repo.segments, "decoders": decoders, "probe": PROBE_MODEL,
        "tails": tails}, indent=1))
    return repo


def read_repository(path: str | Path) -> dict[str, Any]:
    """The ``janus-repository.json`` of an exported repository (TritonExportError otherwise)."""
    p = Path(path) / REPOSITORY_FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        raise TritonExportError(f"{path} is not a janus-deploy Triton repository (no readable {REPOSITORY_FILE}); "
                                "write one with `janus-deploy export-triton`") from None
    if not isinstance(data, dict) or data.get("kind") != REPOSITORY_KIND:
        raise TritonExportError(f"{p} is not a janus-deploy Triton repository file")
    return data


def _platform_params(platform: str, threads: int) -> dict[str, str]:
    if platform == "python":
        return {"intra_op_threads": str(threads)}
    if platform == "onnxruntime":
        return {"intra_op_thread_count": str(threads), "inter_op_thread_count": "1"}
    return {}


def _runtime(platform: str) -> dict[str, str]:
    if platform == "python":
        return {"backend": "python"}
    if platform == "onnxruntime":
        return {"platform": "onnxruntime_onnx", "default_model_filename": "model.onnx"}
    if platform == "tensorrt":
        return {"platform": "tensorrt_plan", "default_model_filename": "model.plan"}
    raise TritonExportError(f"unknown platform {platform!r}")


def _write_config(out: Path, cfg: ModelConfig, platform: str) -> None:
    d = out / cfg.name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(cfg.render())
    if platform == "python":
        (d / VERSION / "model.py").write_text(python_model_source())


def python_model_source() -> str:
    """``python_model.py`` as Triton's stub runs it: the package's session-options function
    (``janus_deploy.backends.ort_session``) written in place of its import line, since the stub
    cannot import janus-deploy."""
    import inspect

    from janus_deploy.backends import ort_session

    src = (Path(__file__).parent / "python_model.py").read_text()
    lines = src.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.rstrip().endswith("JANUS-SESSION-OPTIONS")]
    if len(marked) != 1:
        raise RuntimeError("python_model.py must import session_options on exactly one marked line")
    lines[marked[0]] = inspect.getsource(ort_session.session_options)
    return "".join(lines)


def _write_small(out: Path, name: str, graph: onnx.ModelProto, max_batch: int, platform: str,
                 batching: Batching, params: dict[str, str]) -> None:
    vdir = out / name / VERSION
    vdir.mkdir(parents=True)
    onnx.save(graph, str(vdir / "model.onnx"))
    ins, outs = _graph_io(graph)
    if max_batch > 0:
        ins, outs = _unbatch(ins), _unbatch(outs)
    _write_config(out, ModelConfig(name, max_batch, ins, outs, batching=batching, parameters=params,
                                   warmup=max_batch > 0, **_runtime(platform)), platform)


def _write_coded_decoder(out: Path, m: PlanModel, max_batch: int, batching: Batching) -> None:
    """The frame codecs' decode step: a python-backend model (``python_model.py`` with the
    ``janus_frame_decode`` parameter) taking ``frame_coded`` UINT8 [B, L] to ``frame`` UINT8
    [B, H, W, 3]; the stub's Python needs simplejpeg and Pillow."""
    (out / CODED_MODEL / VERSION).mkdir(parents=True)
    img = int(m.img_size)
    lead = () if max_batch > 0 else (-1,)
    cfg = ModelConfig(CODED_MODEL, max_batch, [Tensor(FRAME_CODED, "TYPE_UINT8", (*lead, -1))],
                      [Tensor("frame", "TYPE_UINT8", (*lead, img, img, 3))],
                      batching=Batching(False, (), 0, batching.instances, "KIND_CPU"),
                      parameters={"janus_frame_decode": f"{img},{img}", "graphs": ""}, warmup=False,
                      **_runtime("python"))
    _write_config(out, cfg, "python")


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (same file system), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_fused(out: Path, manifest: Any, cfg: ModelConfig, graphs: dict[str, onnx.ModelProto], batching: Batching,
                 params: dict[str, str], weights: str) -> None:
    """One python model named like the ensemble ``cfg`` that runs its steps' graphs in order."""
    vdir = out / cfg.name / VERSION
    vdir.mkdir(parents=True)
    files = []
    extra: dict[str, str] = {}
    for i, step in enumerate(cfg.steps):
        if step.model == CODED_MODEL:  # the images are decoded in the fused model itself
            img = manifest.model_info.img_size
            extra["janus_frame_decode"] = f"{img},{img}"
            continue
        stem = f"{i}_{step.model}"
        graph = onnx.ModelProto()
        graph.CopyFrom(graphs[step.model])
        _write_graph(manifest, graph, vdir, weights, stem)
        files.append(f"{stem}.onnx")
    # the fused model also answers the time it spent (python_model.py's TIMING output, docs/runtime.md)
    outputs = [*cfg.outputs, Tensor(SERVER_TIMING, "TYPE_FP32", (1,))]
    _write_config(out, ModelConfig(cfg.name, cfg.max_batch_size, cfg.inputs, outputs, batching=batching,
                                   parameters={**params, "graphs": ",".join(files), **extra, **cfg.parameters},
                                   warmup=not extra,
                                   **_runtime("python")), "python")


def _write_graph(manifest: Any, graph: onnx.ModelProto, vdir: Path, weights: str, stem: str = "model") -> None:
    """``model.onnx`` with its external weights beside it (ONNX Runtime refuses external data
    outside the model's directory, symlinks included): a hard link of the plan's weight file
    (link; a copy across file systems), or a file of only this graph's tensors (copy)."""
    ext = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if weights == "link":
        if ext and not (vdir / "weights.bin").exists():
            _place(manifest.path(manifest.weights_file.file), vdir / "weights.bin")
        for t in ext:
            _set_external(t, location="weights.bin")
    else:
        blob = manifest.path(manifest.weights_file.file)
        wfile = "weights.bin" if stem == "model" else f"{stem}.weights.bin"
        with open(blob, "rb") as src, open(vdir / wfile, "wb") as dst:
            for t in ext:
                info = {e.key: e.value for e in t.external_data}
                src.seek(int(info.get("offset", 0)))
                data = src.read(int(info["length"]))
                pad = (-dst.tell()) % 64
                dst.write(b"\0" * pad)
                _set_external(t, location=wfile, offset=dst.tell(), length=len(data))
                dst.write(data)
    onnx.save(graph, str(vdir / f"{stem}.onnx"))


def _set_external(t: onnx.TensorProto, **values: Any) -> None:
    current = {e.key: e.value for e in t.external_data}
    current.update({k: str(v) for k, v in values.items()})
    del t.external_data[:]
    for k, v in current.items():
        entry = t.external_data.add()
        entry.key, entry.value = k, v


def _ensemble(name: str, spec: Any, codec: str | None, seg_io: dict, max_batch: int,
              decoders: set[str]) -> ModelConfig:
    """The ensemble of one tail: decode step (if any), then the tail's segments in order."""
    if codec is None:
        inputs = [Tensor("frame", "TYPE_UINT8", tuple(spec.input("frame")["shape"][1:]))]
    elif codec == CODED:
        inputs = [Tensor(FRAME_CODED, "TYPE_UINT8", (-1,))]
    elif codec == "int4":
        inputs = [Tensor("tokens_q4", "TYPE_UINT8", tuple(spec.input("tokens_q4")["shape"][1:])),
                  Tensor("group_scale", "TYPE_FP16", tuple(spec.input("group_scale")["shape"][1:])),
                  Tensor("size", "TYPE_FP16", tuple(spec.input("size")["shape"][1:]))]
    else:
        dtypes = {"fp32": ("FP32", "FP32"), "fp16": ("FP16", "FP16"), "int8": ("INT8", "FP16")}[codec]
        inputs = [Tensor("tokens", V2_TO_TRITON[dtypes[0]], tuple(spec.input("tokens")["shape"][1:])),
                  Tensor("size", V2_TO_TRITON[dtypes[1]], tuple(spec.input("size")["shape"][1:]))]
        if codec == "int8":
            inputs.append(Tensor("token_scale", "TYPE_FP32", tuple(spec.input("token_scale")["shape"][1:])))
    out_spec = spec.outputs[0]
    outputs = [Tensor(out_spec["name"], V2_TO_TRITON[out_spec["datatype"]], tuple(out_spec["shape"][1:]))]
    steps: list[Step] = []
    first_ins = {t.name for t in seg_io[(spec.level, spec.first_segment)][0]}
    if codec is None:
        steps.append(Step(FRAME_MODEL, {"frame": "frame"}, {"image": "image"}))
        have = {"image": "image"}
    elif codec == CODED:
        steps.append(Step(CODED_MODEL, {FRAME_CODED: FRAME_CODED}, {"frame": "frame_0"}))
        steps.append(Step(FRAME_MODEL, {"frame": "frame_0"}, {"image": "image"}))
        have = {"image": "image"}
    elif codec == "fp32" and {"tokens", "size"} <= first_ins:
        have = {"tokens": "tokens", "size": "size"}
    else:
        dec = f"janus_decode_{codec}"
        if dec not in decoders:
            raise TritonExportError(f"internal: decoder {dec} was not written")
        steps.append(Step(dec, {t.name: t.name for t in inputs}, {"tokens_out": "tokens_0", "size_out": "size_0"}))
        have = {"tokens": "tokens_0", "size": "size_0"}
    for seg in range(spec.first_segment, spec.num_segments):
        ins, outs = seg_io[(spec.level, seg)]
        last = seg == spec.num_segments - 1
        omap = ({"logits": "logits"} if last else
                {"tokens_out": f"tokens_{seg + 1}", "size_out": f"size_{seg + 1}"})
        steps.append(Step(segment_model(spec.level, seg), {t.name: have[t.name] for t in ins},
                          {k: v for k, v in omap.items() if k in {o.name for o in outs}}))
        have = {"tokens": f"tokens_{seg + 1}", "size": f"size_{seg + 1}"}
    # Triton refuses ensemble tensors nobody reads (e.g. size_out before a head that reads tokens only)
    used = {v for s in steps for v in s.inputs.values()} | {t.name for t in outputs}
    steps = [Step(s.model, s.inputs, {k: v for k, v in s.outputs.items() if v in used}) for s in steps]
    return ModelConfig(name, max_batch, inputs, outputs, platform="ensemble", steps=steps)


__all__ = ["ExportOptions", "FRAME_MODEL", "PLATFORMS", "PROBE_MODEL", "REPOSITORY_FILE", "Repository",
           "TritonExportError", "export_repository", "read_repository", "segment_model", "tail_ensemble",
           "wire_codec"]
