"""What the CLI prints for a person: request counts and progress before a long simulation, tables
that keep their numbers at 60 and 80 columns, a verdict line, legends, and --json everywhere a
command prints a result (issue 15)."""

from __future__ import annotations

import inspect
import json

import pytest
from typer.testing import CliRunner

import janus_deploy.cli.common as common
import janus_deploy.sim.simulator as simulator
from janus_deploy.cli.main import app
from janus_deploy.model import ModelSpec
from janus_deploy.net.traces import Trace
from janus_deploy.plan import ExportConfig, export_plan
from janus_deploy.profile.table import load_preset
from janus_deploy.sim.simulator import SimConfig, estimate_requests, long_run_warning, simulate

PRESETS = ["--profile", "vit_large_patch16_384-jetson-orin-nano", "--cloud-profile", "vit_large_patch16_384-v100"]
NO_RESULT = {"serve"}  # runs until stopped; prints no result


def test_every_command_that_prints_a_result_has_json():
    missing = []
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__
        decls = [getattr(p.default, "param_decls", None) or () for p in inspect.signature(cmd.callback).parameters.values()]
        if name not in NO_RESULT and not any("--json" in d for d in decls):
            missing.append(name)
    assert not missing, f"commands without --json: {missing}"


@pytest.fixture()
def flat_trace(tmp_path):
    trace = tmp_path / "flat.list"
    trace.write_text("Run 1\n" + ",".join(["36"] * 50) + "\n")
    return trace


