"""The README's main job, shrunk: every stage runs and every request is answered."""

import json

import pytest
from typer.testing import CliRunner

from janus_deploy.cli.main import app
from janus_deploy.demo import run_demo
from janus_deploy.report import REPORT_KEYS
from janus_deploy.schedule.runlog import read_run_log


def test_demo_end_to_end(tmp_path):
    trace = tmp_path / "link.cooked"  # Pensieve format: seconds Mbit/s
    trace.write_text("".join(f"{i * 0.05:.2f} {20 if i % 20 < 15 else 2}\n" for i in range(400)))
    out = tmp_path / "demo"
    summary = run_demo(out, requests=12, levels=3, runs=2, trace=str(trace), say=lambda s: None)
    for name in ("plan/manifest.json", "engines/engines.json", "accuracy.json", "edge-profile.json",
                 "cloud-profile.json", "requests.jsonl", "summary.json"):
        assert (out / name).is_file(), name
    records = read_run_log(out / "requests.jsonl").records
    assert len(records) == 12 and all(r.error is None and r.top1 is not None for r in records)
    assert summary["top1_accuracy"] >= 0.75  # the trained digits model answers correctly
    assert set(REPORT_KEYS) <= set(summary)  # the one run-report schema
    # the simulator's path, fed the recorded observations, makes every decision the edge made
    r = CliRunner().invoke(app, ["replay", str(out / "requests.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    import json

    replayed = json.loads(r.output)
    assert replayed["requests"] == 12 and replayed["decisions_reproduced"] == 1.0, replayed

    # the comparison: the run's own row is the run report's numbers; the baselines do what they say
    from janus_deploy.report import COMPARISON_WIDTH, format_comparison

    rows = {(row["system"], row["how"]): row for row in summary["comparison"]["rows"]}
    ran = rows["janus-deploy", "ran"]
    assert ran["requests"] == 12 and ran["violation_ratio"] == pytest.approx(summary["violation_ratio"])
    assert ran["mean_bytes"] == pytest.approx(summary["mean_bytes"])
    assert ran["top1"] == pytest.approx(summary["top1_accuracy"])
    device, cloud = rows["device-only", "replayed"], rows["cloud-only", "replayed"]
    assert device["mean_bytes"] == 0 and device["most_chosen"] == "r4@7" and device["most_chosen_share"] == 1.0
    assert cloud["mean_bytes"] == 64 * 64 * 3 and cloud["most_chosen"] == "r4@0"  # every uint8 frame sent
    assert all(row["requests"] == 12 and 0 <= row["top1"] <= 1 for row in rows.values())
    text = format_comparison(summary["comparison"])
    assert max(len(line) for line in text.splitlines()) <= COMPARISON_WIDTH
    assert "replayed" in text and "ran" in text
    assert (out / "decision-map.png").stat().st_size > 10_000 and summary["decision_map"].endswith("decision-map.png")


def test_demo_runs_from_a_bare_copy_with_nothing_beside_it(tmp_path):
    """The README's first command on a bare clone: the package, the committed checkpoint and
    pyproject copied into a folder whose parent holds nothing else, JANUS_TRACES unset, run
    with that copy first on the path. The demo must find the shipped traces inside the copy
    (fails if they were not shipped: nothing else is reachable) and write the comparison and
    the decision map."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    ignore = shutil.ignore_patterns("__pycache__", "_libjanus", "._libjanus-*")
    shutil.copytree(repo / "janus_deploy", clone / "janus_deploy", ignore=ignore)
    shutil.copytree(repo / "calibration", clone / "calibration")
    shutil.copy(repo / "pyproject.toml", clone / "pyproject.toml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clone"]  # nothing beside the copy (no shared folder)
    env = {k: v for k, v in os.environ.items() if k not in ("JANUS_TRACES", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(clone), COLUMNS="80", PYTHONUNBUFFERED="1")
    code = ("import janus_deploy, sys; from janus_deploy.cli.main import main; "
            "assert janus_deploy.__file__.startswith(sys.argv[1]), janus_deploy.__file__; "
            "sys.argv = ['janus-deploy', *sys.argv[2:]]; main()")
    r = subprocess.run([sys.executable, "-c", code, str(clone), "demo", "--out", "runs/demo", "--requests", "12",
                        "--levels", "3", "--runs", "2", "--json"], cwd=clone, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["answered"] == 12
    shipped = clone / "janus_deploy" / "net" / "traces_data" / "uplink-5g-lte"
    assert summary["trace"]["spec"].startswith(str(shipped)), summary["trace"]  # the copy's own traces
    rows = {(row["system"], row["how"]) for row in summary["comparison"]["rows"]}
    assert rows == {("janus-deploy", "ran"), ("janus-deploy", "replayed"), ("janus-paper", "replayed"),
                    ("device-only", "replayed"), ("cloud-only", "replayed")}
    assert (clone / "runs" / "demo" / "decision-map.png").stat().st_size > 10_000
