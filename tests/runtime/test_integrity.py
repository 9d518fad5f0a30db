"""Integrity on load: serve and run check every file they load against manifest.json /
engines.json before first use (all at start with --preload); verify checks engines.json too."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket

import numpy as np
import pytest
from typer.testing import CliRunner

from janus_deploy.backends import EngineError, load_runner, run_segments
from janus_deploy.backends.ort import OrtRunner
from janus_deploy.backends.verify import check_engines
from janus_deploy.cli.main import app as cli
from janus_deploy.plan.integrity import IntegrityError, forget_verified, map_verified
from janus_deploy.plan.manifest import Manifest
from janus_deploy.runtime.server import create_app


@pytest.fixture
def copy(plan, tmp_path):
    """A private copy of the plan and its engines (engines.json is the only engine file of ort)."""
    _, plan_dir, engines = plan
    shutil.copytree(plan_dir, tmp_path / "plan")
    shutil.copytree(engines, tmp_path / "engines")
    forget_verified()  # the copies are new files anyway; start from a clean record
    return Manifest.load(tmp_path / "plan"), tmp_path / "plan", tmp_path / "engines"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flip_exponent_bit(path, offset: int = 0) -> None:
    """Flip the top exponent bit of the float32 at ``offset`` (1.0 becomes ~1e38: silently wrong)."""
    data = bytearray(path.read_bytes())
    data[offset + 3] ^= 0x40
    path.write_bytes(bytes(data))


def test_flipped_weight_bit_is_refused_at_start_and_on_first_use(copy):
    manifest, plan_dir, engines = copy
    flip_exponent_bit(plan_dir / "weights.bin", 4096)
    with pytest.raises(IntegrityError, match=r"weights\.bin does not match the sha256 recorded in manifest\.json"):
        create_app(plan_dir, engines, preload=True)
    runner = load_runner(manifest, engines, threads=1)  # lazy: nothing read yet
    x = np.zeros((1, 3, 224, 224), np.float32)
    with pytest.raises(IntegrityError, match=r"weights\.bin"):
        run_segments(runner, 0, 0, 1, [x])
    assert runner.loaded() == 0  # no session was created from the damaged file
    # the CLI says so in one line, before serving anything
    r = CliRunner().invoke(cli, ["serve", str(plan_dir), "--engines", str(engines), "--preload",
                                 "--port", str(free_port())])
    assert r.exit_code == 2 and "weights.bin does not match" in r.output and "Traceback" not in r.output


def test_swapped_segment_graphs_are_refused(copy):
    manifest, plan_dir, engines = copy
    a, b = plan_dir / "L01_S01.onnx", plan_dir / "L01_S02.onnx"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    runner = load_runner(manifest, engines, threads=1)
    with pytest.raises(IntegrityError, match=r"L01_S01\.onnx does not match"):
        runner.check_files()
    # lazily: level 0 still runs (its files are intact), level 1 refuses at its swapped segment
    x = np.zeros((1, 3, 224, 224), np.float32)
    out = run_segments(runner, 0, 0, len(manifest.level(0)["segments"]), [x])[0]
    assert out.shape == (1, manifest.model["num_classes"])
    with pytest.raises(IntegrityError, match=r"L01_S01\.onnx"):
        run_segments(runner, 1, 0, len(manifest.level(1)["segments"]), [x])
    # a missing graph is named too
    b.unlink()
    with pytest.raises(IntegrityError, match=r"L01_S02\.onnx is missing"):
        OrtRunner(manifest).session(1, 2)


def test_engines_json_sha256_is_checked(copy):
    manifest, plan_dir, engines = copy
    assert check_engines(manifest, engines) == []
    data = json.loads((engines / "engines.json").read_text())
    data["engines"][1]["sha256"] = "0" * 64
    (engines / "engines.json").write_text(json.dumps(data))
    name = data["engines"][1]["file"]
    with pytest.raises(EngineError, match=f"engines.json does not match the plan: it records sha256 000000000000… for {name}"):
        load_runner(manifest, engines)
    problems = check_engines(manifest, engines)
    assert len(problems) == 1 and name in problems[0] and "engines.json" in problems[0]
    # verify --engines reports it before comparing anything
    r = CliRunner().invoke(cli, ["verify", str(plan_dir), "--engines", str(engines)])
    assert r.exit_code == 2 and name in r.output and "engines.json" in r.output


def test_verify_reports_a_changed_graph_listed_in_engines_json(copy):
    manifest, plan_dir, engines = copy
    data = json.loads((engines / "engines.json").read_text())
    path = plan_dir / data["engines"][0]["file"]
    path.write_bytes(path.read_bytes() + b"\0")
    problems = check_engines(manifest, engines)
    assert any(data["engines"][0]["file"] in p and "sha256" in p for p in problems)


def test_weights_hashed_once_per_process_through_the_mapping(copy):
    manifest, plan_dir, _ = copy
    weights = manifest.data["weights"]
    size = (plan_dir / weights["file"]).stat().st_size
    first, second = OrtRunner(manifest, threads=1), OrtRunner(manifest, threads=1)
    first.check_files()
    graphs = sum((plan_dir / e.file).stat().st_size for e in first.graph_entries())
    assert first.checks.bytes == size + graphs and first.checks.reused == 0
    second.check_files()
    assert second.checks.bytes == graphs and second.checks.reused == 1  # the weights were not hashed again
    blob = second._weight_file()
    assert isinstance(blob, np.memmap) and blob.size == size  # a mapping of the file, not a copy
    assert hashlib.sha256(blob).hexdigest() == weights["sha256"]
    # the record is keyed by the file's identity: a changed file is hashed again
    flip_exponent_bit(plan_dir / weights["file"], 64)
    with pytest.raises(IntegrityError):
        map_verified(plan_dir / weights["file"], weights["sha256"], "manifest.json", "re-export")


def test_build_engines_refuses_a_damaged_plan(copy, tmp_path):
    from janus_deploy.backends import build_engines

    manifest, plan_dir, _ = copy
    flip_exponent_bit(plan_dir / "weights.bin")
    with pytest.raises(IntegrityError, match="weights.bin"):
        build_engines(manifest, tmp_path / "rebuilt", "ort")


def test_run_preload_refuses_a_damaged_plan_before_any_request(copy, tmp_path):
    from janus_deploy.profile.table import profile_from_linear, save_profile

    manifest, plan_dir, engines = copy
    info = {k: manifest.model[k] for k in ("name", "num_blocks", "embed_dim", "num_tokens", "num_prefix_tokens",
                                           "img_size")}
    levels = [(lv["policy"], lv["alpha"]) for lv in manifest.levels]
    for name, (a, b) in (("edge", (2.0, 0.05)), ("cloud", (0.2, 0.005))):
        save_profile(profile_from_linear(info, manifest.candidates, levels, a, b, plan_hash=manifest.hash),
                     tmp_path / f"{name}.json")
    a, b = plan_dir / "L00_S00.onnx", plan_dir / "L00_S01.onnx"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    r = CliRunner().invoke(cli, ["run", str(plan_dir), "--engines", str(engines), "--profile", str(tmp_path / "edge.json"),
                                 "--cloud-profile", str(tmp_path / "cloud.json"), "--server", "http://127.0.0.1:9",
                                 "--sla", "2000", "--synthetic", "1", "--threads", "1", "--preload"])
    assert r.exit_code == 2 and "L00_S00.onnx does not match the sha256 recorded in manifest.json" in r.output, r.output