def test_simulate_says_request_counts_up_front_and_shows_progress_off_a_terminal(flat_trace, monkeypatch):
    monkeypatch.setattr(common, "PLAIN_PROGRESS_INTERVAL_S", 0.0)  # every progress call prints its line
    res = CliRunner().invoke(app, ["simulate", "--trace", str(flat_trace), *PRESETS, "--sla", "300", "--rtt", "30",
                                   "--systems", "device-only,janus-deploy", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["systems"]
    err = res.stderr
    head = err.index("simulating 2 systems over")
    # device-only takes 344.8 ms per request on the Jetson preset: its count is known in advance
    assert out["device-only"]["requests"] == 146 and "device-only   146 requests" in err[head:]
    assert "janus-deploy  about " in err[head:]
    assert "device-only: 146/146 (100 %)" in err  # the progress line, after the counts
    assert err.index("device-only: 146/146") > head


def test_request_estimates_bracket_the_real_counts():
    edge, cloud = load_preset("vit_large_patch16_384-jetson-orin-nano"), load_preset("vit_large_patch16_384-v100")
    trace = Trace([36.0] * 30 + [3.0] * 30 + [60.0] * 30, 1.0)
    cfg = SimConfig(sla_ms=300, rtt_ms=30)
    est = estimate_requests(trace, edge, cloud, cfg)
    res = simulate(trace, edge, cloud, cfg)
    for system, r in res.items():
        e = est[system]
        assert e.low <= r.metrics["requests"] <= e.high, (system, e, r.metrics["requests"])
    assert est["device-only"].exact
    fixed = estimate_requests(trace, edge, cloud, SimConfig(sla_ms=300, requests=77))
    assert all(e.low == e.high == 77 for e in fixed.values())


def test_long_run_warning_says_how_to_shorten_it(flat_trace, monkeypatch):
    edge, cloud = load_preset("vit_large_patch16_384-jetson-orin-nano"), load_preset("vit_large_patch16_384-v100")
    long = Trace([1000.0] * 400_000, 1.0)  # 4.6 days of a fast link
    msg = long_run_warning(estimate_requests(long, edge, cloud, SimConfig(sla_ms=300)))
    assert msg is not None and "million requests" in msg and "--requests N" in msg and "--trace-seconds" in msg
    assert long_run_warning(estimate_requests(long.window(0, 60), edge, cloud, SimConfig(sla_ms=300))) is None
    monkeypatch.setattr(simulator, "LONG_RUN_REQUESTS", 100)
    res = CliRunner().invoke(app, ["simulate", "--trace", str(flat_trace), *PRESETS, "--sla", "300",
                                   "--systems", "device-only", "--json", "--engine", "python"])
    assert res.exit_code == 0 and "warning: one pass of device-only may be up to" in res.stderr
    assert "engine: python" in res.stderr
    # the fast engine (the default) runs a million requests a second: its threshold is FAST_LONG_RUN_REQUESTS
    res = CliRunner().invoke(app, ["simulate", "--trace", str(flat_trace), *PRESETS, "--sla", "300",
                                   "--systems", "device-only", "--json"])
    assert res.exit_code == 0 and "warning:" not in res.stderr and "engine: fast" in res.stderr
    monkeypatch.setattr(simulator, "FAST_LONG_RUN_REQUESTS", 100)
    res = CliRunner().invoke(app, ["simulate", "--trace", str(flat_trace), *PRESETS, "--sla", "300",
                                   "--systems", "device-only", "--json"])
    assert "warning: one pass of device-only may be up to" in res.stderr
    res = CliRunner().invoke(app, ["simulate", "--trace", str(flat_trace), *PRESETS, "--sla", "300", "--engine", "c"])
    assert res.exit_code == 2 and "unknown engine 'c'; choose one of fast, python" in res.output


def test_trace_window(flat_trace):
    t = Trace([1.0, 2.0, 3.0, 4.0], 0.5, "t")
    w = t.window(0.5, 1.0)
    assert w.samples == [2.0, 3.0] and w.name == "t [0.5-1.5 s]"
    assert t.window(1.2).samples == [3.0, 4.0]
    res = CliRunner().invoke(app, ["simulate", "--trace", str(flat_trace), *PRESETS, "--sla", "300",
                                   "--trace-seconds", "10", "--systems", "device-only", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["samples"] == 10 and out["systems"]["device-only"]["requests"] == 30  # ceil(10 s / 344.8 ms)


@pytest.mark.parametrize("columns", ["60", "80"])
def test_simulate_table_keeps_its_numbers_and_explains_them(flat_trace, columns):
    res = CliRunner().invoke(app, ["simulate", "--trace", str(flat_trace), *PRESETS, "--sla", "300", "--rtt", "30",
                                   "--requests", "200"], env={"COLUMNS": columns})
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= int(columns)
    for word in ("overshoot", "over SLA", "req/s", "mixed =", "level@split"):
        assert word in res.stdout.replace("\n", " "), word
    assert "r23@25 (100 %)" in res.stdout  # device-only's configuration, in the one label format


@pytest.fixture(scope="module")
def tiny_plan_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "plan"
    export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 3, "img_size": 32}), out, ExportConfig(k=1, levels=3,
                                                                                                baseline_r=1))
    return out


@pytest.mark.parametrize("columns", ["60", "80"])
def test_verify_and_inspect_keep_their_numbers_with_a_verdict(tiny_plan_dir, columns):
    res = CliRunner().invoke(app, ["verify", str(tiny_plan_dir), "--num-images", "1"], env={"COLUMNS": columns})
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout
    verdicts = [line for line in res.stdout.splitlines() if line.startswith("verdict:")]
    assert verdicts == ["verdict: pass: all 8 level checks (2 graph families x 4 levels) within tolerance"]
    assert "r1 " in res.stdout and "e-0" in res.stdout  # level labels and whole max|Δ| numbers (1.2e-07)
    res = CliRunner().invoke(app, ["inspect", str(tiny_plan_dir)], env={"COLUMNS": columns})
    assert res.exit_code == 0 and "…" not in res.stdout and "s=4" in res.stdout


def test_json_of_build_engines_and_linear_profile(tiny_plan_dir, tmp_path):
    res = CliRunner().invoke(app, ["build-engines", str(tiny_plan_dir), "--out", str(tmp_path / "eng"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["backend"] == "ort" and data["engines"] == 4 * 3 and data["precision"] == "fp32"
    res = CliRunner().invoke(app, ["profile", str(tiny_plan_dir), "--out", str(tmp_path / "p.json"), "--device-name",
                                   "e", "--from-linear", "0.5,0.01", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["linear_model"] == {"a_ms": 0.5, "b_ms_per_token": 0.01}
