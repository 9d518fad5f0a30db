"""TensorRT backend against a STAND-IN (tests/trt_standin.py), never real TensorRT.

The stand-in enforces the documented TensorRT rules the backend relies on and runs each engine's
ONNX with ONNX Runtime; these tests say nothing about TensorRT's own numerics or speed (that is
tools/gpu_check.sh, on a GPU).
"""

import importlib.util
import json
import threading

import numpy as np
import pytest
import trt_standin  # tests/trt_standin.py (pytest puts tests/ on sys.path)

from janus_deploy.backends import EngineError, build_engines, load_runner, run_segments
from janus_deploy.backends import trt as trt_backend
from janus_deploy.backends.ort import OrtRunner
from janus_deploy.backends.trt import check_version, engine_name
from janus_deploy.images import normalize, synthetic_frames

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _frames(plan, n, seed=0):
    return normalize(synthetic_frames(n, 224, seed=seed), plan.model["mean"], plan.model["std"])


@pytest.fixture(scope="module")
def built(tiny_plan, tmp_path_factory):
    """fp32 engines built once with the 11.x stand-in, batch range 1..16."""
    mp = pytest.MonkeyPatch()
    trt, _ = trt_standin.install(mp)
    out = tmp_path_factory.mktemp("trt")
    meta = build_engines(tiny_plan, out, "trt", precision="fp32", max_batch=16)
    yield out, meta, trt, mp
    mp.undo()


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_fails_clearly(tiny_plan, tmp_path):
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        build_engines(tiny_plan, tmp_path / "trt", "trt")


def test_engine_names_are_keyed_by_version_cc_and_device():
    name = engine_name("ab" * 32, 3, 7, "fp16", "10.3.0", "8.7", "Orin Nano")
    assert name == "abababababab_L03_S07_fp16_trt10.3.0_sm87_orin-nano.engine"


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "12.0.0", "x"])
def test_unsupported_tensorrt_is_one_line(version):
    with pytest.raises(EngineError) as err:
        check_version(version)
    assert "\n" not in str(err.value) and version in str(err.value) and "10.x and 11.x" in str(err.value)


@pytest.mark.parametrize("version", ["10.3.0", "11.4.0"])
def test_supported_versions(version):
    assert check_version(version) == int(version.split(".")[0])


def test_engines_json_records_batch_range_and_keys(built, tiny_plan):
    out, _, _, _ = built
    data = json.loads((out / "engines.json").read_text())
    assert (data["min_batch"], data["max_batch"]) == (1, 16)
    assert data["tensorrt_version"] == "11.4.0" and data["compute_capability"] == "8.7"
    assert data["gpu"] == "Stand-in Orin Nano"
    n = sum(len(lv["segments"]) for lv in tiny_plan.levels)
    assert len(data["engines"]) == n and data["built"] == n


def test_no_precision_flags_and_weights_handed_to_builder(built, tiny_plan):
    """11.x has no FP16/INT8 flags; the bytes of weights the builder got equal the graphs' own."""
    import onnx
    from onnx import numpy_helper

    _, _, trt, _ = built
    assert not hasattr(trt.BuilderFlag, "FP16")
    log = trt.builder_log
    assert log and all(e["flags"] == [] for e in log)
    seg = tiny_plan.level(0)["segments"][0]
    model = onnx.load(str(tiny_plan.path(seg["file"])))
    want = sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer)
    got = next(e["weight_bytes"] for e in log if e["path"] == str(tiny_plan.path(seg["file"])))
    assert got == want > 1_000_000  # vit_tiny's patch embedding + blocks are several MB


def test_chain_matches_ort(built, tiny_plan):
    out, _, _, _ = built
    runner, ref = load_runner(tiny_plan, out), OrtRunner(tiny_plan)
    x = _frames(tiny_plan, 2)
    for li in (0, len(tiny_plan.levels) - 1):
        n = len(tiny_plan.levels[li]["segments"])
        a, b = run_segments(runner, li, 0, n, [x])[0], run_segments(ref, li, 0, n, [x])[0]
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_stale_shape_batch_16_after_4(built, tiny_plan):
    """Regression: a batch of 16 after a batch of 4 returned 4 rows (the context kept its shape)."""
    out, _, _, _ = built
    runner = load_runner(tiny_plan, out)
    x4, x16 = _frames(tiny_plan, 4), _frames(tiny_plan, 16)
    assert runner.run_segment(0, 0, [x4])[0].shape[0] == 4
    got = runner.run_segment(0, 0, [x16])
    want = OrtRunner(tiny_plan).run_segment(0, 0, [x16])
    assert got[0].shape[0] == 16
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)


