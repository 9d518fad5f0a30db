"""Prepacking with shared weights (issue 27): a runner that packs its weights returns the weight
file's mapped pages afterwards (each session holds its packed copy, not the original too), and
answers what the shipped runner answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from janus_deploy.backends import run_segments
from janus_deploy.backends.ort import OrtRunner

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory):
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan

    out = tmp_path_factory.mktemp("prepack") / "plan"
    manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 2}), out, ExportConfig(k=1, levels=2))
    return manifest


def mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    name = str(path.resolve())
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = line.rstrip().endswith(name)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def _run_all(runner, manifest):
    img = manifest.model["img_size"]
    x = np.random.default_rng(1).normal(size=(1, 3, img, img)).astype(np.float32)
    return [run_segments(runner, li, 0, len(lv["segments"]), [x])[0] for li, lv in enumerate(manifest.levels)]


def test_prepacked_runner_returns_the_mapped_weights_and_answers_the_same(small_plan):
    weights = small_plan.path(small_plan.data["weights"]["file"])
    size_kb = weights.stat().st_size // 1024
    shipped = OrtRunner(small_plan, threads=1)
    want = _run_all(shipped, small_plan)
    assert mapped_kb(weights) > 0.8 * size_kb  # prepacking off: the sessions read the mapped originals
    del shipped

    packed = OrtRunner(small_plan, threads=1, graphs="level-free", level_free_everywhere=True, disable_prepacking=False)
    got = _run_all(packed, small_plan)
    got = _run_all(packed, small_plan)  # again: weights that are not packed are read back through the mapping
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # the packed copies live in the sessions; only what is not packed (norms, biases, embeddings)
    # is mapped again
    assert mapped_kb(weights) < 0.3 * size_kb, (mapped_kb(weights), size_kb)
    assert packed.loaded() == len(small_plan.level_free_segments)  # one session per segment for every level


def test_build_engines_prepack_records_it_and_the_runner_uses_it(small_plan, tmp_path):
    from typer.testing import CliRunner

    from janus_deploy.backends import build_engines, load_runner
    from janus_deploy.cli.main import app

    data = build_engines(small_plan, tmp_path / "e", "ort", graphs="level-free", prepack=True)
    assert data["session"]["disable_prepacking"] is False and data["session"]["level_free_everywhere"] is True
    runner = load_runner(small_plan, tmp_path / "e", threads=1)
    assert not runner.disable_prepacking and runner.level_free_everywhere and runner.graphs == "level-free"
    want = _run_all(OrtRunner(small_plan, threads=1), small_plan)
    for a, b in zip(want, _run_all(runner, small_plan)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert runner.loaded() == len(small_plan.level_free_segments)  # level 0 runs the level-free graphs too
    cli = CliRunner()
    # per-level graphs with --prepack: one packed copy through the C API's container (tests/test_ort_capi.py)
    res = cli.invoke(app, ["build-engines", str(small_plan.dir), "--out", str(tmp_path / "x"), "--prepack"])
    assert res.exit_code == 0, res.output
    session = json.loads((tmp_path / "x" / "engines.json").read_text())["session"]
    assert session["shared_prepacked"] is True and session["graphs"] == "level"
    res = cli.invoke(app, ["build-engines", str(small_plan.dir), "--out", str(tmp_path / "y"), "--backend", "trt",
                           "--prepack"])
    assert res.exit_code != 0 and "--prepack is for the ort backend" in res.output
