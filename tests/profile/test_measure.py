
import numpy as np
import pytest
from typer.testing import CliRunner

from janus_deploy.backends.ort import OrtRunner
from janus_deploy.cli.main import app
from janus_deploy.images import synthetic_frames
from janus_deploy.model import ModelSpec
from janus_deploy.plan import ExportConfig, export_plan
from janus_deploy.wire import codecs as C
from janus_deploy.profile.measure import check_profile_for_plan, fit_linear, linear_profile, measure_profile
from janus_deploy.profile.table import ProfileError, load_profile

cli = CliRunner()


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("pplan")
    manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 4}), out, ExportConfig(k=2, levels=3))
    return manifest


@pytest.fixture(scope="module")
def measured(small_plan):
    runner = OrtRunner(small_plan, threads=1)
    return measure_profile(small_plan, runner, synthetic_frames(3, 224), device_name="ci", warmup=1, runs=3)


def test_head_tail_derive_from_segments(small_plan, measured):
    prof, report = measured
    # depth 4, k = 2: C = {0, 1, 2, 4, 5}; segments [1,1] [2,2] [3,4] [head]; written out by hand:
    assert prof.candidates == [0, 1, 2, 4, 5]
    edge_segments = {0: 0, 1: 1, 2: 2, 4: 3, 5: 4}
    for li, lv in enumerate(prof.levels):
        meds = [s.median for s in lv.segment_ms]
        assert len(meds) == 4
        for s, e in edge_segments.items():
            assert prof.head_ms(li, s) == pytest.approx(sum(meds[:e]))
            assert prof.tail_ms(li, s) == pytest.approx(sum(meds[e:]))
    assert prof.plan_hash == small_plan.hash and prof.source == "measured"
    assert {r["index"] for r in report["levels"]} == {0, 1, 2} and all(r["unsplit_ms"] > 0 for r in report["levels"])


def test_codec_payload_sizes(small_plan, measured):
    prof, report = measured
    d = small_plan.model["embed_dim"]
    for li, lv in enumerate(small_plan.levels):
        for s in prof.candidates[1:-1]:
            x = lv["tokens"][s]
            fp32 = prof.payload_bytes(li, s, "fp32")
            assert fp32 == 4 * x * (d + 1)
            assert prof.payload_bytes(li, s, "fp16") * 2 == fp32  # exactly half
            assert prof.payload_bytes(li, s, "int8") == x * d + 4 * x + 2 * x
            assert 0 < prof.payload_bytes(li, s, "fp16-zstd")
        assert prof.payload_bytes(li, 0, "fp32") == 224 * 224 * 3  # the uint8 frame
        assert prof.payload_bytes(li, 0, "fp16-zstd") < 224 * 224 * 3  # smooth frame compresses
    agree = report["codecs"]["int8"]["top1_agreement"]
    assert 0.9 <= agree <= 1.0 and report["codecs"]["fp32"]["top1_agreement"] == 1.0


def test_codecs_roundtrip():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(2, 5, 8)).astype(np.float32)
    size = rng.integers(1, 4, size=(2, 5, 1)).astype(np.float32)
    t, s = C.decode_tokens(C.encode_tokens(tokens, size, "fp32"))
    assert np.array_equal(t, tokens) and np.array_equal(s, size)
    t, s = C.decode_tokens(C.encode_tokens(tokens, size, "int8"))
    assert np.array_equal(s, size)
    # symmetric per-token int8: error at most half a quantisation step
    step = np.abs(tokens).max(-1, keepdims=True) / 127
    assert np.all(np.abs(t - tokens) <= step / 2 + 1e-6)
    body = C.compress(b"\0" * 10000, "fp16-zstd")
    assert len(body) < 100 and C.decompress(body, "zstd", 10000) == b"\0" * 10000
    with pytest.raises(C.CodecError, match="unknown codec"):
        C.get_codec("bf17")
    with pytest.raises(C.CodecError):
        C.decompress(C.compress(b"\0" * 10000, "fp16-zstd"), "zstd", 100)


def test_fit_linear_recovers_known_model(small_plan):
    a, b = 0.5, 0.02
    levels = []
    for lv in small_plan.levels:
        segs = []
        for j, (lo, hi) in enumerate(small_plan.data["segments"]):
            blocks = range(lo, hi + 1)
            segs.append({"median": sum(a + b * lv["tokens"][l - 1] for l in blocks) + (3.0 if j == 0 else 0)})
        levels.append({"tokens": lv["tokens"], "segment_ms": segs})
    fit = fit_linear(small_plan, {"levels": levels})
    assert fit["a_ms"] == pytest.approx(a) and fit["b_ms_per_token"] == pytest.approx(b)
    assert fit["max_rel_err"] < 1e-9


def test_profile_for_other_plan_rejected(small_plan, tmp_path):
    other, _ = export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 4}), tmp_path / "o", ExportConfig(k=2, levels=2))
    prof = linear_profile(other, 0.4, 0.02, "x")
    with pytest.raises(ProfileError, match="made for plan"):
        check_profile_for_plan(prof, small_plan)
    check_profile_for_plan(linear_profile(small_plan, 0.4, 0.02, "x"), small_plan)


def test_profile_cli_linear_and_bad_input(small_plan, tmp_path):
    out = tmp_path / "lin.json"
    res = cli.invoke(app, ["profile", str(small_plan.dir), "--device-name", "jetson", "--from-linear", "0.41,0.0235", "--out", str(out)])
    assert res.exit_code == 0, res.output
    prof = load_profile(out)
    x0 = small_plan.model["num_tokens"]
    assert prof.head_ms(0, 1) == pytest.approx(0.41 + 0.0235 * x0)
    res = cli.invoke(app, ["profile", str(small_plan.dir), "--device-name", "j", "--from-linear", "fast,0.1", "--out", str(out)])
    assert res.exit_code != 0 and "two numbers" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    engines = tmp_path / "eng"
    assert cli.invoke(app, ["build-engines", str(small_plan.dir), "--out", str(engines)]).exit_code == 0
    res = cli.invoke(app, ["profile", str(small_plan.dir), "--engines", str(engines), "--device-name", "c", "--images", str(empty), "--out", str(out)])
    assert res.exit_code != 0 and "no images" in res.output
    (empty / "broken.png").write_bytes(b"\x89PNG not really")
    res = cli.invoke(app, ["profile", str(small_plan.dir), "--engines", str(engines), "--device-name", "c", "--images", str(empty), "--out", str(out)])
    assert res.exit_code != 0 and "cannot read image" in res.output and "broken.png" in res.output
