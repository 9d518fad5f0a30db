"""ONNX Runtime's C API through ctypes (backends/ort_capi.py) and the runner on it: per-level
graphs whose sessions share one prepacked copy of the weights (issue 27)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper as h
from onnx import numpy_helper as nh

from janus_deploy.backends import EngineError, run_segments
from janus_deploy.backends.ort import OrtRunner

ort_capi = pytest.importorskip("janus_deploy.backends.ort_capi")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the wheel's libonnxruntime.so")


def _matmul_model(tmp_path: Path, w: np.ndarray) -> tuple[bytes, str]:
    """x @ W -> LayerNorm -> Softmax, W stored as external data (as the plans store weights)."""
    scale = np.linspace(0.5, 1.5, w.shape[1]).astype(np.float32)
    g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"]),
                      h.make_node("LayerNormalization", ["y", "scale"], ["n"], axis=-1),
                      h.make_node("Softmax", ["n"], ["z"], axis=-1)], "t",
                     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, w.shape[0]])],
                     [h.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [None, w.shape[1]])],
                     [nh.from_array(w, "W"), nh.from_array(scale, "scale")])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), tmp_path / "m.onnx",
              save_as_external_data=True, location="w.bin", size_threshold=0)
    return onnx.load(tmp_path / "m.onnx", load_external_data=False).SerializeToString(), str(tmp_path)


def test_the_table_answers_as_the_header_says():
    a = ort_capi.api()
    import onnxruntime

    assert a.version == onnxruntime.__version__  # the wheel's own C library
    with pytest.raises(EngineError, match="Invalid input name: nope"):
        w = np.eye(4, dtype=np.float32)
        g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"])], "t",
                         [h.make_tensor_value_info("x", 1, [1, 4])], [h.make_tensor_value_info("y", 1, [1, 4])],
                         [nh.from_array(w, "W")])
        s = ort_capi.CSession(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString(),
                              ort_capi.SharedWeights(), {})
        s.run(None, {"nope": np.ones((1, 4), np.float32)})


def test_sessions_sharing_a_container_answer_as_the_python_session(tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    w = rng.normal(size=(96, 48)).astype(np.float32)
    model, folder = _matmul_model(tmp_path, w)
    x = rng.normal(size=(5, 96)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.model_external_initializers_file_folder_path", folder)
    want = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    shared = ort_capi.SharedWeights()
    cfg = {"session.model_external_initializers_file_folder_path": folder}
    sessions = [ort_capi.CSession(model, shared, {"W": w}, threads=1, config=cfg) for _ in range(2)]
    assert [i.name for i in sessions[0].get_inputs()] == ["x"] and [o.name for o in sessions[0].get_outputs()] == ["z"]
    for s in sessions:
        got = s.run(None, {"x": x})[0]
        assert got.dtype == np.float32 and got.shape == (5, 48)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # again (ORT now writes into arrays of the shapes it returned), and at another batch size
    for rows in (5, 3, 5):
        got = sessions[1].run(None, {"x": x[:rows]})[0]
        np.testing.assert_allclose(got, want[:rows], rtol=1e-5, atol=1e-6)


def test_a_library_that_is_not_onnxruntime_is_one_clear_error(tmp_path):
    with pytest.raises(EngineError, match="cannot load ONNX Runtime's C library .*without --prepack"):
        ort_capi.OrtCApi(tmp_path / "missing.so")
    libc = next(p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/lib64/libc.so.6")
                if Path(p).exists())
    with pytest.raises(EngineError, match="OrtGetApiBase"):
        ort_capi.OrtCApi(libc)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """Weights that dominate the graphs (vit_small's width, 2 blocks: 17 MB), 3 levels."""
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan

    out = tmp_path_factory.mktemp("capi") / "plan"
    manifest, _ = export_plan(ModelSpec("vit_small_patch16_224", {"depth": 2}), out, ExportConfig(k=1, levels=3))
    return manifest


def _run_all(runner, manifest):
    img = manifest.model["img_size"]
    x = np.random.default_rng(1).normal(size=(1, 3, img, img)).astype(np.float32)
    return [run_segments(runner, li, 0, len(lv["segments"]), [x])[0] for li, lv in enumerate(manifest.levels)]


def test_per_level_sessions_on_the_c_api_answer_as_the_shipped_runner(plan, tmp_path):
    from janus_deploy.backends import build_engines, load_runner

    want = _run_all(OrtRunner(plan, threads=1), plan)
    data = build_engines(plan, tmp_path / "e", "ort", prepack=True)  # per-level graphs: the C API's container
    assert data["session"]["shared_prepacked"] is True and data["session"]["disable_prepacking"] is False
    runner = load_runner(plan, tmp_path / "e", threads=1)
    assert runner.shared_prepacked and runner.graphs == "level"
    for _ in range(2):
        for a, b in zip(want, _run_all(runner, plan)):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    assert runner.loaded() == sum(len(lv["segments"]) for lv in plan.levels)  # one session per level and segment
    runner.unload(0, 0)
    assert runner.loaded() == sum(len(lv["segments"]) for lv in plan.levels) - 1


def test_the_runner_names_the_fix_when_the_c_library_is_missing(plan, monkeypatch, tmp_path):
    monkeypatch.setattr(ort_capi, "_API", None)
    monkeypatch.setattr(ort_capi, "library_path", lambda: tmp_path / "libonnxruntime.so.0")
    runner = OrtRunner(plan, threads=1, shared_prepacked=True)
    with pytest.raises(EngineError, match=r"^cannot load ONNX Runtime's C library .*without --prepack"):
        _run_all(runner, plan)


def test_prepack_is_cpu_only():
    from janus_deploy.backends.ort import build

    with pytest.raises(EngineError, match="--prepack shares packed weights between CPU sessions"):
        build(None, Path("/nonexistent"), device="cuda", prepack=True)  # type: ignore[arg-type] # refused first


PROBE = Path(__file__).parent.parent / "tools" / "bench_prepack.py"


def _resident(plan, config: str) -> dict:
    out = subprocess.run([sys.executable, str(PROBE), "--memory-probe", str(plan.dir), config], capture_output=True,
                         text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def wide_plan(tmp_path_factory):
    """Weights well above ORT's fixed costs (vit_base's width, 3 blocks: 91 MB), 3 levels."""
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan

    out = tmp_path_factory.mktemp("capi-wide") / "plan"
    manifest, _ = export_plan(ModelSpec("vit_base_patch16_224", {"depth": 3}), out, ExportConfig(k=1, levels=3))
    return manifest


def test_every_level_resident_in_one_packed_copy(wide_plan):
    """All levels loaded and run: the C API runner's sessions hold one packed copy between them,
    ≤ 1.3 × the weight bytes, no more than the shipped runner's one unpacked copy; sessions with
    their own packed copies hold one per level (what the check sees when nothing is shared)."""
    plan = wide_plan
    wb = plan.model["weight_bytes"]
    ours = _resident(plan, "per-level-shared-prepacked")
    shipped = _resident(plan, "shipped")
    private = _resident(plan, "private-prepacked")
    assert ours["sessions"] == private["sessions"] == sum(len(lv["segments"]) for lv in plan.levels)
    assert ours["rss_bytes"] <= 1.3 * wb, (ours, wb)
    assert ours["rss_bytes"] <= shipped["rss_bytes"] + 0.05 * wb, (ours, shipped, wb)
    assert private["rss_bytes"] - ours["rss_bytes"] >= 0.8 * (len(plan.levels) - 1) * wb, (private, ours, wb)