def test_batch_beyond_profile_is_refused(built, tiny_plan):
    out, _, _, _ = built
    runner = load_runner(tiny_plan, out)
    with pytest.raises(EngineError, match="outside the engines' range 1..16"):
        runner.run_segment(0, 0, [_frames(tiny_plan, 17)])


def test_set_input_shape_false_is_an_error(built, tiny_plan):
    """A runner told a wider range than the profile (tampered engines.json) gets False back and says so."""
    out, meta, _, _ = built
    runner = trt_backend.TrtRunner(tiny_plan, out, {**meta, "max_batch": 64})
    with pytest.raises(EngineError, match="refused shape"):
        runner.run_segment(0, 0, [_frames(tiny_plan, 20)])


def test_four_threads_one_runner(built, tiny_plan):
    """Regression: four threads on one runner shared one context and crashed the stand-in."""
    out, _, _, _ = built
    runner = load_runner(tiny_plan, out, contexts=2)  # fewer contexts than threads: callers wait
    ref = OrtRunner(tiny_plan)
    xs = [_frames(tiny_plan, 1 + i % 3) for i in range(4)]
    want = [ref.run_segment(0, 0, [x])[0] for x in xs]
    errors, results = [], {}

    def work(i):
        try:
            for _ in range(3):
                results[i] = runner.run_segment(0, 0, [xs[i]])[0]
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    for i in range(4):
        np.testing.assert_allclose(results[i], want[i], rtol=1e-4, atol=1e-4)
    assert runner._engines[(0, 0)].created <= 2


def test_one_context_shared_by_threads_is_caught_by_the_standin(built, tiny_plan):
    """The stand-in's rule itself: the old one-context design fails here (guards the regression test)."""
    out, _, _, _ = built
    runner = load_runner(tiny_plan, out, contexts=1)
    eng = runner._engines.get((0, 0)) or (runner.load(0, 0) or runner._engines[(0, 0)])
    ctx = eng.engine.create_execution_context()
    x = _frames(tiny_plan, 1)
    assert ctx.set_input_shape("image", x.shape)
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, ctx.set_input_shape, "image",
                                                                    x.shape)))
    t.start()
    t.join()
    assert errors and "two threads" in str(errors[0].value)


def test_mismatch_refused_naming_both_sides(built, tiny_plan, monkeypatch):
    out, _, _, _ = built
    trt_standin.install(monkeypatch, gpu="Stand-in AGX Orin")
    with pytest.raises(EngineError) as err:
        load_runner(tiny_plan, out)
    assert "Stand-in Orin Nano" in str(err.value) and "Stand-in AGX Orin" in str(err.value)
    trt_standin.install(monkeypatch, version="10.3.0")
    with pytest.raises(EngineError, match="'11.4.0'.*'10.3.0'"):
        load_runner(tiny_plan, out)


def test_resumed_build_skips_finished_engines(tiny_plan, tmp_path, monkeypatch):
    trt_standin.install(monkeypatch, version="10.3.0")
    calls = []
    first = build_engines(tiny_plan, tmp_path, "trt", precision="fp32",
                          progress=lambda d, n: calls.append((d, n)))
    assert (tmp_path / "timing.cache").is_file() and not (tmp_path / "engines.partial.json").exists()
    assert calls[-1][0] == calls[-1][1] == len(first["engines"])
    # interrupted build: engines.partial.json says what finished; one engine file damaged
    partial = {"stamp": {k: first[k] for k in ("plan_hash", "precision", "tensorrt_version", "gpu",
                                               "compute_capability", "min_batch", "max_batch",
                                               "hardware_compatibility")},
               "engines": first["engines"]}
    (tmp_path / "engines.partial.json").write_text(json.dumps(partial))
    (tmp_path / first["engines"][1]["file"]).write_bytes(b"damaged")
    second = build_engines(tiny_plan, tmp_path, "trt", precision="fp32")
    assert second["built"] == 1 and second["skipped"] == len(first["engines"]) - 1


