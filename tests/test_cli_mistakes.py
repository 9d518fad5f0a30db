"""A newcomer's mistakes, each answered by one clear line (rc 2) naming the problem and the fix,
with no traceback and no folder left behind (issue 15). One row per mistake: the command line
and a piece of the message it must print."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from janus_deploy.cli.main import app
from janus_deploy.model import ModelSpec
from janus_deploy.plan import ExportConfig, export_plan

TINY = ["--model", "vit_tiny_patch16_224", "--set", "depth=2", "--set", "img_size=32"]
PRESETS = ["--profile", "vit_large_patch16_384-jetson-orin-nano", "--cloud-profile", "vit_large_patch16_384-v100"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny plan (2 blocks, 32 px) with linear profiles, and a few files to make mistakes with."""
    root = tmp_path_factory.mktemp("mistakes")
    manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224", {"depth": 2, "img_size": 32}), root / "plan",
                              ExportConfig(k=1, levels=2, baseline_r=1))
    for name, lin in (("edge.json", "1,0.1"), ("cloud.json", "0.1,0.01")):
        res = CliRunner().invoke(app, ["profile", str(root / "plan"), "--out", str(root / name), "--device-name", name,
                                       "--from-linear", lin])
        assert res.exit_code == 0, res.output
    (root / "a-file.txt").write_text("not a folder\n")
    (root / "folder").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("my own file\n")
    (root / "ping" / "lte").mkdir(parents=True)
    (root / "ping" / "lte" / "ping.list").write_text("Run 1\n" + ",".join(["40"] * 20) + "\n")
    (root / "flat.list").write_text("Run 1\n" + ",".join(["20"] * 20) + "\n")
    return root


@pytest.fixture(scope="module")
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


