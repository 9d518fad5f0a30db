"""int8 by explicit quantization (Q/DQ) and level-free (weights-once) TensorRT engines, against
the STAND-IN (tests/trt_standin.py), never real TensorRT.

The Q/DQ graphs themselves are real: ONNX Runtime's quantizer writes them and ONNX Runtime runs
them (that is where their accuracy comes from); the stand-in checks them against TensorRT's
documented Q/DQ rules and executes them with ONNX Runtime.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import trt_standin  # tests/trt_standin.py
from onnx import TensorProto, numpy_helper

from janus_deploy.backends import EngineError, build_engines, load_runner, qdq, run_segments
from janus_deploy.backends import trt as trt_backend
from janus_deploy.backends.ort import OrtRunner
from janus_deploy.calibrate import SMALL_MODEL_CHECKPOINT, SMALL_MODEL_NAME, SMALL_MODEL_OVERRIDES, make_digits, write_image_folder
from janus_deploy.images import normalize
from janus_deploy.model import ModelSpec
from janus_deploy.plan import ExportConfig, export_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_plan(tmp_path_factory):
    """The committed small ViT (64 px, 6 blocks, trained on the digits task), k = 2, 3 levels."""
    out = tmp_path_factory.mktemp("digits_plan")
    spec = ModelSpec(SMALL_MODEL_NAME, dict(SMALL_MODEL_OVERRIDES), str(ROOT / SMALL_MODEL_CHECKPOINT))
    manifest, _ = export_plan(spec, out, ExportConfig(k=2, levels=3))
    return manifest


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("calib")
    write_image_folder(out, "train", limit=24)
    return out


@pytest.fixture(scope="module")
def int8(digits_plan, calib_dir, tmp_path_factory):
    """int8 engines built once with the 11.x stand-in."""
    mp = pytest.MonkeyPatch()
    trt, _ = trt_standin.install(mp)
    out = tmp_path_factory.mktemp("int8")
    meta = build_engines(digits_plan, out, "trt", precision="int8", calibration=calib_dir, max_batch=8)
    log = list(trt.builder_log)
    yield out, meta, log, mp
    mp.undo()


def _x(plan, n=4, split="test"):
    frames, _ = make_digits(split, limit=n)
    return normalize(frames, plan.model["mean"], plan.model["std"])


def _nseg(plan, li):
    return len(plan.levels[li]["segments"])


def test_int8_without_calibration_is_one_line(digits_plan, tmp_path, monkeypatch):
    trt_standin.install(monkeypatch)
    with pytest.raises(EngineError) as err:
        build_engines(digits_plan, tmp_path, "trt", precision="int8")
    assert "--calibration DIR" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(EngineError, match="for --precision int8 only"):
        build_engines(digits_plan, tmp_path, "trt", precision="fp16", calibration=tmp_path)


def test_int8_calibration_folder_too_small(digits_plan, tmp_path, monkeypatch):
    trt_standin.install(monkeypatch)
    write_image_folder(tmp_path / "one", "train", limit=1)
    with pytest.raises(EngineError, match="holds 1 image"):
        build_engines(digits_plan, tmp_path / "e", "trt", precision="int8", calibration=tmp_path / "one")


def test_int8_engines_are_strongly_typed_qdq_without_flags(int8, digits_plan):
    _, meta, log, _ = int8
    n = sum(len(lv["segments"]) for lv in digits_plan.levels)
    assert len(meta["engines"]) == n == len(log)
    assert all(e["qdq"] and e["strongly_typed"] and e["flags"] == [] for e in log)
    assert meta["calibration"]["calibration_images"] == 18 and meta["calibration"]["heldout_images"] == 6
    assert meta["calibration_sha256"]  # in the stamp: other images make other engines


def test_qdq_graphs_quantize_only_weight_bearing_ops_symmetric_int8(int8):
    out, meta, log, _ = int8
    g = onnx.load(next(e["path"] for e in log if "_S01_" in e["path"]))
    inits = {i.name: numpy_helper.to_array(i) for i in g.graph.initializer}
    types = {i.name: i.data_type for i in g.graph.initializer}
    produced = {o: n for n in g.graph.node for o in n.output}
    qdq_nodes = [n for n in g.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq_nodes
    for n in qdq_nodes:
        assert n.input[1] in inits and inits[n.input[1]].ndim <= 1 and (inits[n.input[1]] > 0).all()
        assert types[n.input[2]] == TensorProto.INT8 and not inits[n.input[2]].any()
    # every DequantizeLinear feeds a weight-bearing MatMul/Gemm/Conv; attention products and the
    # merge arithmetic (MatMuls of two activations) get none
    consumers = {i: n for n in g.graph.node for i in n.input}
    assert {consumers[n.output[0]].op_type for n in qdq_nodes if n.op_type == "DequantizeLinear"} <= set(qdq.QUANTIZED_OPS)
    act_matmuls = [n for n in g.graph.node if n.op_type == "MatMul"
                   and all(produced.get(i) is None or produced[i].op_type != "DequantizeLinear" for i in n.input)]
    assert act_matmuls  # q@k, attn@v and the matching scores stay fp32


def test_int8_accuracy_per_level_recorded(int8, digits_plan):
    out, meta, _, _ = int8
    acc = json.loads((out / "engines.json").read_text())["int8_accuracy"]
    assert [a["level"] for a in acc] == list(range(len(digits_plan.levels)))
    for a in acc:
        assert 0 <= a["top1_agreement"] <= 1 and -1 <= a["cosine_min"] <= a["cosine_mean"] <= 1 and a["images"] == 6
    # alpha = 0: int8 keeps the fp32 model's answers (measured: agreement 1.0, mean cosine 0.9996)
    assert acc[0]["top1_agreement"] >= 0.8 and acc[0]["cosine_mean"] > 0.99


def test_int8_accuracy_is_measured_not_assumed(int8, digits_plan):
    """The recorded figures equal an independent ORT run of the Q/DQ graphs against fp32."""
    import onnxruntime as ort

    out, meta, _, _ = int8
    calib, held = qdq.split(qdq.calibration_frames(digits_plan, meta["calibration"]["folder"]))
    li = len(digits_plan.levels) - 1
    q, f = [held], [held]
    ref = OrtRunner(digits_plan)
    for si, seg in enumerate(digits_plan.levels[li]["segments"]):
        sess = ort.InferenceSession(str(qdq.graph_path(out, seg["file"])), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        q = sess.run(None, {s["name"]: v for s, v in zip(seg["inputs"], q) if s["name"] in names})
        f = ref.run_segment(li, si, f)
    agree = float((q[0].argmax(1) == f[0].argmax(1)).mean())
    assert agree == pytest.approx(meta["int8_accuracy"][li]["top1_agreement"])


def test_int8_runner_runs_the_quantized_graphs(int8, digits_plan):
    out, _, _, _ = int8
    runner, ref = load_runner(digits_plan, out), OrtRunner(digits_plan)
    x = _x(digits_plan)
    n = _nseg(digits_plan, 0)
    a, b = run_segments(runner, 0, 0, n, [x])[0], run_segments(ref, 0, 0, n, [x])[0]
    assert not np.allclose(a, b, atol=1e-6)  # really int8 ...
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.98  # ... and close to fp32 at alpha = 0


def test_resumed_int8_build_reuses_qdq_graphs(int8, digits_plan, calib_dir, monkeypatch, tmp_path):
    out, meta, _, _ = int8
    trt_standin.install(monkeypatch)
    calls = []
    real = qdq.quantize_graph
    monkeypatch.setattr(qdq, "quantize_graph", lambda *a: calls.append(a) or real(*a))
    (out / "engines.partial.json").write_text(json.dumps({"stamp": {k: meta[k] for k in (
        "plan_hash", "precision", "tensorrt_version", "gpu", "compute_capability", "min_batch", "max_batch",
        "hardware_compatibility", "calibration_sha256")}, "engines": meta["engines"]}))
    again = build_engines(digits_plan, out, "trt", precision="int8", calibration=calib_dir, max_batch=8)
    assert calls == [] and again["built"] == 0 and again["int8_accuracy"] == meta["int8_accuracy"]
    # other calibration images: new scales, every graph quantized again
    other = tmp_path / "other"
    write_image_folder(other, "train", limit=12, seed=3)
    third = build_engines(digits_plan, out, "trt", precision="int8", calibration=other, max_batch=8)
    assert len(calls) == len(meta["engines"]) and third["built"] == len(meta["engines"])


# -- the stand-in's Q/DQ rules (each one fails a graph ORT's quantizer writes with other options) --
def _quantize(src, dst, feeds, **kw):
    from onnxruntime.quantization import QuantFormat, quantize_static

    model = onnx.load(str(src))
    quantize_static(model, str(dst), qdq._Feeds(feeds), quant_format=QuantFormat.QDQ,
                    nodes_to_quantize=qdq.quantized_nodes(model), **kw)


def test_standin_refuses_uint8_and_int32_bias_qdq(digits_plan, tmp_path, monkeypatch):
    from onnxruntime.quantization import QuantType

    trt, _ = trt_standin.install(monkeypatch)
    seg = digits_plan.levels[0]["segments"][0]
    feeds = [{"image": _x(digits_plan, 2, "train")}]
    cases = {"uint8": ({"activation_type": QuantType.QUInt8}, "zero point"),  # asymmetric uint8: non-zero zero points
             "bias": ({"extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True}}, "of type int32")}
    for name, (kw, message) in cases.items():
        dst = tmp_path / f"{name}.onnx"
        _quantize(digits_plan.path(seg["file"]), dst, feeds, **kw)
        parser = trt.OnnxParser(trt.Builder(None).create_network(0), None)
        assert not parser.parse_from_file(str(dst)), name
        assert any(message in e for e in parser.errors), (name, parser.errors)
    # the options qdq.quantize_graph uses parse
    dst = tmp_path / "ok.onnx"
    qdq.quantize_graph(digits_plan.path(seg["file"]), dst, feeds)
    assert trt.OnnxParser(trt.Builder(None).create_network(0), None).parse_from_file(str(dst))


def test_standin_qdq_needs_strong_typing_or_int8_flag(int8, monkeypatch):
    """10.x: a weakly typed Q/DQ network without the INT8 flag, or a strongly typed one with a
    precision flag, does not build; network_flags asks for strong typing on 10.x."""
    _, _, log, _ = int8
    trt, _ = trt_standin.install(monkeypatch, version="10.3.0")
    path = log[0]["path"]

    def build(flags, builder_flags=()):
        b = trt.Builder(None)
        net = b.create_network(flags)
        assert trt.OnnxParser(net, None).parse_from_file(path)
        cfg = b.create_builder_config()
        for f in builder_flags:
            cfg.set_flag(f)
        p = b.create_optimization_profile()
        for t in net.inputs:
            p.set_shape(t.name, (1, *t.shape[1:]), (1, *t.shape[1:]), (1, *t.shape[1:]))
        cfg.add_optimization_profile(p)
        return b.build_serialized_network(net, cfg)

    assert build(0) is None
    assert build(0, [trt.BuilderFlag.INT8]) is not None
    assert build(trt_backend.network_flags(trt), [trt.BuilderFlag.FP16]) is None
    assert build(trt_backend.network_flags(trt)) is not None


# -- weights once: level-free engines ------------------------------------------------------------
@pytest.fixture(scope="module")
def level_free(digits_plan, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    trt, _ = trt_standin.install(mp, version="10.3.0")
    out = tmp_path_factory.mktemp("lf")
    meta = build_engines(digits_plan, out, "trt", precision="fp32", graphs="level-free", max_batch=8)
    log = list(trt.builder_log)
    yield out, meta, log
    mp.undo()


def test_level_free_one_engine_per_segment_one_profile_per_level(level_free, digits_plan):
    out, meta, log = level_free
    assert meta["graphs"] == "level-free"
    assert len(meta["engines"]) == len(digits_plan.level_free_segments) == len(log)
    assert all(e["profiles"] == list(range(len(digits_plan.levels))) for e in meta["engines"])
    assert all(e["profiles"] == len(digits_plan.levels) for e in log)


def test_level_free_weights_handed_to_builder_once(level_free, digits_plan, tmp_path, monkeypatch):
    """The bytes of weights the builder gets: one plan's worth for level-free engines, one per
    level for per-level engines (the figure docs/engines.md multiplies)."""
    _, _, log = level_free
    trt, _ = trt_standin.install(monkeypatch)
    build_engines(digits_plan, tmp_path, "trt", precision="fp32")
    per_level = sum(e["weight_bytes"] for e in trt.builder_log)
    once = sum(e["weight_bytes"] for e in log)
    blocks = sum(numpy_helper.to_array(i).nbytes
                 for e in digits_plan.level_free_segments
                 for i in onnx.load(str(digits_plan.path(e["file"]))).graph.initializer)
    assert once == blocks
    assert per_level / once == pytest.approx(len(digits_plan.levels), rel=0.02)
    # the figure tools/engine_bytes.py prints for a plan is the bytes the builder got
    assert trt_backend.weight_bytes(digits_plan, "level") == per_level
    assert trt_backend.weight_bytes(digits_plan, "level-free") == once


def test_int8_weight_bytes_match_the_qdq_graphs(int8, digits_plan):
    _, _, log, _ = int8
    got = sum(e["weight_bytes"] for e in log)  # int8 weights, scales, zero points, float rest
    est = trt_backend.weight_bytes(digits_plan, "level", "int8")
    assert est == pytest.approx(got, rel=0.02)  # the activations' scalar scales are the difference
    assert est < 0.3 * trt_backend.weight_bytes(digits_plan, "level", "fp32")


def test_level_free_chain_matches_per_level_graphs(level_free, digits_plan, monkeypatch):
    out, _, _ = level_free
    trt_standin.install(monkeypatch, version="10.3.0")
    runner, ref = load_runner(digits_plan, out), OrtRunner(digits_plan)
    x = _x(digits_plan, 3)
    for li in (2, 0, 1):  # profiles switch between levels in any order
        n = _nseg(digits_plan, li)
        a, b = run_segments(runner, li, 0, n, [x])[0], run_segments(ref, li, 0, n, [x])[0]
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert runner.loaded() == len(digits_plan.level_free_segments)  # every level on the same engines
    runner.unload(0, 1)
    assert runner.loaded() == len(digits_plan.level_free_segments)  # level 1 and 2 still use segment 1


def test_level_free_needs_int32_shape_tensor(digits_plan, monkeypatch):
    """The plan's level-free graphs take int64 reductions; 10.3's set_shape_input wants int32:
    the rewrite is what makes them parse."""
    trt, _ = trt_standin.install(monkeypatch, version="10.3.0")
    src = str(digits_plan.path(digits_plan.level_free_segments[1]["file"]))
    parser = trt.OnnxParser(trt.Builder(None).create_network(0), None)
    assert not parser.parse_from_file(src) and "int32" in parser.errors[0]
    model = trt_backend.level_free_graph(onnx.load(src))
    assert next(i for i in model.graph.input if i.name == "reductions").type.tensor_type.elem_type == TensorProto.INT32


def test_int8_level_free_refused(digits_plan, calib_dir, tmp_path, monkeypatch):
    trt_standin.install(monkeypatch)
    with pytest.raises(EngineError, match="int8 level-free"):
        build_engines(digits_plan, tmp_path, "trt", precision="int8", graphs="level-free", calibration=calib_dir)


# -- int8 on ONNX Runtime (runs here, no stand-in) and the CLI ---------------------------------------
def test_ort_int8_engines_run_the_same_qdq_graphs(digits_plan, calib_dir, int8, tmp_path):
    out_trt, meta_trt, _, _ = int8
    meta = build_engines(digits_plan, tmp_path, "ort", precision="int8", calibration=calib_dir)
    assert meta["precision"] == "int8" and meta["int8_accuracy"] == meta_trt["int8_accuracy"]
    trt_files = {Path(e["path"]).name for e in int8[2]}
    assert {Path(e["file"]).name for e in meta["engines"]} == trt_files  # the graphs TensorRT builds
    runner = load_runner(digits_plan, tmp_path)
    x = _x(digits_plan)
    n = _nseg(digits_plan, 1)
    got = run_segments(runner, 1, 0, n, [x])[0]
    import onnxruntime as ort

    q = [x]
    for seg in digits_plan.levels[1]["segments"]:
        sess = ort.InferenceSession(str(qdq.graph_path(tmp_path, seg["file"])), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        q = sess.run(None, {s["name"]: v for s, v in zip(seg["inputs"], q) if s["name"] in names})
    np.testing.assert_allclose(got, q[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(runner.run_unsplit(1, x), got, rtol=1e-5, atol=1e-5)
    # a changed Q/DQ graph is refused before it runs
    from janus_deploy.plan.integrity import IntegrityError

    victim = tmp_path / meta["engines"][0]["file"]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError):
        load_runner(digits_plan, tmp_path).run_segment(0, 0, [x])


def test_cli_int8_and_level_free(digits_plan, calib_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    trt_standin.install(monkeypatch)
    res = CliRunner().invoke(app, ["build-engines", str(digits_plan.dir), "--backend", "trt", "--graphs", "level-free",
                                   "--max-batch", "4", "--out", str(tmp_path / "lf"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "lf" / "engines.json").read_text())
    assert data["graphs"] == "level-free" and data["max_batch"] == 4
    res = CliRunner().invoke(app, ["build-engines", str(digits_plan.dir), "--precision", "int8", "--calibration",
                                   str(calib_dir), "--out", str(tmp_path / "i8")])
    assert res.exit_code == 0, res.output
    assert "level 0: int8 vs fp32 top-1 agreement" in res.output


def test_calibrate_through_trt_int8_engines(int8, digits_plan, calib_dir, tmp_path, monkeypatch):
    """`calibrate --engines` on the TensorRT int8 engines (stand-in): the same top-1 per level as
    the ort backend's int8 engines (the same Q/DQ graphs), recorded as trt int8, batches capped
    at the engines' max_batch (8)."""
    from janus_deploy.calibrate import calibrate_engines

    out_trt, _, _, _ = int8
    trt_standin.install(monkeypatch)  # the 11.x stand-in the engines were built with (other fixtures install 10.x)
    frames, labels = make_digits("test", limit=12)
    table = calibrate_engines(digits_plan, out_trt, frames, labels, batch_size=32)
    with pytest.raises(EngineError):  # why the cap: the engines refuse a batch of 12
        run_segments(load_runner(digits_plan, out_trt), 0, 0, 1, [normalize(frames, digits_plan.model["mean"],
                                                                           digits_plan.model["std"])])
    mw = table["measured_with"]
    assert (mw["backend"], mw["precision"]) == ("trt", "int8") and mw["tensorrt_version"]
    build_engines(digits_plan, tmp_path, "ort", precision="int8", calibration=calib_dir)
    ort_table = calibrate_engines(digits_plan, tmp_path, frames, labels, threads=1)
    assert ort_table["measured_with"]["backend"] == "ort"
    assert [(lv["accuracy"], lv["agreement"]) for lv in table["levels"]] == \
           [(lv["accuracy"], lv["agreement"]) for lv in ort_table["levels"]]
