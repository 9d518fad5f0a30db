"""The controller learns the server's load (schedule/cloud_load.py) on the tiny hand-written plan
(tests/sched_fixtures.py): neutral load = the profile's decisions bit for bit; a slowing server
moves decisions to the device before requests violate, and back once it recovers; replay
reproduces decisions made under load; load-unaware (``cloud_load="off"``) ignores it."""

from __future__ import annotations

import itertools

import pytest
from sched_fixtures import profiles

from janus_deploy.schedule.cloud_load import CloudLoad, CloudLoadError
from janus_deploy.schedule.controller import Controller, ControllerConfig, ControllerError, Observation
from janus_deploy.schedule.scheduler import Scheduler, SchedulerError
from janus_deploy.sim.simulator import replay

SLA = 250.0  # budget with margin 0.1: 225 ms


@pytest.fixture(scope="module")
def tiny():
    return profiles(dec_ms=2.0)


def make(tiny, **cfg):
    cfg.setdefault("cloud_load", "extra")
    cfg.setdefault("cloud_half_life_s", 1.0)
    cfg.setdefault("margin", 0.1)
    cfg.setdefault("cold_start_mbps", 1000.0)
    cfg.setdefault("probe_interval_s", None)
    edge, cloud = tiny
    return Controller(Scheduler(edge, cloud, sla_ms=SLA), ControllerConfig(**cfg))


# ---------------------------------------------------------------- the estimate itself


def test_estimate_is_the_decayed_max_and_a_fresh_low_sample_wins():
    c = CloudLoad("extra", window=3, half_life_s=1.0)
    assert c.estimate(0.0) == (1.0, 0.0)
    assert c.observe(0.0, 150.0, 50.0) == 100.0  # 100 ms over the profile
    assert c.estimate(0.0) == (1.0, 100.0)
    assert c.estimate(2.0) == (1.0, pytest.approx(25.0))  # two half-lives
    c.observe(2.0, 60.0, 50.0)  # the server has recovered: 10 ms over
    assert c.estimate(2.0) == (1.0, pytest.approx(25.0))  # the old sample, decayed, is still the larger
    assert c.estimate(5.0) == (1.0, pytest.approx(max(100 / 32, 10 / 8)))
    c.observe(5.0, 40.0, 50.0)
    c.observe(5.0, 40.0, 50.0)  # the window (3) no longer holds the 100 ms sample
    assert c.estimate(5.0) == (1.0, pytest.approx(10 / 8))
    c.observe(5.0, 40.0, 50.0)
    assert c.estimate(5.0) == (1.0, 0.0)  # faster than the profile: never below "no load"


def test_factor_mode_and_off_mode():
    f = CloudLoad("factor", window=3, half_life_s=1.0)
    assert f.observe(0.0, 90.0, 30.0) == 3.0
    assert f.estimate(1.0) == (pytest.approx(2.0), 0.0)  # 1 + (3 − 1)·½
    # over a 0.2 ms tail, 0.9 ms is the server's fixed cost, not a 4.5x load: the ratio is over 1 ms
    assert f.observe(0.0, 0.9, 0.2) == pytest.approx(0.9) and f.observe(0.0, 3.0, 0.2) == pytest.approx(3.0)
    off = CloudLoad("off")
    assert off.observe(0.0, 900.0, 30.0) is None and off.estimate(0.0) == (1.0, 0.0)
    with pytest.raises(CloudLoadError, match="unknown cloud-load mode"):
        CloudLoad("max")
    with pytest.raises(ControllerError, match="cloud-load"):
        ControllerConfig(cloud_half_life_s=0.0).validate()


# ---------------------------------------------------------------- the scheduler's load arguments


def test_neutral_load_is_bit_identical_and_extra_is_charged_where_something_is_sent(tiny):
    edge, cloud = tiny
    s = Scheduler(edge, cloud, sla_ms=SLA)
    for bw, rtt, margin in itertools.product((0.0, 0.004, 0.05, 1000.0), (0.0, 7.0), (0.0, 0.1)):
        a, b = s.decide(bw, rtt, margin), s.decide(bw, rtt, margin, cloud_factor=1.0, cloud_extra_ms=0.0)
        assert a.to_dict() == b.to_dict()
    idle = s.decide(1000.0, 0.0, 0.1)
    assert (idle.alpha, idle.split) == (0.0, 0)  # lowest α, 40 + 2 ms on the server
    loaded = s.evaluate(idle.level_index, 0, 1000.0, cloud_extra_ms=100.0)
    assert loaded.breakdown["cloud_ms"] == pytest.approx(140.0)
    assert loaded.predicted_ms == pytest.approx(idle.predicted_ms + 100.0)
    dev = s.evaluate(idle.level_index, 4, 1000.0, cloud_extra_ms=100.0)
    assert dev.breakdown["cloud_ms"] == 0.0 and dev.predicted_ms == 310.0  # nothing sent: no load
    # 190 ms of load: α = 0 at s = 0 takes 232 > 225; every split that sends is over too (s = 3:
    # 300 + 12 + 190), device-only: α = 1 (195 ms) is the lowest α that fits
    d = s.decide(1000.0, 0.0, 0.1, cloud_extra_ms=190.0)
    assert (d.alpha, d.split) == (1.0, 4)
    # a factor of 3 on decode + tail: s = 0 at α = 0 costs (40 + 2)·3 = 126 ms: still fits
    assert s.decide(1000.0, 0.0, 0.1, cloud_factor=3.0).predicted_ms == pytest.approx(126.0 + 48 * 8 / 1e3 / 1000.0)
    assert s.server_ms(idle.level_index, 0) == 42.0 and s.server_ms(idle.level_index, 4) == 0.0
    with pytest.raises(SchedulerError, match="cloud load"):
        s.decide(1000.0, cloud_factor=float("nan"))


