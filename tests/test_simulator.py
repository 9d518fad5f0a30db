"""Simulator semantics on hand-computed cases, and the schedule / simulate CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from sched_fixtures import accuracy_table, profiles
from typer.testing import CliRunner

from janus_deploy.cli.schedule_cmds import CliError, register
from janus_deploy.net.traces import Trace, shipped_traces_dir
from janus_deploy.profile.table import load_preset
from janus_deploy.schedule.controller import ControllerConfig
from janus_deploy.sim.simulator import SimConfig, SimulationError, simulate

TRACES = shipped_traces_dir()


@pytest.fixture(scope="module")
def tiny():
    return profiles()


def run(tiny, samples, systems, interval=1.0, controller=None, **cfg):
    ctrl = {"controller": ControllerConfig(**controller)} if controller else {}
    return simulate(Trace(samples, interval), *tiny, SimConfig(systems=systems, **cfg, **ctrl))


# ---------------------------------------------------------------- time-driven
def test_device_only_back_to_back(tiny):
    m = run(tiny, [8.0], ["device-only"], sla_ms=250, requests=4)["device-only"].metrics
    # r = 1 on the edge at s = N+1: 280 ms each; 4 requests back to back in 1.12 s
    assert m["requests"] == 4
    assert m["latency_ms_p50"] == pytest.approx(280.0)
    assert m["throughput_rps"] == pytest.approx(4 / 1.12)
    assert m["violation_ratio"] == 1.0
    assert m["deviation_rate"] == pytest.approx((280 - 250) / 250)
    assert m["choices"] == {"r1@4": 4} and m["mean_alpha"] is None


def test_fixed_fps_skips_to_next_frame_tick(tiny):
    m = run(tiny, [8.0], ["device-only"], requests=4, fps=2.0)["device-only"].metrics
    # starts at 0, 0.5, 1.0, 1.5 s; the last one finishes at 1.78 s
    assert m["throughput_rps"] == pytest.approx(4 / 1.78)


def test_cloud_only_transfer_and_rtt(tiny):
    # 48-byte frame = 384 bit at 800 bit/s = 480 ms, + RTT 20 + cloud tail (r=1, s=0) 38
    res = run(tiny, [0.0008], ["cloud-only"], requests=3, rtt_ms=20.0)["cloud-only"]
    assert res.log.latency_ms == pytest.approx([538.0] * 3)
    assert res.metrics["throughput_rps"] == pytest.approx(3 / 1.614)


def test_transfer_integrates_over_outages(tiny):
    # 1600 bit/s for 0.1 s, then 0.1 s outage, looping: 384 bit = 160 + 160 + 64 →
    # finishes at 0.44 s; latency 440 + 38 = 478 ms
    res = run(tiny, [0.0016, 0.0], ["cloud-only"], interval=0.1, requests=1)["cloud-only"]
    assert res.log.latency_ms == pytest.approx([478.0])


def test_janus_modes_on_constant_link(tiny):
    acc = accuracy_table({("exponential", 0.0): 0.8, ("exponential", 0.5): 0.7,
                          ("exponential", 1.0): 0.6})
    trace = Trace([0.0064], 1.0)
    res = simulate(trace, *tiny, SimConfig(sla_ms=217, systems=["janus-paper", "janus-deploy"],
                                           requests=3), accuracy=acc)
    # paper: Algorithm 1 at 0.0064 Mbit/s picks α = 0.5, s = 0 (predicted 215 with 144 B of
    # tokens); the frame actually sent is 48 B = 384 bit → 60 ms, + cloud 35 = 95 ms
    paper = res["janus-paper"]
    assert paper.metrics["choices"] == {"0.5@0": 3}
    assert paper.log.latency_ms == pytest.approx([95.0] * 3)
    assert paper.metrics["accuracy"] == pytest.approx(0.7)
    # janus-deploy models the 48-byte frame: α = 0 at s = 0 fits (60 + 40 = 100 ms). Its cold
    # start: before the first link sample the request runs on the device, which alone fits the
    # budget (217·0.9 = 195.3 ms) only at α = 1 (195 ms; α = 0.5 takes 255), and a probe follows
    deploy = res["janus-deploy"]
    assert deploy.metrics["choices"] == {"1@4": 1, "0@0": 2}
    assert deploy.log.est_mbps == [0.0, 0.0064, 0.0064]  # the scheduler was given 0, then the probe's
    assert deploy.log.latency_ms == pytest.approx([195.0, 100.0, 100.0])


# ---------------------------------------------------------------- paper mode
def test_paper_mode_outage_waits_for_next_nonzero_sample(tiny):
    m = run(tiny, [0.0008, 0.0, 0.0, 0.0016], ["cloud-only"], paper_mode=True)["cloud-only"].metrics
    # 480+38 = 518; 2·1000 + 384/1600 s (240) + 38 = 2278; 1000 + 240 + 38 = 1278; 240 + 38 = 278
    assert m["requests"] == 4
    assert m["violation_ratio"] == 0.75
    # paper mode has no time axis: throughput is the mean per-request rate
    assert m["throughput_rps"] == pytest.approx((1 / 0.518 + 1 / 2.278 + 1 / 1.278 + 1 / 0.278) / 4)
    assert m["latency_ms_p50"] == pytest.approx((518 + 1278) / 2)


def test_paper_mode_estimator_sees_every_sample(tiny):
    res = run(tiny, [1000.0, 0.0004, 0.0004, 0.0004], ["mixed"], paper_mode=True, sla_ms=300,
              cold_start_mbps=1000.0)["mixed"]
    # requests 0 and 1 estimate 1000 Mbit/s (cold start, then HM(1000)) → cloud (38 ms) beats
    # device (280); request 1 runs on 0.0004 Mbit/s: 48 B take 960 ms. Request 2 estimates
    # HM(1000, 0.0004) ≈ 0.0008 → cloud predicted 480 + 38 = 518 > 280 → device from then on
    assert res.log.split == [0, 0, 4, 4]
    assert res.log.latency_ms == pytest.approx([38 + 0.000384, 960 + 38, 280, 280])


def test_config_errors(tiny):
    trace = Trace([1.0], 1.0)
    with pytest.raises(SimulationError, match="unknown system"):
        simulate(trace, *tiny, SimConfig(systems=["edge-only"]))
    with pytest.raises(SimulationError, match="paper mode"):
        simulate(trace, *tiny, SimConfig(paper_mode=True, fps=2.0))
    with pytest.raises(SimulationError, match="no nonzero"):
        simulate(Trace([0.0], 1.0), *tiny, SimConfig())


# ---------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    register(app)
    return app


PRESETS = ["--profile", "vit_large_patch16_384-jetson-orin-nano",
           "--cloud-profile", "vit_large_patch16_384-v100"]


def invoke(cli, args):
    res = CliRunner().invoke(cli, args)
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # stderr: the request counts up front, progress


def test_cli_schedule_json(cli):
    out = invoke(cli, ["schedule", *PRESETS, "--bandwidth", "1000", "--rtt", "10", "--sla", "300",
                       "--json"])
    # α = 0 cloud only: the 3·384·384 = 442,368-byte frame at 1000 Mbit/s + RTT + V100's 32.3 ms
    assert (out["alpha"], out["split"], out["meets_sla"]) == (0.0, 0, True)
    assert out["predicted_ms"] == pytest.approx(442_368 * 8 / 1e3 / 1000 + 10 + 32.3)
    # outage, paper mode: the smallest α whose device-only latency fits 300 ms
    out = invoke(cli, ["schedule", *PRESETS, "--bandwidth", "0", "--sla", "300", "--mode", "paper",
                       "--json"])
    edge = load_preset("vit_large_patch16_384-jetson-orin-nano")
    first = min(edge.levels[i].alpha for i in edge.levels_of("exponential")
                if edge.total_ms(i) <= 300)
    assert (out["alpha"], out["split"]) == (first, 25)


def test_cli_schedule_rejects_unknown_preset(cli):
    res = CliRunner().invoke(cli, ["schedule", "--profile", "jetson", "--cloud-profile", "v100",
                                   "--bandwidth", "10", "--sla", "300"])
    assert res.exit_code != 0 and "available presets" in str(res.exception)


def test_cli_simulate_json(cli, tmp_path):
    trace = tmp_path / "flat.list"
    trace.write_text("Run 1\n" + ",".join(["36"] * 50) + "\n")
    out = invoke(cli, ["simulate", "--trace", str(trace), *PRESETS, "--sla", "300", "--rtt", "30",
                       "--requests", "300", "--json"])
    sysm = out["systems"]
    assert set(sysm) == {"device-only", "cloud-only", "mixed", "janus-paper", "janus-deploy"}
    # device-only at ToMe r = 23 on the Jetson: 653.3 − 0.0486·23·276 = 344.8 ms
    assert sysm["device-only"]["violation_ratio"] == 1.0
    assert sysm["device-only"]["throughput_rps"] == pytest.approx(1000 / 344.8, rel=1e-3)
    # cloud-only: 442,368 B at 36 Mbit/s = 98.304 ms + 30 + V100 r=23 (32.3 − 0.00255·23·276)
    cloud_ms = 98.304 + 30 + 32.3 - 0.00255 * 23 * 276
    assert sysm["cloud-only"]["latency_ms_p50"] == pytest.approx(cloud_ms, abs=0.01)
    assert all(m["requests"] == 300 for m in sysm.values())


def test_cli_simulate_paper_mode_real_trace(cli, tmp_path):
    out = invoke(cli, ["simulate", "--trace", str(TRACES / "throughput/driving/lte/throughput.list"),
                       "--run", "8", "--paper-mode", *PRESETS, "--sla", "300", "--requests", "300",
                       "--systems", "device-only,janus-paper", "--json",
                       "--plot", str(tmp_path / "fig.png")])
    assert out["systems"]["device-only"]["violation_ratio"] == 1.0
    assert out["systems"]["janus-paper"]["requests"] == 300
    assert all(Path(p).stat().st_size > 0 for p in out["plots"])


def test_cli_simulate_rejects_unknown_system(cli, tmp_path):
    res = CliRunner().invoke(cli, ["simulate", "--trace", str(tmp_path), *PRESETS, "--sla", "300",
                                   "--systems", "edge-only"])
    assert isinstance(res.exception, CliError) and "edge-only" in str(res.exception)


def test_idle_probe_lets_mixed_return_to_the_cloud(tiny):
    # 4.2 s at 0.0004 Mbit/s, then 1000 Mbit/s. Cold start 0.0004 → cloud predicted 960 + 38 ms >
    # device 280 → device (request k runs 0.28·k .. 0.28·(k+1) s). No link sample for more than
    # the probe interval (2 s): after request 7 (done 2.24 s) a probe sees the mean rate over it,
    # 0.0004; the next is due after request 15 (done 4.48 s > 2.24 + 2): it sees 1000. The estimate
    # HM(0.0004, 1000) ≈ 0.0008 is under half that sample, so requests 16 and 17 probe again
    # (1000 each). Request 18 estimates HM(0.0004, 1000 ×3) = 4 / (2500 + 0.003) ≈ 0.0016 Mbit/s:
    # the 48-byte frame takes 384 / 1600 s = 240 ms, + 38 = 278 < 280 → mixed offloads (and
    # stays: the link is fast). Without probes it would stay on the device forever.
    samples = [0.0004] * 42 + [1000.0] * 10
    res = run(tiny, samples, ["mixed"], interval=0.1, requests=24, cold_start_mbps=0.0004)["mixed"]
    assert res.log.split == [4] * 18 + [0] * 6
    assert res.log.est_mbps[18] == pytest.approx(4 / (1 / 0.0004 + 3 / 1000), rel=1e-6)
    stuck = run(tiny, samples, ["mixed"], interval=0.1, requests=24, cold_start_mbps=0.0004,
                controller={"probe_interval_s": None})["mixed"]
    assert stuck.log.split == [4] * 24


def test_rtt_tracker_max_or_median(tiny):
    from janus_deploy.schedule.controller import _RttTracker

    for stat, want in (("max", 90.0), ("median", 20.0)):
        tr = _RttTracker(cold_ms=55.0, window=3, stat=stat)
        assert tr.estimate() == 55.0
        for v in (500.0, 10.0, 20.0, 90.0):  # 500 has left the window of 3
            tr.add(v)
        assert tr.estimate() == want
    with pytest.raises(SimulationError, match="RTT estimate"):
        simulate(Trace([1.0], 1.0), *tiny, SimConfig(controller=ControllerConfig(rtt_estimate="mean")))


def test_cli_simulate_plot_writes_janus_deploys_decision_map(cli, tmp_path):
    """`simulate --plot OUT.png` adds OUT-decisions.png (janus-deploy's decision map) when
    janus-deploy is simulated; its series are the simulated requests, level and bytes kept."""
    out = invoke(cli, ["simulate", "--trace", "uplink-5g-lte/throughput/driving/lte", "--run", "8", *PRESETS,
                       "--sla", "300", "--requests", "200", "--rtt", "20", "--systems", "cloud-only,janus-deploy",
                       "--json", "--plot", str(tmp_path / "fig.png")])
    decisions = tmp_path / "fig-decisions.png"
    assert str(decisions) in out["plots"] and decisions.stat().st_size > 10_000
    # cloud-only sends the uint8 384x384 frame on every request: the mean bytes say so
    assert out["systems"]["cloud-only"]["mean_bytes"] == 3 * 384 * 384


# ---------------------------------------------------------------- the cold-start rule (issue 20)
def _cold_starts(monkeypatch, tiny, trace, config):
    import janus_deploy.sim.simulator as sim

    seen = []

    class Recording(sim.Controller):
        def __init__(self, deploy, config, *a, **k):
            super().__init__(deploy, config, *a, **k)
            seen.append(self.config.cold_start_mbps)

    monkeypatch.setattr(sim, "Controller", Recording)
    simulate(trace, *tiny, config, engine="python")  # the Python controller it records (test_sim_fast: the same in C)
    return seen


def test_simulator_keeps_the_controllers_cold_start(monkeypatch, tiny):
    # the bug: SimConfig's default (None = trace mean) overrode the controller's given cold start,
    # so `testbed --cold-start-mbps 1` judged a kernel run started at 1 against a simulation at 40
    flat = Trace([40.0] * 20, 1.0)
    cfg = SimConfig(systems=["janus-deploy"], requests=3, controller=ControllerConfig(cold_start_mbps=1.0))
    assert _cold_starts(monkeypatch, tiny, flat, cfg) == [1.0]


def test_simulator_cold_start_defaults_and_override(monkeypatch, tiny):
    flat = Trace([40.0, 20.0], 1.0)
    assert _cold_starts(monkeypatch, tiny, flat, SimConfig(systems=["janus-deploy"], requests=3)) == [30.0]
    over = SimConfig(systems=["janus-deploy"], requests=3, cold_start_mbps=5.0,
                     controller=ControllerConfig(cold_start_mbps=1.0))
    assert _cold_starts(monkeypatch, tiny, flat, over) == [5.0]
