"""The README's main job, shrunk: every stage runs and every request is answered."""

from typer.testing import CliRunner

from janus_deploy.cli.main import app
from janus_deploy.demo import run_demo
from janus_deploy.report import REPORT_KEYS, read_run_log


def test_demo_end_to_end(tmp_path):
    trace = tmp_path / "link.cooked"  # Pensieve format: seconds Mbit/s
    trace.write_text("".join(f"{i * 0.05:.2f} {20 if i % 20 < 15 else 2}\n" for i in range(400)))
    out = tmp_path / "demo"
    summary = run_demo(out, requests=12, levels=3, runs=2, trace=str(trace), say=lambda s: None)
    for name in ("plan/manifest.json", "engines/engines.json", "accuracy.json", "edge-profile.json",
                 "cloud-profile.json", "requests.jsonl", "summary.json"):
        assert (out / name).is_file(), name
    _, records = read_run_log(out / "requests.jsonl")
    assert len(records) == 12 and all(r["error"] is None and r["top1"] is not None for r in records)
    assert summary["top1_accuracy"] >= 0.75  # the trained digits model answers correctly
    assert set(REPORT_KEYS) <= set(summary)  # the one run-report schema
    # the simulator's path, fed the recorded observations, makes every decision the edge made
    r = CliRunner().invoke(app, ["replay", str(out / "requests.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    import json

    replayed = json.loads(r.output)
    assert replayed["requests"] == 12 and replayed["decisions_reproduced"] == 1.0, replayed