# ---------------------------------------------------------------- the closed loop


def server_load(t: float) -> float:
    """The server's extra time (ms): idle, a ramp up to 300 ms over 5 s, 3 s there, back to idle."""
    if t < 1.0:
        return 0.0
    if t < 6.0:
        return 60.0 * (t - 1.0)
    if t < 9.0:
        return 300.0
    return 0.0


def run_loop(ctrl: Controller, seconds: float = 14.0, dt: float = 0.05):
    """Requests every ``dt``: the latency each would have on this server (head + the server's time;
    the 1000 Mbit/s link costs microseconds), and what the edge observes (its reported time)."""
    out, steps = [], []
    t = 0.0
    while t < seconds:
        ch = ctrl.decide(t)
        d = ch.decision
        sends = d.split <= 3
        idle = ctrl.expected_server_ms(d)
        server = idle + server_load(t) if sends else 0.0
        lat = d.breakdown["edge_ms"] + d.breakdown["comm_ms"] + server
        obs = [Observation(t + lat / 1e3, "transfer", nbytes=d.bytes, seconds=d.breakdown["comm_ms"] / 1e3,
                           rtt_ms=0.0, server_ok=True, server_ms=server, expected_ms=idle)] if sends else []
        for o in obs:
            ctrl.observe(o)
        out.append((t, d.alpha, d.split, lat, ch.cloud_extra_ms))
        steps.append((t, {"policy": d.policy, "alpha": d.alpha, "split": d.split}, obs))
        t += dt
    return out, steps


@pytest.mark.parametrize("mode", ["extra", "factor"])
def test_a_slowing_server_moves_decisions_to_the_device_before_requests_violate_and_back(tiny, mode):
    aware, steps = run_loop(make(tiny, cloud_load=mode))
    unaware, _ = run_loop(make(tiny, cloud_load="off"))
    first_device = next(t for t, _a, s, _lat, _x in aware if s == 4)
    first_violation = next((t for t, *_r, lat, _x in aware if lat > SLA), None)
    assert 1.0 < first_device < 6.0
    assert first_violation is None or first_violation > first_device  # moved before any violation
    during = [r for r in aware if 1.0 <= r[0] < 9.0]
    worst_unaware = [r for r in unaware if 1.0 <= r[0] < 9.0]
    v_aware = sum(r[3] > SLA for r in during) / len(during)
    v_unaware = sum(r[3] > SLA for r in worst_unaware) / len(worst_unaware)
    assert v_unaware > 0.4  # α = 0 at s = 0 throughout: 42 + load > 250 once the load passes 208 ms
    assert v_aware <= v_unaware / 5
    assert {s for _t, _a, s, *_ in unaware} == {0}
    # after the server recovers (t = 9), the decisions come back to the idle choice
    assert all((a, s) == (0.0, 0) for t, a, s, *_ in aware if t > 12.0)
    assert all(x == 0.0 for t, *_r, x in aware if t < 1.0)
    # replay (the observations made after each decision) reproduces every decision
    rep = replay(make(tiny, cloud_load=mode), steps)
    assert rep["decisions_reproduced"] == 1.0 and rep["requests"] == len(aware)


def test_observation_round_trip_keeps_the_server_times():
    o = Observation(1.5, "transfer", nbytes=10, seconds=0.1, server_ok=True, server_ms=12.5, expected_ms=10.0)
    d = o.to_dict()
    assert d["server_ms"] == 12.5 and d["expected_ms"] == 10.0 and Observation.from_dict(d) == o
    assert "server_ms" not in Observation(1.5, "outage").to_dict()  # unknown: left out (old logs unchanged)


