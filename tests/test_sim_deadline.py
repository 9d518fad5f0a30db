"""The simulator's runtime-like settings (``SimConfig.timeout_factor``, ``exchange_ms``) on
hand-computed cases (profiles: tests/sched_fixtures.py; the constant level r = 1 runs 280 ms on the
edge, its cloud tail at s = 0 is 38 ms, the frame is 48 bytes)."""

from __future__ import annotations

import pytest
from sched_fixtures import profiles

from janus_deploy.net.traces import Trace
from janus_deploy.schedule.controller import ControllerConfig
from janus_deploy.sim.simulator import SimConfig, SimulationError, simulate


def cloud_only(samples, **cfg):
    res = simulate(Trace(samples, 1.0), *profiles(), SimConfig(systems=["cloud-only"], sla_ms=300.0, **cfg))
    return res["cloud-only"]


def test_no_deadline_by_default():
    # 384 bit at 800 bit/s = 480 ms, + RTT 20 + tail 38
    assert cloud_only([0.0008], requests=2, rtt_ms=20.0).log.latency_ms == pytest.approx([538.0] * 2)


def test_deadline_cancels_and_finishes_on_the_edge():
    # cancelled at SLA·1 = 300 ms (240 of 384 bits crossed), then the whole model on the edge: 280 ms
    res = cloud_only([0.0008], requests=2, rtt_ms=20.0, timeout_factor=1.0)
    assert res.log.latency_ms == pytest.approx([580.0] * 2)
    assert res.metrics["violation_ratio"] == 1.0
    # a factor of 2: the deadline is 600 ms, the 538 ms exchange completes
    assert cloud_only([0.0008], requests=1, rtt_ms=20.0, timeout_factor=2.0).log.latency_ms == pytest.approx([538.0])


def test_min_timeout_after_sending():
    # SLA·0.01 = 3 ms is sooner than 20 ms after sending: cancelled at 20 ms, + 280 on the edge
    res = cloud_only([0.0008], requests=1, rtt_ms=20.0, timeout_factor=0.01)
    assert res.log.latency_ms == pytest.approx([300.0])


def test_late_answer_counts_against_the_server_and_opens_the_breaker():
    # 1 Mbit/s: the frame crosses in 0.384 ms, but RTT 400 ms makes every answer late: three
    # server failures (at 0.3, 0.88, 1.46 s) open the breaker until 2.46 s; device-only (280 ms)
    # until a request ends after that (2.58 s), whose probe closes it; then the cloud again
    res = cloud_only([1.0], requests=7, rtt_ms=400.0, timeout_factor=1.0,
                     controller=ControllerConfig(breaker_failures=3, breaker_open_s=1.0))
    assert res.log.latency_ms == pytest.approx([580.0, 580.0, 580.0, 280.0, 280.0, 280.0, 580.0])
    assert res.log.labels == ["r1@0"] * 3 + ["r1@4"] * 3 + ["r1@0"]


def test_exchange_cost_is_charged_with_the_rtt():
    assert cloud_only([0.0008], requests=1, rtt_ms=20.0, exchange_ms=5.0).log.latency_ms == pytest.approx([543.0])


def test_settings_are_checked():
    with pytest.raises(SimulationError, match="--timeout-factor"):
        cloud_only([1.0], requests=1, timeout_factor=0.0)
    with pytest.raises(SimulationError, match="exchange_ms"):
        cloud_only([1.0], requests=1, exchange_ms=-1.0)


def device_only(samples, **cfg):
    res = simulate(Trace(samples, 1.0), *profiles(), SimConfig(systems=["device-only"], sla_ms=300.0, **cfg))
    return res["device-only"]


def test_probe_takes_its_time_before_the_next_request():
    # device-only (280 ms): no link sample for 2 s, so the request ending at 2.24 s probes: 1000 B at
    # 1 Mbit/s = 8 ms + RTT 20 ms; the next request starts 28 ms later; latencies stay 280 ms
    res = device_only([1.0], requests=10, rtt_ms=20.0, probe_bytes=1000)
    assert res.log.latency_ms == pytest.approx([280.0] * 10)
    assert res.log.start_s[8] == pytest.approx(2.268) and res.log.elapsed_s == pytest.approx(2.828)
    assert device_only([1.0], requests=10, rtt_ms=20.0).log.elapsed_s == pytest.approx(2.8)  # default: free


def test_probe_in_an_outage_is_cancelled_at_the_deadline():
    # the link is down until 5 s: the probe at 2.24 s gets nothing through by its 300 ms deadline
    # (an outage sample at 2.54 s); the next probe is due OUTAGE_PROBE_S (0.25 s) after it, so the
    # request ending at 2.82 s probes again (another 300 ms); the next would be due 0.5 s later
    res = device_only([0.0] * 5 + [1.0], requests=10, rtt_ms=20.0, probe_bytes=1000, timeout_factor=1.0)
    assert res.log.start_s[8] == pytest.approx(2.54) and res.log.start_s[9] == pytest.approx(3.12)
    assert res.log.elapsed_s == pytest.approx(3.4)


def test_probe_exchange_cost():
    # as above with exchange_ms 5 and a probe costing 12: the probe takes 8 + 20 + 12 = 40 ms
    res = device_only([1.0], requests=10, rtt_ms=20.0, probe_bytes=1000, exchange_ms=5.0, probe_exchange_ms=12.0)
    assert res.log.start_s[8] == pytest.approx(2.28)


def test_one_exchange_policy_for_runtime_and_simulator():
    from janus_deploy.runtime.transport import TransportOptions
    from janus_deploy.schedule.exchange import ExchangePolicy, ExchangePolicyError

    p = ExchangePolicy(timeout_factor=1.5, min_timeout_ms=20.0)
    assert p.timeout_ms(300.0, 100.0) == 350.0  # 450 from the start, 100 already spent
    assert p.timeout_ms(300.0, 440.0) == 20.0  # never sooner than the minimum after sending
    assert p.deadline_ms(300.0, 440.0) == 460.0
    assert p.probe_timeout_ms(10.0) == 20.0
    # the runtime's defaults and the simulator's are the policy's, not copies
    assert TransportOptions().policy == ExchangePolicy()
    assert SimConfig(timeout_factor=1.0, probe_bytes=TransportOptions().probe_bytes).policy == ExchangePolicy()
    assert SimConfig().policy is None  # no deadline: the paper's model
    with pytest.raises(ExchangePolicyError, match="timeout-factor"):
        ExchangePolicy(timeout_factor=float("nan")).validate()


def test_sim_config_takes_the_exchange_policy_in_one_place():
    from janus_deploy.schedule.exchange import ExchangePolicy

    p = ExchangePolicy(timeout_factor=1.5, min_timeout_ms=30.0, probe_bytes=4096)
    cfg = SimConfig.with_policy(p, sla_ms=200.0, rtt_ms=5.0)
    assert (cfg.timeout_factor, cfg.min_timeout_ms, cfg.probe_bytes) == (1.5, 30.0, 4096)
    assert (cfg.sla_ms, cfg.rtt_ms) == (200.0, 5.0) and cfg.policy == p
