"""`calibrate --engines DIR`: accuracy per level measured through built engines (issue 25 item 2):
fp32 ORT engines against the PyTorch model, int8 Q/DQ engines against the Q/DQ graphs run directly
with ONNX Runtime, and the CLI without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from janus_deploy.backends import build_engines, qdq
from janus_deploy.calibrate import (
    SMALL_MODEL_CHECKPOINT,
    SMALL_MODEL_NAME,
    SMALL_MODEL_OVERRIDES,
    calibrate,
    calibrate_engines,
    load_accuracy,
    make_digits,
    save_accuracy,
    write_image_folder,
)
from janus_deploy.calibrate.accuracy import check_accuracy_for_plan
from janus_deploy.images import normalize
from janus_deploy.model import ModelSpec
from janus_deploy.plan import ExportConfig, export_plan

ROOT = Path(__file__).resolve().parents[1]
N = 24


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The committed digits ViT, k = 2, 3 levels; fp32 and int8 (Q/DQ) ORT engines."""
    root = tmp_path_factory.mktemp("cal_engines")
    spec = ModelSpec(SMALL_MODEL_NAME, dict(SMALL_MODEL_OVERRIDES), str(ROOT / SMALL_MODEL_CHECKPOINT))
    manifest, _ = export_plan(spec, root / "plan", ExportConfig(k=2, levels=3))
    write_image_folder(root / "calib", "train", limit=24)
    build_engines(manifest, root / "fp32", "ort")
    build_engines(manifest, root / "int8", "ort", precision="int8", calibration=root / "calib")
    frames, labels = make_digits("test", limit=N)
    return manifest, root, frames, labels


def test_fp32_engines_match_the_pytorch_model(built):
    manifest, root, frames, labels = built
    torch_table = calibrate(manifest, frames, labels, batch_size=8)
    table = calibrate_engines(manifest, root / "fp32", frames, labels, batch_size=5, threads=1)
    assert torch_table["measured_with"] == {"backend": "pytorch", "precision": "fp32"}
    mw = table["measured_with"]
    assert (mw["backend"], mw["precision"], mw["engines"]) == ("ort", "fp32", str(root / "fp32"))
    assert table["plan_hash"] == manifest.hash and table["num_images"] == N
    for mine, ref in zip(table["levels"], torch_table["levels"]):
        assert {k: mine[k] for k in ("index", "policy", "alpha", "tokens")} == \
               {k: ref[k] for k in ("index", "policy", "alpha", "tokens")}
        assert mine["accuracy"] == ref["accuracy"] and mine["agreement"] == ref["agreement"]
    assert table["levels"][0]["agreement"] == 1.0


def _qdq_top1(manifest, engine_dir, level, frames):
    """The level's Q/DQ graphs run one after another with plain ONNX Runtime sessions."""
    import onnxruntime as ort

    m = manifest.model
    out = [normalize(frames, m["mean"], m["std"])]
    for seg in manifest.levels[level]["segments"]:
        sess = ort.InferenceSession(str(qdq.graph_path(engine_dir, seg["file"])), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        out = sess.run(None, {s["name"]: v for s, v in zip(seg["inputs"], out) if s["name"] in names})
    return np.asarray(out[0]).argmax(-1)


def test_int8_engines_measure_the_qdq_graphs(built, tmp_path):
    manifest, root, frames, labels = built
    table = calibrate_engines(manifest, root / "int8", frames, labels, batch_size=8, threads=1, task="digits")
    assert table["measured_with"]["backend"] == "ort" and table["measured_with"]["precision"] == "int8"
    ref = _qdq_top1(manifest, root / "int8", 0, frames)
    for lv in table["levels"]:
        p = _qdq_top1(manifest, root / "int8", lv["index"], frames)
        assert lv["accuracy"] == round(float((p == labels).mean()), 6)
        assert lv["agreement"] == round(float((p == ref).mean()), 6)
    # a table like any other: validated on save and load, plan-hash checked, read by the scheduler
    path = save_accuracy(table, tmp_path / "acc.json")
    assert load_accuracy(path)["measured_with"]["precision"] == "int8"
    check_accuracy_for_plan(table, manifest.hash)
    from janus_deploy.schedule.accuracy_view import load_accuracy as sched_load

    assert sched_load(path)["levels"] == table["levels"]
    bad = json.loads(path.read_text())
    bad["measured_with"]["precision"] = "int4"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(Exception, match="measured_with"):
        load_accuracy(tmp_path / "bad.json")


def test_cli_calibrates_int8_engines_without_torch(built, tmp_path):
    manifest, root, frames, labels = built
    out = tmp_path / "acc.json"
    # torch cannot be imported (a finder refusing it; sys.modules['torch'] = None would trip scipy)
    code = ("import sys\nclass NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n            raise ImportError('no torch here')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from typer.testing import CliRunner\nfrom janus_deploy.cli.main import app\n"
            f"r = CliRunner().invoke(app, ['calibrate', {str(manifest.dir)!r}, '--task', 'digits', '--limit', '{N}', "
            f"'--engines', {str(root / 'int8')!r}, '--out', {str(out)!r}])\n"
            "print(r.output, repr(r.exception)); assert 'torch' not in sys.modules; sys.exit(r.exit_code)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "measured with ort int8" in res.stdout
    table = load_accuracy(out)
    direct = calibrate_engines(manifest, root / "int8", frames, labels, threads=1, task="digits")
    assert table["measured_with"]["precision"] == "int8" and table["task"] == "digits"
    assert [lv["accuracy"] for lv in table["levels"]] == [lv["accuracy"] for lv in direct["levels"]]
