"""Calibration: the digits task, the committed small ViT, accuracy tables and the `calibrate` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from janus_deploy.calibrate import (
    AccuracyError,
    calibrate,
    load_accuracy,
    load_labelled_folder,
    make_digits,
    save_accuracy,
    write_image_folder,
)
from janus_deploy.calibrate.digits import (
    SMALL_MODEL_CHECKPOINT,
    SMALL_MODEL_NAME,
    SMALL_MODEL_OVERRIDES,
    TaskError,
    split_indices,
)
from janus_deploy.cli.main import app
from janus_deploy.model import ModelSpec
from janus_deploy.plan import ExportConfig, export_plan

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / SMALL_MODEL_CHECKPOINT
NUM_EVAL = 200  # held-out images used by the accuracy test (keeps the test fast on 2 cores)
cli = CliRunner()


@pytest.fixture(scope="module")
def digits_plan(tmp_path_factory):
    """The committed small ViT exported with k = 3, 3 exponential levels and ToMe r = 4."""
    out = tmp_path_factory.mktemp("digits_plan")
    spec = ModelSpec(SMALL_MODEL_NAME, dict(SMALL_MODEL_OVERRIDES), str(CHECKPOINT))
    manifest, _ = export_plan(spec, out, ExportConfig(k=3, levels=3, baseline_r=4))
    return manifest


@pytest.fixture(scope="module")
def table(digits_plan):
    frames, labels = make_digits("test", seed=0, limit=NUM_EVAL)
    calls = []
    result = calibrate(digits_plan, frames, labels, batch_size=100, task="digits",
                       progress=lambda d, t, text: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]  # progress reached its total
    return result


# ------------------------------------------------------------------------------ digits task
def test_digits_task_is_deterministic_and_split_cleanly():
    f1, l1 = make_digits("test", seed=0, limit=16)
    f2, l2 = make_digits("test", seed=0, limit=16)
    assert f1.dtype == np.uint8 and f1.shape == (16, 64, 64, 3) and l1.dtype == np.int64
    assert np.array_equal(f1, f2) and np.array_equal(l1, l2)
    f3, l3 = make_digits("test", seed=1, limit=16)
    assert np.array_equal(l1, l3) and not np.array_equal(f1, f3)  # same digits, new rendering
    full, _ = make_digits("test", seed=0)
    assert np.array_equal(full[:16], f1)  # limit is a prefix
    train, test = split_indices("train"), split_indices("test")
    assert not set(train) & set(test) and len(train) + len(test) == 1797
    assert len(test) == 359 and np.bincount(full_labels := make_digits("test")[1]).min() >= 35
    assert set(full_labels) == set(range(10))
    with pytest.raises(TaskError, match="unknown split"):
        make_digits("val")


def test_write_image_folder_round_trips(tmp_path):
    n = write_image_folder(tmp_path / "digits", "test", limit=12)
    assert n == 12
    frames, labels = make_digits("test", limit=12)
    got, got_labels = load_labelled_folder(tmp_path / "digits", 64)
    assert len(got) == 12
    # PNG is lossless: every written frame comes back with its label (order is class-interleaved)
    want = {(int(lab), f.tobytes()) for f, lab in zip(frames, labels)}
    assert {(int(lab), f.tobytes()) for f, lab in zip(got, got_labels)} == want
    assert sorted(got_labels[:3]) == list(got_labels[:3])  # round-robin over classes
    assert len(load_labelled_folder(tmp_path / "digits", 64, limit=5)[0]) == 5
    # non-numeric class names are numbered in sorted order; images are resized to the model's size
    from PIL import Image

    for name in ("dog", "cat"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        Image.fromarray(frames[0]).resize((40, 30)).save(tmp_path / "pets" / name / "x.jpg")
    pets, pet_labels = load_labelled_folder(tmp_path / "pets", 64)
    assert pets.shape == (2, 64, 64, 3) and list(pet_labels) == [0, 1]  # cat, dog


# ------------------------------------------------------------------------------ accuracy
def test_committed_checkpoint_is_small_and_loads():
    from janus_deploy.model import create_model

    assert CHECKPOINT.is_file() and CHECKPOINT.stat().st_size < 25e6
    model = create_model(SMALL_MODEL_NAME, checkpoint=CHECKPOINT, **SMALL_MODEL_OVERRIDES)
    assert len(model.blocks) >= 6 and model.num_classes == 10


def test_accuracy_per_level(table, digits_plan):
    assert table["kind"] == "janus-deploy/accuracy" and table["format_version"] == 1
    assert table["plan_hash"] == digits_plan.hash and table["num_images"] == NUM_EVAL
    levels = table["levels"]
    assert [(lv["policy"], lv["alpha"]) for lv in levels] == [(lv["policy"], lv["alpha"]) for lv in digits_plan.levels]
    expo = [lv for lv in levels if lv["policy"] == "exponential"]
    base = expo[0]
    assert base["alpha"] == 0.0 and base["agreement"] == 1.0
    assert base["accuracy"] >= 0.9
    # The largest level (alpha_max: 65 -> 2 tokens) measurably costs accuracy.
    assert expo[-1]["accuracy"] < base["accuracy"] - 0.1
    assert expo[-1]["agreement"] < 1.0
    const = [lv for lv in levels if lv["policy"] == "constant"]
    assert len(const) == 1 and const[0]["alpha"] == 4.0 and 0.0 <= const[0]["accuracy"] <= 1.0


def test_calibrate_without_labels_and_bad_inputs(digits_plan):
    frames, _ = make_digits("test", limit=4)
    t = calibrate(digits_plan.dir, frames, None)
    assert all(lv["accuracy"] is None for lv in t["levels"]) and t["levels"][0]["agreement"] == 1.0
    with pytest.raises(AccuracyError, match="32x32 but the plan's model takes 64x64"):
        calibrate(digits_plan, frames[:, :32, :32], None)
    with pytest.raises(AccuracyError, match="one label per frame"):
        calibrate(digits_plan, frames, np.zeros(3, np.int64))
    with pytest.raises(AccuracyError, match="10 classes"):
        calibrate(digits_plan, frames, np.full(4, 12))


def test_save_load_and_validation(table, tmp_path):
    path = save_accuracy(table, tmp_path / "sub" / "acc.json")
    assert load_accuracy(path) == json.loads(path.read_text()) == table
    bad = dict(table, kind="janus-deploy/profile")
    with pytest.raises(AccuracyError, match="expected 'janus-deploy/accuracy'"):
        save_accuracy(bad, tmp_path / "bad.json")
    broken = json.loads(json.dumps(table))
    broken["levels"][1]["accuracy"] = 1.5
    (tmp_path / "range.json").write_text(json.dumps(broken))
    with pytest.raises(AccuracyError, match=r"levels\[1\]\.accuracy must be in \[0, 1\]"):
        load_accuracy(tmp_path / "range.json")
    (tmp_path / "nojson.json").write_text("{oops")
    with pytest.raises(AccuracyError, match="not valid JSON"):
        load_accuracy(tmp_path / "nojson.json")
    with pytest.raises(AccuracyError, match="does not exist"):
        load_accuracy(tmp_path / "missing.json")


# ------------------------------------------------------------------------------ CLI
def test_cli_calibrate_image_folder(digits_plan, tmp_path):
    write_image_folder(tmp_path / "imgs", "test", limit=10)
    out = tmp_path / "acc.json"
    res = cli.invoke(app, ["calibrate", str(digits_plan.dir), "--images", str(tmp_path / "imgs"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    t = load_accuracy(out)
    assert t["num_images"] == 10 and t["task"].startswith("imagefolder:")
    assert "agreement" in res.output and "accuracy table written" in res.output
    res = cli.invoke(app, ["calibrate", str(digits_plan.dir), "--task", "digits", "--limit", "6", "--json",
                           "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert load_accuracy(out)["task"] == "digits" and load_accuracy(out)["num_images"] == 6


def test_cli_calibrate_bad_inputs(digits_plan, tmp_path):
    plan = str(digits_plan.dir)
    out = str(tmp_path / "acc.json")

    def run(*args):
        res = cli.invoke(app, ["calibrate", plan, *args, "--out", out])
        assert res.exit_code != 0
        return res.output.replace("\n", "")  # rich wraps long lines

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in run("--images", str(empty))
    flat = tmp_path / "flat"
    flat.mkdir()
    write_image_folder(tmp_path / "tmp", "test", limit=1)
    next((tmp_path / "tmp").rglob("*.png")).rename(flat / "a.png")
    assert "not in a class sub-folder" in run("--images", str(flat))
    corrupt = tmp_path / "corrupt" / "3"
    corrupt.mkdir(parents=True)
    (corrupt / "broken.png").write_bytes(b"\x89PNG not really")
    msg = run("--images", str(corrupt.parent))
    assert "cannot read image" in msg and "broken.png" in msg
    assert "exactly one of" in run()
    assert "exactly one of" in run("--task", "digits", "--images", str(flat))
    assert "unknown task" in run("--task", "imagenet")
    assert "does not exist" in run("--images", str(tmp_path / "nowhere"))
    assert not Path(out).exists()
    res = cli.invoke(app, ["calibrate", str(tmp_path), "--task", "digits", "--out", out])
    assert res.exit_code != 0 and "is not a plan" in " ".join(res.output.split())


def test_hidden_folders_are_no_class(tmp_path):
    """A thumbnail cache next to the class folders is skipped, not a crash or a class."""
    from PIL import Image

    from janus_deploy.calibrate.accuracy import labelled_files

    for c in ("0", "1", ".thumbs"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / c / "a.png")
    files, names = labelled_files(tmp_path)
    assert names == ["0", "1"] and [label for _, label in files] == [0, 1]