# (id, command line with {w} = the work folder, a piece of the one error line)
MISTAKES = [
    # export
    ("export-out-is-a-file", ["export", *TINY, "--out", "{w}/a-file.txt"], "is an existing file; give a new folder path"),
    ("export-out-under-a-file", ["export", *TINY, "--out", "{w}/a-file.txt/plan"], "is inside"),
    ("export-levels-0", ["export", *TINY, "--levels", "0", "--out", "{w}/new"], "levels must be >= 1"),
    ("export-step-0", ["export", *TINY, "--alpha-step", "0", "--out", "{w}/new"], "step must be > 0"),
    ("export-levels-and-step", ["export", *TINY, "--levels", "3", "--alpha-step", "0.1", "--out", "{w}/new"],
     "not both"),
    ("export-k-0", ["export", *TINY, "--k", "0", "--out", "{w}/new"], "k must be an integer >= 1"),
    ("export-policy", ["export", *TINY, "--policy", "cubic", "--out", "{w}/new"], "unknown policy 'cubic'; choose one of"),
    ("export-model-typo", ["export", "--model", "vit_tiny_patch16_22", "--out", "{w}/new"],
     "did you mean vit_tiny_patch16_224?"),
    ("export-not-a-vit", ["export", "--model", "resnet50", "--out", "{w}/new"], "is not supported"),
    ("export-img-size", ["export", "--model", "vit_tiny_patch16_224", "--set", "depth=2", "--img-size", "33",
                         "--out", "{w}/new"], "not a multiple of the patch size 16"),
    ("export-baseline-r", ["export", *TINY, "--baseline-r", "99", "--out", "{w}/new"], "pick a smaller baseline r"),
    ("export-checkpoint", ["export", *TINY, "--checkpoint", "{w}/missing.safetensors", "--out", "{w}/new"],
     "does not exist"),
    ("export-bad-set", ["export", *TINY, "--set", "depth", "--out", "{w}/new"], "must look like key=value"),
    ("export-another-model", ["export", "--model", "vit_tiny_patch16_224", "--set", "depth=3", "--set", "img_size=32",
                              "--out", "{w}/plan"], "holds the plan of another model"),
    ("export-foreign-folder", ["export", *TINY, "--out", "{w}/notes"], "is not empty and holds no plan"),
    # build-engines, verify, inspect, profile, calibrate
    ("engines-out-is-a-file", ["build-engines", "{w}/plan", "--out", "{w}/a-file.txt"], "is an existing file"),
    ("engines-no-plan", ["build-engines", "{w}/folder", "--out", "{w}/eng"], "is not a plan (run `janus-deploy export`)"),
    ("engines-int8-no-calibration", ["build-engines", "{w}/plan", "--out", "{w}/eng", "--precision", "int8"],
     "give --calibration DIR"),
    ("engines-calibration-fp32", ["build-engines", "{w}/plan", "--out", "{w}/eng", "--calibration", "{w}/folder"],
     "is for --precision int8 only"),
    ("engines-backend", ["build-engines", "{w}/plan", "--out", "{w}/eng", "--backend", "tensorflow"],
     "unknown backend 'tensorflow'"),
    ("verify-engines-missing", ["verify", "{w}/plan", "--engines", "{w}/folder"], "run `janus-deploy build-engines`"),
    ("inspect-no-plan", ["inspect", "{w}/missing"], "is not a plan"),
    ("profile-out-is-a-folder", ["profile", "{w}/plan", "--out", "{w}/folder", "--device-name", "d", "--from-linear",
                                 "1,2"], "is a folder; give a file path"),
    ("profile-no-engines", ["profile", "{w}/plan", "--out", "{w}/p.json", "--device-name", "d"],
     "give --engines ENGINE_DIR"),
    ("profile-linear", ["profile", "{w}/plan", "--out", "{w}/p.json", "--device-name", "d", "--from-linear", "1"],
     "expected the linear model as 'a,b'"),
    ("calibrate-out-is-a-folder", ["calibrate", "{w}/plan", "--out", "{w}/folder", "--task", "digits"],
     "is a folder; give a file path"),
    ("calibrate-no-images", ["calibrate", "{w}/plan", "--out", "{w}/a.json"], "give exactly one of --images DIR"),
    ("calibrate-wrong-model", ["calibrate", "{w}/plan", "--out", "{w}/a.json", "--task", "digits"],
     "Use --images DIR for other models"),
    ("calibrate-engines-missing", ["calibrate", "{w}/plan", "--out", "{w}/a.json", "--task", "digits", "--engines",
                                   "{w}/folder"], "holds no engines; run `janus-deploy build-engines`"),
    ("calibrate-images-missing", ["calibrate", "{w}/plan", "--out", "{w}/a.json", "--images", "{w}/missing"],
     "does not exist"),
    # schedule, simulate, replay
    ("schedule-codec", ["schedule", "--profile", "{w}/edge.json", "--cloud-profile", "{w}/cloud.json",
                        "--bandwidth", "10", "--sla", "100", "--codec", "jpeg"], "codec 'jpeg' is not in the profile"),
    ("schedule-profile-missing", ["schedule", "--profile", "{w}/missing.json", "--cloud-profile", "{w}/cloud.json",
                                  "--bandwidth", "10", "--sla", "100"], "does not exist (presets:"),
    ("schedule-profile-mixup", ["schedule", "--profile", "{w}/edge.json", "--cloud-profile",
                                "vit_large_patch16_384-v100", "--bandwidth", "10", "--sla", "100"],
     "profile the same plan on both"),
    ("schedule-accuracy-is-a-profile", ["schedule", "--profile", "{w}/edge.json", "--cloud-profile", "{w}/cloud.json",
                                        "--bandwidth", "10", "--sla", "100", "--accuracy", "{w}/edge.json"],
     "expected 'janus-deploy/accuracy'"),
    ("simulate-trace-missing", ["simulate", "--trace", "{w}/missing", *PRESETS, "--sla", "300"],
     "no trace file matches"),
    ("simulate-trace-is-ping", ["simulate", "--trace", "{w}/ping", *PRESETS, "--sla", "300"], "pass it as --ping"),
    ("simulate-requests-0", ["simulate", "--trace", "{w}/flat.list", *PRESETS, "--sla", "300", "--requests", "0"],
     "--requests must be >= 1"),
    ("simulate-system", ["simulate", "--trace", "{w}/flat.list", *PRESETS, "--sla", "300", "--systems", "edge-only"],
     "unknown system 'edge-only'"),
    ("simulate-window", ["simulate", "--trace", "{w}/flat.list", *PRESETS, "--sla", "300", "--trace-start", "60"],
     "is outside trace"),
    ("simulate-plot-is-a-folder", ["simulate", "--trace", "{w}/flat.list", *PRESETS, "--sla", "300", "--plot",
                                   "{w}/folder"], "is a folder; give a file path"),
    ("replay-missing", ["replay", "{w}/missing.jsonl"], "does not exist"),
    # serve, run
    ("serve-busy-port", ["serve", "{w}/plan", "--engines", "{w}/eng", "--port", "{port}"], "is already in use"),
    ("serve-busy-grpc-port", ["serve", "{w}/plan", "--engines", "{w}/eng", "--engine", "triton", "--port", "{free}",
                              "--grpc-port", "{port}"], "choose another --grpc-port"),
    ("serve-not-a-port", ["serve", "{w}/plan", "--engines", "{w}/eng", "--port", "70000"], "is not a TCP port"),
    ("serve-triton-isolation", ["serve", "{w}/plan", "--engines", "{w}/eng", "--engine", "triton", "--port", "{free}",
                                "--triton-isolation", "maybe"], "unknown --triton-isolation 'maybe'; choose auto, require, off"),
    ("run-log-is-a-folder", ["run", "{w}/plan", "--engines", "{w}/eng", "--profile", "{w}/edge.json",
                             "--cloud-profile", "{w}/cloud.json", "--server", "http://127.0.0.1:9", "--sla", "100",
                             "--synthetic", "1", "--log", "{w}/folder"], "is a folder; give a file path"),
    ("run-two-sources", ["run", "{w}/plan", "--engines", "{w}/eng", "--profile", "{w}/edge.json",
                         "--cloud-profile", "{w}/cloud.json", "--server", "http://127.0.0.1:9", "--sla", "100"],
     "give exactly one of --images DIR, --video FILE or --synthetic N"),
]