def test_plan_graph_checked_before_parsing(tiny_plan, tmp_path, monkeypatch):
    from janus_deploy.plan.integrity import IntegrityError
    from janus_deploy.plan.manifest import Manifest

    trt_standin.install(monkeypatch)
    m = Manifest(json.loads(json.dumps(tiny_plan.data)), tiny_plan.dir)
    m.levels[0]["segments"][0]["sha256"] = "0" * 64
    with pytest.raises(IntegrityError):
        trt_backend.build(m, tmp_path, precision="fp32")


def test_fp16_graph_is_strongly_typed_and_close(tiny_plan, tmp_path, monkeypatch):
    """fp16 from the graph's own types (10.x: strongly typed network, no FP16 flag); LayerNorm/Softmax fp32."""
    import onnx

    trt, _ = trt_standin.install(monkeypatch, version="10.3.0")
    meta = build_engines(tiny_plan, tmp_path, "trt", precision="fp16")
    assert all(e["strongly_typed"] and e["flags"] == [] for e in trt.builder_log)
    g = onnx.load(str(next(e["path"] for e in trt.builder_log)), load_external_data=False)
    types_ = {n.op_type for n in g.graph.node}
    assert "Cast" in types_
    ln = [n for n in g.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert all(not i.endswith("_out16") for n in ln for i in n.input)
    runner, ref = load_runner(tiny_plan, tmp_path), OrtRunner(tiny_plan)
    assert meta["precision"] == "fp16"
    x = _frames(tiny_plan, 2)
    li = len(tiny_plan.levels) // 2
    n = len(tiny_plan.levels[li]["segments"])
    a, b = run_segments(runner, li, 0, n, [x])[0], run_segments(ref, li, 0, n, [x])[0]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() > 0.99, cos


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_cli_names_the_extra_verbatim(tiny_plan, tmp_path, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)  # the module fixture's stand-in
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    res = CliRunner().invoke(app, ["build-engines", str(tiny_plan.dir), "--backend", "trt", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "janus-deploy[trt]" in " ".join(res.output.split())  # brackets are not eaten as markup


def test_dataplane_honours_the_engines_batch_range(built, tiny_plan):
    """serve's data plane caps a request's batch at the engines' max_batch (16 here, not 64)."""
    from janus_deploy.runtime.dataplane import DataPlane

    out, _, _, _ = built
    plane = DataPlane(tiny_plan, load_runner(tiny_plan, out), max_batch=64)
    assert plane.max_batch == 16
    assert DataPlane(tiny_plan, OrtRunner(tiny_plan), max_batch=64).max_batch == 64


def test_standin_is_findable_by_importlib(monkeypatch):
    """torch's dynamo calls importlib.util.find_spec('tensorrt'); the stand-in must not break it."""
    trt_standin.install(monkeypatch)
    assert importlib.util.find_spec("tensorrt") is not None


def test_serve_sizes_the_context_pool_from_its_concurrency(built, tiny_plan):
    """serve's --concurrency inferences at once get as many execution contexts per engine."""
    from janus_deploy.runtime.server import create_app

    out, _, _, _ = built
    app = create_app(tiny_plan.dir, out, concurrency=3)
    runner = app.state.janus.runner
    assert runner.contexts == 3
    assert load_runner(tiny_plan, out).contexts == trt_backend.DEFAULT_CONTEXTS
    assert load_runner(tiny_plan, out, concurrency=6).contexts == 6


def test_edge_refuses_engines_without_batch_1(built, tiny_plan, tmp_path):
    """The edge sends one frame per request: engines whose profile starts above 1 are refused at start-up."""
    from janus_deploy.backends.base import EngineError, check_batch

    out, meta, _, _ = built
    runner = trt_backend.TrtRunner(tiny_plan, out, {**meta, "min_batch": 2})
    with pytest.raises(EngineError, match=r"take batches 2..16, and the edge \(one frame per request\) runs batches of 1"):
        check_batch(runner, 1, "the edge (one frame per request)")
    import types

    from janus_deploy.runtime.edge import EdgeError, EdgeRuntime

    with pytest.raises(EdgeError, match="rebuild them with `janus-deploy build-engines --min-batch 1"):
        EdgeRuntime._load_runner(types.SimpleNamespace(manifest=tiny_plan), runner, 0)
    check_batch(load_runner(tiny_plan, out), 1, "the edge")  # 1..16 holds it
    check_batch(OrtRunner(tiny_plan), 500, "anyone")  # ORT takes any batch
