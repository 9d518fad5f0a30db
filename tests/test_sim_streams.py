"""Camera streams in the simulator (sim/streams.py over the pipeline model), on hand-computed cases.

The tiny plan (tests/sched_fixtures.py), fp16, no accuracy table (α = 0 preferred): at 0.02 Mbit/s
the 48-byte frame takes 48·8/0.02 µs = 19.2 ms on the uplink, so cloud-only α = 0 (s0) is
19.2 + 40 ms tail = 59.2 ms; every token split sends 90 B (36 ms) after ≥ 100 ms on the edge.
"""

from __future__ import annotations

import json

import pytest
from sched_fixtures import profile_dict, profiles
from typer.testing import CliRunner

from janus_deploy.net.traces import Trace
from janus_deploy.sim.simulator import SimConfig, SimulationError, simulate


@pytest.fixture(scope="module")
def tiny():
    return profiles()


def sim(tiny, samples, **cfg):
    cfg.setdefault("systems", ["janus-deploy"])
    return simulate(Trace(samples, 1.0), *tiny, SimConfig(**cfg))["janus-deploy"].metrics


def test_pipelined_overlaps_what_serial_must_drop(tiny):
    # 2 streams x 20 fps, started 25 ms apart: a frame every 25 ms, each 19.2 ms of uplink + 40 ms cloud
    pipe = sim(tiny, [0.02] * 20, sla_ms=100, streams=2, fps=20)
    assert (pipe["frames"], pipe["answered"], pipe["dropped"]) == (800, 800, 0)
    assert pipe["latency_ms_p50"] == pytest.approx(59.2) and pipe["violation_ratio"] == 0.0
    # serial: a frame is answered after 59.2 ms, so the next two (25, 50 ms later) arrive while it is busy
    ser = sim(tiny, [0.02] * 20, sla_ms=100, streams=2, fps=20, serial=True)
    assert (ser["answered"], ser["dropped"], ser["drop_reasons"]) == (267, 533, {"busy": 533})
    assert pipe["goodput_fps"] / ser["goodput_fps"] == pytest.approx(3.0, rel=0.01)
    assert set(pipe["streams"]) == {"stream0", "stream1"} and pipe["streams"]["stream0"]["frames"] == 400


def test_serial_single_stream_is_the_fps_loop_with_its_skips_reported(tiny):
    old = simulate(Trace([0.02, 0.05, 0.01] * 4, 1.0), *tiny,
                   SimConfig(systems=["janus-deploy"], sla_ms=300, fps=30))["janus-deploy"]
    new = simulate(Trace([0.02, 0.05, 0.01] * 4, 1.0), *tiny,
                   SimConfig(systems=["janus-deploy"], sla_ms=300, fps=30, streams=1, serial=True))["janus-deploy"]
    n = len(new.log)  # the old loop may start one more request at a tick past the trace's end
    assert len(old.log) - n in (0, 1) and n > 10
    assert new.log.labels == old.log.labels[:n] and new.log.latency_ms == pytest.approx(old.log.latency_ms[:n])
    assert new.log.start_s == pytest.approx(old.log.start_s[:n])
    # the old loop now reports the ticks it skipped; the serial pipeline drops the same frames (plus
    # the ones that arrive during the last request, which the old loop never counted)
    assert old.metrics["dropped"] == old.log.skipped > 0
    assert old.metrics["frames"] == old.metrics["requests"] + old.log.skipped
    assert 0 <= new.metrics["dropped"] - old.metrics["dropped"] <= 30 * 0.4


def test_a_saturated_uplink_pushes_decisions_off_it(tiny):
    # at 0.005 Mbit/s a frame takes 76.8 ms of uplink: 2 streams x 10 fps want 1.5 s of it per second.
    # Behind two queued frames, s0 no longer fits 260 ms; α = 1 device-only (195 ms) does
    m = sim(tiny, [0.005] * 20, sla_ms=260, streams=2, fps=10, drop="stale")
    assert m["answered"] + m["dropped"] == m["frames"] == 400
    device = sum(v for k, v in m["choices"].items() if k.endswith("@4"))
    cloud = sum(v for k, v in m["choices"].items() if k.endswith("@0"))
    assert device > 50 and cloud > 100  # the edge and the uplink both work
    assert m["violation_ratio"] == 0.0


def test_none_answers_every_frame_stale_drops_the_hopeless(tiny):
    none = sim(tiny, [0.02] * 5, sla_ms=100, streams=4, fps=20, drop="none")
    stale = sim(tiny, [0.02] * 5, sla_ms=100, streams=4, fps=20, drop="stale")
    assert none["dropped"] == 0 and none["answered"] == none["frames"] == 400
    assert stale["dropped"] > 0 and stale["answered"] + stale["dropped"] == 400
    assert stale["violation_ratio"] < none["violation_ratio"]
    assert stale["goodput_fps"] >= none["goodput_fps"]


