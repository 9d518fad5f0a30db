"""TensorRT backend: a clear error where TensorRT is missing; real checks only on a GPU."""

import importlib.util

import pytest

from janus_deploy.backends import EngineError, build_engines
from janus_deploy.backends.trt import engine_name

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_fails_clearly(tiny_plan, tmp_path):
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        build_engines(tiny_plan, tmp_path / "trt", "trt")


def test_engine_names_are_keyed():
    name = engine_name("ab" * 32, 3, 7, "fp16", "10.3.0", "8.7")
    assert name == "abababababab_L03_S07_fp16_trt10.3.0_sm87.engine"


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and an NVIDIA GPU (run tools/gpu_check.sh)")
def test_trt_parity_with_ort(tiny_plan, tmp_path):
    import numpy as np

    from janus_deploy.backends import load_runner, run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.images import normalize, synthetic_frames

    build_engines(tiny_plan, tmp_path / "trt", "trt", precision="fp16")
    trt_runner, ort_runner = load_runner(tiny_plan, tmp_path / "trt"), OrtRunner(tiny_plan)
    x = normalize(synthetic_frames(1, 224), tiny_plan.model["mean"], tiny_plan.model["std"])
    for li in (0, len(tiny_plan.levels) - 1):
        n = len(tiny_plan.levels[li]["segments"])
        a = run_segments(trt_runner, li, 0, n, [x])[0]
        b = run_segments(ort_runner, li, 0, n, [x])[0]
        cos = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cos >= 0.999 and a.argmax() == b.argmax()


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_cli_names_the_extra_verbatim(tiny_plan, tmp_path):
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    res = CliRunner().invoke(app, ["build-engines", str(tiny_plan.dir), "--backend", "trt", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "janus-deploy[trt]" in " ".join(res.output.split())  # brackets are not eaten as markup