# Values checked where they enter (issue 21 item 8): the shared option declarations
# (janus_deploy/cli/options.py) refuse non-finite and out-of-range numbers before any work. These
# are usage errors, so they go through the real entry point (main), which prints them in one line.
VALUE_MISTAKES = [
    ("simulate-sla-negative", ["simulate", "--trace", "{w}/flat.list", *PRESETS, "--sla", "-5"], "'--sla': must be > 0"),
    ("schedule-sla-0", ["schedule", "--profile", "{w}/edge.json", "--cloud-profile", "{w}/cloud.json",
                        "--bandwidth", "10", "--sla", "0"], "'--sla': must be > 0"),
    ("serve-max-body-nan", ["serve", "{w}/plan", "--engines", "{w}/folder", "--max-body-mb", "nan"],
     "'--max-body-mb': must be a finite number, got nan"),
    ("serve-body-timeout-nan", ["serve", "{w}/plan", "--engines", "{w}/folder", "--body-timeout", "nan"],
     "'--body-timeout': must be a finite number"),
    ("serve-max-json-0", ["serve", "{w}/plan", "--engines", "{w}/folder", "--max-json-mb", "0"], "must be > 0"),
    ("run-edge-slowdown-1e9", ["run", "{w}/plan", "--engines", "{w}/folder", "--profile", "{w}/edge.json",
                               "--cloud-profile", "{w}/cloud.json", "--server", "http://127.0.0.1:9", "--sla", "100",
                               "--synthetic", "1", "--edge-slowdown", "1e9"], "'--edge-slowdown': must be <= 1000"),
    ("run-probe-interval-neg", ["run", "{w}/plan", "--engines", "{w}/folder", "--profile", "{w}/edge.json",
                                "--cloud-profile", "{w}/cloud.json", "--server", "http://127.0.0.1:9", "--sla", "100",
                                "--synthetic", "1", "--probe-interval", "-1"], "'--probe-interval': must be >= 0"),
    ("run-probe-interval-nan", ["run", "{w}/plan", "--engines", "{w}/folder", "--profile", "{w}/edge.json",
                                "--cloud-profile", "{w}/cloud.json", "--server", "http://127.0.0.1:9", "--sla", "100",
                                "--synthetic", "1", "--probe-interval", "nan"], "'--probe-interval': must be a finite"),
    ("run-threads-neg", ["run", "{w}/plan", "--engines", "{w}/folder", "--profile", "{w}/edge.json",
                         "--cloud-profile", "{w}/cloud.json", "--server", "http://127.0.0.1:9", "--sla", "100",
                         "--synthetic", "1", "--threads", "-1"], "'--threads'"),
    ("run-sla-inf", ["run", "{w}/plan", "--engines", "{w}/folder", "--profile", "{w}/edge.json",
                     "--cloud-profile", "{w}/cloud.json", "--server", "http://127.0.0.1:9", "--sla", "inf",
                     "--synthetic", "1"], "'--sla': must be a finite number"),
    ("run-estimator-choice", ["run", "{w}/plan", "--engines", "{w}/folder", "--profile", "{w}/edge.json",
                              "--cloud-profile", "{w}/cloud.json", "--server", "http://127.0.0.1:9", "--sla", "100",
                              "--synthetic", "1", "--estimator", "kalman"], "'kalman' is not one of 'harmonic'"),
    ("testbed-margin-nan", ["testbed", "{w}/plan", "--engines", "{w}/folder", "--profile", "{w}/edge.json",
                            "--cloud-profile", "{w}/cloud.json", "--sla", "100", "--margin", "nan"],
     "'--margin': must be a finite number"),
    ("simulate-sample-interval-0", ["simulate", "--profile", "{w}/edge.json", "--cloud-profile", "{w}/cloud.json",
                                    "--sla", "100", "--sample-interval", "0"], "'--sample-interval': must be > 0"),
    ("profile-edge-slowdown-inf", ["profile", "{w}/plan", "--out", "{w}/p.json", "--engines", "{w}/folder",
                                   "--edge-slowdown", "inf"], "'--edge-slowdown': must be a finite number"),
]