def test_per_stream_sla_and_deadline_fallbacks(tiny):
    m = sim(tiny, [0.02] * 4, sla_ms=100, streams=2, fps=20, stream_sla_ms=[70.0, 1000.0])
    assert m["streams"]["stream0"]["violation_ratio"] == 0.0 and m["streams"]["stream1"]["violation_ratio"] == 0.0
    # an outage after 1 s: exchanges sent into it are cancelled at the SLA and finished on the edge
    fb = sim(tiny, [0.02, 0.0, 0.0, 0.02], sla_ms=400, streams=1, fps=10, timeout_factor=1.0, drop="none")
    assert fb["fallbacks"] > 0 and fb["answered"] == fb["frames"]
    with pytest.raises(SimulationError, match="needs --fps"):
        sim(tiny, [0.02], streams=2)
    with pytest.raises(SimulationError, match="one per stream"):
        sim(tiny, [0.02], streams=2, fps=5, stream_sla_ms=[100.0])
    with pytest.raises(SimulationError, match="drop policy"):
        sim(tiny, [0.02], streams=2, fps=5, drop="oldest")


def test_cli_simulate_streams(tmp_path):
    import typer

    from janus_deploy.cli.schedule_cmds import register

    app = typer.Typer()
    register(app)
    for side in ("edge", "cloud"):
        (tmp_path / f"{side}.json").write_text(json.dumps(profile_dict(side)))
    (tmp_path / "t.csv").write_text("\n".join(["0.02"] * 5) + "\n")
    args = ["simulate", "--trace", str(tmp_path / "t.csv"), "--profile", str(tmp_path / "edge.json"),
            "--cloud-profile", str(tmp_path / "cloud.json"), "--sla", "100", "--systems", "janus-deploy",
            "--streams", "2", "--fps", "20"]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout[r.stdout.index("{"):])["systems"]["janus-deploy"]
    assert m["frames"] == 200 and m["streams"]["stream1"]["answered"] == 100
    r = CliRunner().invoke(app, args + ["--serial"])
    assert r.exit_code == 0, r.output
    assert "goodput" in r.stdout and "busy" in r.stdout


def test_cli_simulate_fps_reports_the_frames_it_drops(tmp_path):
    import typer

    from janus_deploy.cli.schedule_cmds import register

    app = typer.Typer()
    register(app)
    for side in ("edge", "cloud"):
        (tmp_path / f"{side}.json").write_text(json.dumps(profile_dict(side)))
    (tmp_path / "t.csv").write_text("\n".join(["0.02"] * 2) + "\n")
    r = CliRunner().invoke(app, ["simulate", "--trace", str(tmp_path / "t.csv"), "--profile", str(tmp_path / "edge.json"),
                                 "--cloud-profile", str(tmp_path / "cloud.json"), "--sla", "100", "--systems",
                                 "janus-deploy", "--fps", "40"])
    assert r.exit_code == 0, r.output
    # 59.2 ms per request at 40 fps: a request every third tick, two ticks dropped each time
    assert "frames at 40 fps dropped" in r.stdout
    m = simulate(Trace([0.02] * 2, 1.0), *profiles(), SimConfig(systems=["janus-deploy"], sla_ms=100, fps=40))
    met = m["janus-deploy"].metrics
    assert met["dropped"] == 2 * (met["requests"] - 1) and met["frames"] == met["requests"] + met["dropped"]


def test_request_setup_holds_the_uplink_and_server_time_beyond_the_profile_is_charged(tiny):
    # 2 streams x 20 fps, one frame each (0 and 25 ms), RTT 10 ms: s0 is 19.2 ms of uplink + 10 + 40
    base = dict(sla_ms=200, streams=2, fps=20, requests=1, rtt_ms=10.0)
    plain = sim(tiny, [0.02] * 4, **base)
    assert plain["latency_ms_mean"] == pytest.approx(69.2)
    # 6 ms of the RTT is the client setting the request up before the body: the first frame is as
    # fast (the set-up is part of its RTT), the second finds the uplink held until 6 + 19.2 ms
    held = sim(tiny, [0.02] * 4, uplink_setup_ms=6.0, **base)
    assert held["latency_ms_p50"] == pytest.approx((69.2 + 69.2 + 0.2) / 2)
    # the server spends 5 ms per request beyond the profile's decode + tail
    slow = sim(tiny, [0.02] * 4, server_extra_ms=5.0, **base)
    assert slow["latency_ms_mean"] == pytest.approx(74.2)
    with pytest.raises(SimulationError, match="uplink_setup_ms is a camera-streams setting"):
        sim(tiny, [0.02] * 4, sla_ms=200, uplink_setup_ms=1.0)
    with pytest.raises(SimulationError, match="server_extra_ms must be >= 0"):
        sim(tiny, [0.02] * 4, server_extra_ms=-1.0, **base)
