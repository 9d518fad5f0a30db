"""A testbed run's configuration from files (testbed/setup.py), without root: what the CLI
assembles is the library's testbed_config, and its mistakes are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import janus_deploy.testbed as testbed_pkg
from janus_deploy import JanusError
from janus_deploy.cli.main import app
from janus_deploy.net.traces import MBPS, MS
from janus_deploy.schedule.controller import ControllerConfig
from janus_deploy.testbed import TestbedConfig, TestbedError, TraceWindow
from janus_deploy.testbed import setup as tb  # tb.testbed_config: imported bare, pytest would collect it as a test


def test_trace_windows_from_files(short_traces):
    bw, ping = short_traces
    w = TraceWindow([str(bw)], interval_s=0.5, start_s=1.0)
    got = w.throughput()
    assert got.unit == MBPS and got.interval_s == 0.5 and got.samples == [0.0, 30.0, 8.0, 20.0, 2.0]
    rtt = TraceWindow([str(ping)], interval_s=0.5, start_s=1.0).rtt()
    assert rtt.unit == MS and rtt.samples == [60.0, 25.0, 28.0, 25.0, 30.0]
    with pytest.raises(TestbedError, match="unknown trace format 'csv'"):
        TraceWindow([str(bw)], fmt="csv")
    with pytest.raises(TestbedError, match="--sample-interval must be > 0"):
        TraceWindow([str(bw)], interval_s=0.0)


def test_testbed_config_loads_and_checks(small, short_traces, tmp_path):
    plan, engines, edge, cloud = small
    bw, ping = short_traces
    cfg = tb.testbed_config(plan, engines, edge_profile=edge, cloud_profile=cloud, sla_ms=200, requests=5,
                         trace=TraceWindow([str(bw)], interval_s=0.5), ping=TraceWindow([str(ping)], interval_s=0.5),
                         codec="fp16", fps=10.0)
    assert isinstance(cfg, TestbedConfig) and cfg.trace.samples == [20.0, 2.0, 0.0, 30.0, 8.0]
    assert cfg.ping is not None and cfg.ping.unit == MS and cfg.codec == "fp16" and cfg.fps == 10.0 and cfg.frames is None

    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((40, 50, 3), 7, np.uint8)).save(folder / "a.png")
    cfg = tb.testbed_config(plan, engines, edge_profile=edge, cloud_profile=cloud, sla_ms=200, requests=5,
                         trace=TraceWindow([str(bw)], interval_s=0.5), images=folder)
    assert cfg.frames is not None and len(cfg.frames) == 1 and cfg.frames[0][1].shape == (32, 32, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JanusError, match="no images .* found under"):  # one line (the CLI prints it, rc 2)
        tb.testbed_config(plan, engines, edge_profile=edge, cloud_profile=cloud, sla_ms=200, requests=5,
                       trace=TraceWindow([str(bw)], interval_s=0.5), images=empty)
    with pytest.raises(TestbedError, match="--fps must be > 0"):  # the config's own checks run too
        tb.testbed_config(plan, engines, edge_profile=edge, cloud_profile=cloud, sla_ms=200, requests=5,
                       trace=TraceWindow([str(bw)], interval_s=0.5), fps=-1.0)


def test_the_cli_runs_what_the_library_assembles(small, short_traces, monkeypatch):
    plan, engines, edge, cloud = small
    bw, ping = short_traces
    seen: list[TestbedConfig] = []
    monkeypatch.setattr(testbed_pkg, "check_privileges", lambda: None)

    def fake_run(cfg, **kw):
        seen.append(cfg)
        raise KeyboardInterrupt  # stop before anything would need root; the CLI says so, rc 130

    monkeypatch.setattr(testbed_pkg, "run_testbed", fake_run)
    r = CliRunner().invoke(app, ["testbed", str(plan), "--engines", str(engines), "--profile", str(edge),
                                 "--cloud-profile", str(cloud), "--trace", str(bw), "--ping", str(ping), "--sla", "200",
                                 "--requests", "5", "--sample-interval", "0.5", "--trace-start", "1", "--margin", "0.1",
                                 "--probe-interval", "0", "--codec", "fp16", "--json"])
    assert r.exit_code == 130 and "interrupted" in r.output, r.output
    want = tb.testbed_config(plan, engines, edge_profile=str(edge), cloud_profile=str(cloud), sla_ms=200.0, requests=5,
                          trace=TraceWindow([str(bw)], interval_s=0.5, start_s=1.0),
                          ping=TraceWindow([str(ping)], interval_s=0.5, start_s=1.0), codec="fp16",
                          controller=ControllerConfig().with_(margin=0.1, probe_interval_s=None), threads=1)
    assert len(seen) == 1
    got = seen[0]
    assert Path(got.plan) == want.plan and got.trace.samples == want.trace.samples and got.ping.samples == want.ping.samples
    assert got.controller == want.controller and (got.codec, got.sla_ms, got.requests) == ("fp16", 200.0, 5)