@pytest.mark.parametrize("args, message", [m[1:] for m in VALUE_MISTAKES], ids=[m[0] for m in VALUE_MISTAKES])
def test_bad_value_gets_one_usage_line(work, capsys, args, message):
    from janus_deploy.cli.main import main

    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    with pytest.raises(SystemExit) as info:
        main([a.format(w=work) for a in args])
    assert info.value.code == 2
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: Invalid value for ") and message in lines[0], lines[0]
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before


@pytest.mark.parametrize("args, message", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistake_gets_one_clear_line(work, busy_port, args, message):
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    with socket.socket() as s:  # a port nothing listens on (free again once closed)
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    argv = [a.format(w=work, port=busy_port, free=free) for a in args]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output  # one line: no traceback, no progress bar, no banner first
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before  # nothing created (no empty folders)


def test_model_suggestions_are_supported_names():
    from janus_deploy.model.load import ModelError, SUPPORTED_PREFIXES, create_model

    with pytest.raises(ModelError) as info:
        create_model("vit_tiny_patch16_22")
    names = str(info.value).split("did you mean ")[1].replace("(other close names:", ",").replace(")", "")
    suggested = [n.strip(" ?,") for n in names.split(",") if n.strip(" ?,")]
    assert suggested[0] == "vit_tiny_patch16_224"
    assert all(n.startswith(SUPPORTED_PREFIXES) for n in suggested), suggested


def test_levels_0_fails_before_any_model_is_built(tmp_path, monkeypatch):
    import janus_deploy.model.load as load

    def no_model(*a, **k):
        raise AssertionError("a model was built before the arguments were checked")

    monkeypatch.setattr(load, "create_from_spec", no_model)
    monkeypatch.setattr(load, "create_model", no_model)
    res = CliRunner().invoke(app, ["export", "--model", "vit_tiny_patch16_224", "--levels", "0", "--out",
                                   str(tmp_path / "p")])
    assert res.exit_code == 2 and "levels must be >= 1" in res.output
    assert not (tmp_path / "p").exists()


def test_export_force_replaces_another_model_and_json(work, tmp_path):
    out = tmp_path / "p"
    res = CliRunner().invoke(app, ["export", *TINY, "--k", "1", "--levels", "2", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout)
    assert first["levels"] == 2 and first["graphs_exported"] == 2 * 3 + 2 and first["plan"] == str(out)
    other = ["export", "--model", "vit_tiny_patch16_224", "--set", "depth=3", "--set", "img_size=32", "--k", "1",
             "--levels", "2", "--out", str(out)]
    res = CliRunner().invoke(app, other)
    assert res.exit_code == 2 and "another model (vit_tiny_patch16_224 depth=2 img_size=32)" in res.output
    res = CliRunner().invoke(app, [*other, "--force", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["plan_hash"] != first["plan_hash"]
    # the same model again: no refusal, every graph reused
    res = CliRunner().invoke(app, [*other, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["graphs_reused"] == 2 * 4 + 3


def test_export_failure_after_mkdir_leaves_no_empty_folder(tmp_path, monkeypatch):
    import janus_deploy.plan.export as ex

    def broken(*a, **k):
        raise ex.PlanError("simulated failure while exporting the first graph")

    monkeypatch.setattr(ex, "export_graph", broken)
    out = tmp_path / "a" / "b" / "plan"
    res = CliRunner().invoke(app, ["export", *TINY, "--k", "1", "--levels", "2", "--out", str(out)])
    assert res.exit_code == 2 and "simulated failure" in res.output
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("argv, message", [
    (["schedule", "--profile", "x"], "Missing option '--cloud-profile'. (see `janus-deploy schedule -h`)"),
    (["simulate", "--sla", "abc"], "Invalid value for '--sla'"),
    (["export", "--bogus"], "No such option: --bogus"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_usage_mistakes_are_one_line_too(capsys, argv, message):
    """The installed entry point (main) prints click's usage errors as one line, not a box."""
    from janus_deploy.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_entry_point_exit_codes(capsys):
    from janus_deploy.cli.main import main

    for argv, code in ((["--version"], 0), (["inspect", "/nonexistent/plan"], 2)):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == code, argv