def test_the_edge_s_server_time_samples():
    from janus_deploy.runtime.edge import server_time
    from janus_deploy.runtime.transport import Exchange

    ok = Exchange(True, 12500, 12500, 0.001, 0.05, server={"janus_server_ms": 12.3456}, network_s=0.04)
    assert server_time(ok, 10.0, 20.0) == {"server_ms": 12.346, "expected_ms": 10.0}
    assumed = Exchange(True, 12500, 12500, 0.001, 0.05, server={"assumed_server_ms": 10.0}, network_s=0.04)
    assert server_time(assumed, 10.0, 20.0) == {}  # Triton's ensembles report nothing: no sample
    # a timeout 300 ms after sending: the 12.5 KB body takes 100 ms at the estimated 1 Mbit/s (the
    # socket took it in 0.2 ms), one RTT of 20 ms: the server had it for at least 180 ms
    late = Exchange(False, 12500, 12500, 0.0002, 0.3, kind="timeout", reason="late")
    assert server_time(late, 10.0, 20.0, mbps=1.0) == {"server_ms": pytest.approx(180.0), "expected_ms": 10.0}
    assert server_time(Exchange(False, 0, 12500, 0.0, 0.01, kind="unreachable", reason="x"), 10.0, 20.0) == {}


def test_factor_learns_the_compute_s_ratio_and_the_rest_apart():
    """Measured on the demo's loopback server (docs/runtime.md): a 2.0 ms tail took 2.7 ms of
    compute and 3.09 ms in all, a 0.05 ms tail 0.06 ms of compute and 0.34 ms in all: the rest
    (parsing, thread hops) is the same ~0.3 ms at every option. With the compute reported, the
    ratio is the compute's and the rest an extra wait; one ratio of the whole read 1.54x."""
    f = CloudLoad("factor", window=3, half_life_s=1.0)
    assert f.observe(0.0, 3.09, 2.0, compute_ms=2.7) == pytest.approx(1.35)
    assert f.estimate(0.0) == (pytest.approx(1.35), pytest.approx(0.39))
    assert f.estimate(1.0) == (pytest.approx(1.175), pytest.approx(0.195))  # both halve in one half-life
    tiny = CloudLoad("factor", window=3, half_life_s=1.0)
    assert tiny.observe(0.0, 0.34, 0.05, compute_ms=0.06) == pytest.approx(0.06)  # over the 1 ms floor: no load
    assert tiny.estimate(0.0) == (1.0, pytest.approx(0.28))  # the fixed part alone
    whole = CloudLoad("factor", window=3, half_life_s=1.0)  # without the split (Triton, the fleet): as before
    assert whole.observe(0.0, 3.09, 2.0) == pytest.approx(1.545) and whole.estimate(0.0) == (pytest.approx(1.545), 0.0)
    for bad in (float("nan"), -1.0):  # an unusable compute time: the whole time, as without one
        b = CloudLoad("factor", window=3, half_life_s=1.0)
        assert b.observe(0.0, 3.09, 2.0, compute_ms=bad) == pytest.approx(1.545)
    extra = CloudLoad("extra", window=3, half_life_s=1.0)  # the additive mode ignores the split
    assert extra.observe(0.0, 3.09, 2.0, compute_ms=2.7) == pytest.approx(1.09)


def test_the_controller_charges_both_parts_and_replay_reproduces_them(tiny):
    c = make(tiny, cloud_load="factor")
    ch = c.decide(0.0)
    obs = Observation(0.5, "transfer", nbytes=48, seconds=0.001, server_ok=True, server_ms=53.0,
                      expected_ms=42.0, server_compute_ms=50.0)
    c.observe(obs)
    after = c.decide(0.5)
    assert (after.cloud_factor, after.cloud_extra_ms) == (pytest.approx(50 / 42), pytest.approx(3.0))
    d = after.decision
    assert d.split == 0  # still sent: predicted at the load, decode + tail scaled plus the rest
    idle = c.deploy.evaluate(d.level_index, d.split, after.bandwidth_mbps, after.rtt_ms)
    assert d.predicted_ms == pytest.approx(idle.predicted_ms + (50 / 42 - 1) * 42.0 + 3.0)
    assert Observation.from_dict(obs.to_dict()) == obs  # the log keeps server_compute_ms
    def rec(d):
        return {"policy": d.policy, "alpha": d.alpha, "split": d.split, "codec": d.codec}

    steps = [(0.0, rec(ch.decision), [obs]), (0.5, rec(after.decision), [])]
    assert replay(make(tiny, cloud_load="factor"), steps)["decisions_reproduced"] == 1.0


def test_the_edge_reports_the_built_in_server_s_compute():
    from janus_deploy.runtime.edge import server_time
    from janus_deploy.runtime.transport import Exchange

    parts = {"janus_server_ms": 3.09, "janus_decode_ms": 0.051, "janus_compute_ms": 2.7, "janus_parse_ms": 0.184}
    ok = Exchange(True, 12500, 12500, 0.001, 0.05, server=parts, network_s=0.04)
    assert server_time(ok, 2.0, 1.0) == {"server_ms": 3.09, "expected_ms": 2.0, "server_compute_ms": 2.751}
