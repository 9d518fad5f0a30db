"""The one controller: breaker, configuration errors, deflation, RTT, and replay, on the tiny
hand-written plan (tests/sched_fixtures.py), with hand-computed expectations."""

from __future__ import annotations

import pytest
from sched_fixtures import profiles

from janus_deploy.schedule.controller import Controller, ControllerConfig, ControllerError, Observation
from janus_deploy.schedule.runlog import DecisionRecord
from janus_deploy.schedule.scheduler import Scheduler
from janus_deploy.sim.simulator import replay


@pytest.fixture(scope="module")
def tiny():
    return profiles()


def make(tiny, **cfg):
    cfg.setdefault("margin", 0.0)
    cfg.setdefault("cold_start_mbps", 1000.0)
    edge, cloud = tiny
    return Controller(Scheduler(edge, cloud, sla_ms=300), ControllerConfig(**cfg),
                      Scheduler(edge, cloud, mode="paper", sla_ms=300))


def test_breaker_opens_probes_backs_off_and_closes(tiny):
    c = make(tiny, breaker_failures=3, breaker_open_s=1.0, breaker_max_open_s=4.0)
    assert c.decide(0.0).reason == "scheduler"
    for t in (1.0, 2.0):
        c.observe(Observation(t, "server", server_ok=False))
        assert c.decide(t).reason == "scheduler"
    c.observe(Observation(3.0, "server", server_ok=False))
    ch = c.decide(3.1)
    # device-only while open: α = 0 takes 310 > 300 on the edge, α = 0.5 takes 255 (lowest α that fits)
    assert ch.reason == "breaker-open" and ch.decision.split == 4 and ch.decision.alpha == 0.5
    assert ch.bandwidth_mbps == 0.0 and c.estimator.estimate() == 1000.0  # the link estimate is untouched
    assert not c.probe_due(3.9) and c.probe_due(4.0)  # open for 1 s
    c.observe(Observation(4.0, "server", server_ok=False, probe=True))  # failed probe: 2 s
    assert not c.probe_due(5.9) and c.probe_due(6.0)
    c.observe(Observation(6.0, "server", server_ok=False, probe=True))  # 4 s
    c.observe(Observation(10.0, "server", server_ok=False, probe=True))  # capped at 4 s
    assert not c.probe_due(13.9) and c.probe_due(14.0)
    c.observe(Observation(14.0, "transfer", nbytes=125_000, seconds=0.001, server_ok=True, probe=True))
    assert c.decide(14.1).reason == "scheduler" and c.state()["breaker"] == "closed"
    assert c.breaker.opened == 1


def test_breaker_off_and_success_resets_the_count(tiny):
    c = make(tiny, breaker_failures=3)
    for t in (1.0, 2.0):
        c.observe(Observation(t, "server", server_ok=False))
    c.observe(Observation(2.5, "transfer", nbytes=1000, seconds=0.001, server_ok=True))
    c.observe(Observation(3.0, "server", server_ok=False))
    assert c.decide(3.0).reason == "scheduler"  # 2 + reset + 1: never 3 in a row
    off = make(tiny, breaker_failures=0)
    for t in range(10):
        off.observe(Observation(float(t), "server", server_ok=False))
    assert off.decide(10.0).reason == "scheduler"


def test_unauthorized_stops_offloading_for_good(tiny):
    c = make(tiny)
    c.observe(Observation(1.0, "unauthorized"))
    ch = c.decide(2.0)
    assert ch.reason == "unauthorized" and ch.decision.split == 4 and c.config_error
    assert not c.probe_due(100.0)


def test_deflation_margin_and_rtt(tiny):
    c = make(tiny, cold_start_mbps=10.0)
    c.observe(Observation(1.0, "transfer", nbytes=1_250_000, seconds=1.0, rtt_ms=10.0))  # 10 Mbit/s, error 0
    assert c.decide(1.0).bandwidth_mbps == pytest.approx(10.0)
    c.observe(Observation(2.0, "transfer", nbytes=1_250_000, seconds=2.0, rtt_ms=50.0))  # 5: 10 overshot by 1
    c.observe(Observation(3.0, "rate", mbps=20.0, rtt_ms=20.0))  # HM(10,5)=6.67 undershot 20: not counted
    hm = 3 / (1 / 10 + 1 / 5 + 1 / 20)
    ch = c.decide(3.0)
    assert ch.estimate_mbps == pytest.approx(hm) and ch.recent_error == pytest.approx(1.0)
    assert ch.bandwidth_mbps == pytest.approx(hm / 2.0) and ch.rtt_ms == 50.0  # max of the last RTTs
    paper = make(tiny, cold_start_mbps=10.0, system="janus-paper")
    for o in (Observation(1.0, "rate", mbps=10.0), Observation(2.0, "rate", mbps=20.0)):
        paper.observe(o)
    assert paper.decide(2.0).bandwidth_mbps == pytest.approx(2 / (1 / 10 + 1 / 20))  # the raw estimate
    with pytest.raises(ControllerError, match="margin"):
        make(tiny, margin=1.5)
    with pytest.raises(ControllerError, match="kind"):
        Observation.from_dict({"t": 0, "kind": "teleport"})


def test_observation_round_trip_keeps_zeros_and_false():
    for o in (Observation(1.5, "transfer", nbytes=10, seconds=0.5, rtt_ms=0.0, server_ok=True),
              Observation(2.0, "server", server_ok=False, probe=True), Observation(3.0, "rate", mbps=0.0)):
        assert Observation.from_dict(o.to_dict()) == o


def test_replay_reproduces_and_detects_a_different_history(tiny):
    """Record (decision, observations) of a controller over a link that swings between fast and
    almost nothing; a fresh controller fed the same observations makes the same decisions, one
    fed none does not."""
    rates = [1000.0, 1000.0, 0.0008, 0.0008, 0.0008, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0] * 3
    a = make(tiny, cold_start_mbps=1000.0)
    steps = []
    for i, r in enumerate(rates):
        d = a.decide(float(i)).decision
        obs = [Observation(i + 0.5, "rate", mbps=r, rtt_ms=5.0, server_ok=True)]
        for o in obs:
            a.observe(o)
        rec = DecisionRecord(alpha=float(d.alpha), policy=d.policy, level=d.level_index, profile_level=d.level_index,
                             split=d.split, label=d.label, codec="fp16", meets_sla=bool(d.meets_sla))
        steps.append((float(i), rec, obs))
    assert len({s[1].split for s in steps}) > 1  # the history really changes the decisions
    same = replay(make(tiny, cold_start_mbps=1000.0), steps)
    assert same["requests"] == len(rates) and same["decisions_reproduced"] == 1.0
    blind = replay(make(tiny, cold_start_mbps=1000.0), [(t, d, []) for t, d, _ in steps])
    assert blind["decisions_reproduced"] < 1.0 and blind["mismatches"]


def test_cold_start_rule_for_trace():
    from janus_deploy.net.traces import Trace
    from janus_deploy.schedule.controller import COLD_START_MBPS

    assert ControllerConfig().cold_start_mbps is None  # unresolved until a trace (or none) is known
    assert ControllerConfig().for_trace(Trace([10.0, 30.0], 1.0)).cold_start_mbps == 20.0
    assert ControllerConfig().for_trace(Trace([0.0, 0.0], 1.0)).cold_start_mbps == COLD_START_MBPS  # mean 0: guard
    assert ControllerConfig().for_trace(None).cold_start_mbps == COLD_START_MBPS
    assert ControllerConfig(cold_start_mbps=3.0).for_trace(Trace([10.0], 1.0)).cold_start_mbps == 3.0
    with pytest.raises(ControllerError, match="cold-start"):
        ControllerConfig(cold_start_mbps=0.0).for_trace(None)


def test_exchanges_in_flight_when_the_breaker_opened_do_not_back_it_off(tiny):
    # pipelined runs: exchanges started before the breaker opened fail after it; only probes back off
    c = make(tiny, breaker_failures=3, breaker_open_s=1.0, breaker_max_open_s=4.0)
    for t in (1.0, 1.1, 1.2):
        c.observe(Observation(t, "server", server_ok=False))
    c.observe(Observation(1.3, "server", server_ok=False))  # in flight: not a failed probe
    assert not c.probe_due(2.19) and c.probe_due(2.2)  # still open for 1 s from 1.2
    assert c.breaker.failures == 3


def test_cold_start_runs_on_the_device_and_probes_at_once(tiny):
    # SLA 300, margin 0: before any link sample the device is taken where it alone fits (α = 0.5:
    # 255 ms; α = 0 takes 310), whatever the cold-start estimate (1000 Mbit/s) promises
    c = make(tiny)
    ch = c.decide(0.0)
    assert (ch.decision.split, ch.decision.alpha, ch.bandwidth_mbps, ch.estimate_mbps) == (4, 0.5, 0.0, 1000.0)
    assert c.probe_due(0.0)  # the probe after that request measures the link
    c.observe(Observation(0.3, "rate", mbps=1000.0, probe=True))
    ch = c.decide(0.3)
    assert (ch.decision.split, ch.decision.alpha, ch.bandwidth_mbps) == (0, 0.0, 1000.0) and not c.probe_due(0.3)
    # probes off: nothing would measure the link, so the first request trusts the cold start
    assert make(tiny, probe_interval_s=None).decide(0.0).decision.split == 0
    # the device alone misses the budget (SLA 150): the cold-start estimate decides, as before
    edge, cloud = tiny
    tight = Controller(Scheduler(edge, cloud, sla_ms=150), ControllerConfig(cold_start_mbps=1000.0, margin=0.0))
    ch = tight.decide(0.0)
    assert ch.decision.split == 0 and ch.bandwidth_mbps == 1000.0 and tight.probe_due(0.0)
    # the baselines have no cold-start rule
    assert make(tiny, system="cloud-only").decide(0.0).decision.split == 0


def test_after_an_outage_probes_come_soon_and_back_off(tiny):
    c = make(tiny, probe_interval_s=2.0)
    c.observe(Observation(0.0, "rate", mbps=1000.0))
    assert not c.probe_due(1.9) and c.probe_due(2.1)  # a working link: every probe_interval_s
    c.observe(Observation(1.0, "outage"))
    assert not c.probe_due(1.24) and c.probe_due(1.26)  # OUTAGE_PROBE_S after the outage
    for k, (t, wait) in enumerate([(1.3, 0.5), (1.9, 1.0), (3.0, 2.0), (5.1, 2.0)]):
        c.observe(Observation(t, "outage", probe=True))  # still down: twice as long, at most 2 s
        assert not c.probe_due(t + wait - 0.01) and c.probe_due(t + wait + 0.01), k
    c.observe(Observation(7.2, "rate", mbps=1000.0, probe=True))  # back: the window still holds 0s
    assert c.estimator.estimate() == 0.0 and c.probe_due(7.2)  # so another probe, at once
    for i in range(4):
        c.observe(Observation(7.3 + 0.1 * i, "rate", mbps=1000.0, probe=True))
    assert c.estimator.estimate() == pytest.approx(1000.0) and not c.probe_due(7.7)


def test_deflation_counts_only_overshoots_of_estimates_made_from_samples(tiny):
    c = make(tiny, cold_start_mbps=100.0)
    c.observe(Observation(0.1, "rate", mbps=10.0))  # the cold-start guess was 9x off: no estimate of the link
    assert c.estimator.recent_error() == pytest.approx(9.0) and c.decide(0.1).bandwidth_mbps == pytest.approx(10.0)
    c.observe(Observation(0.2, "outage"))
    for i in range(5):  # the link comes back: its first 5 samples were "predicted" 0 (error 1 each)
        c.observe(Observation(0.3 + 0.1 * i, "rate", mbps=10.0, probe=True))
    assert c.estimator.recent_error() == 1.0
    ch = c.decide(0.8)
    assert ch.estimate_mbps == pytest.approx(10.0) and ch.recent_error == 0.0
    assert ch.bandwidth_mbps == pytest.approx(10.0)  # not halved
    c.observe(Observation(0.9, "rate", mbps=20.0))  # an undershoot (10 vs 20) makes no request late
    assert c.decide(0.9).bandwidth_mbps == pytest.approx(c.estimator.estimate())
    prior = c.estimator.estimate()
    c.observe(Observation(1.0, "rate", mbps=5.0))  # an overshoot deflates
    over = (prior - 5) / 5
    assert c.decide(1.0).bandwidth_mbps == pytest.approx(c.estimator.estimate() / (1 + over))


def test_a_dip_s_error_is_flushed_by_probes_at_most_window_in_a_row(tiny):
    c = make(tiny, window=3, probe_interval_s=2.0)
    for t in (0.0, 0.1):
        c.observe(Observation(t, "rate", mbps=10.0))
    c.observe(Observation(0.2, "rate", mbps=2.0))  # a dip: 10 predicted, 2 seen (error 4)
    assert c.scheduler_bandwidth() == pytest.approx((3 / (1 / 10 + 1 / 10 + 1 / 2)) / 5)
    assert not c.probe_due(0.44) and c.probe_due(0.46)  # a dip (under half the estimate): probe soon
    c.observe(Observation(2.3, "rate", mbps=10.0, probe=True))  # the link is back; the error is not
    assert c.scheduler_bandwidth() < 5.0 and c.probe_due(2.3)  # deflated under half the sample: again
    c.observe(Observation(2.35, "rate", mbps=10.0, probe=True))
    c.observe(Observation(2.4, "rate", mbps=10.0, probe=True))  # the dip has left both windows
    assert c.scheduler_bandwidth() == pytest.approx(10.0) and not c.probe_due(2.4)
    # a link that keeps outrunning its estimate (10x per probe): at most `window` (3) probes in a row
    j = make(tiny, window=3, probe_interval_s=2.0)
    j.observe(Observation(0.0, "rate", mbps=1.0))
    due = []
    for i in range(6):
        j.observe(Observation(2.1 + 0.01 * i, "rate", mbps=10.0 ** (i + 1), probe=True))
        due.append(j.probe_due(2.1 + 0.01 * i))
    assert due == [True, True, True, False, True, True]


def test_a_probe_burst_goes_on_until_the_windows_hold_only_new_samples(tiny):
    """The demo's case: two dip samples (3 and 6 against 10); the burst of probes that the first
    (deflated under half the sample) starts used to stop as soon as the deflated bandwidth passed
    half the sample, leaving the second dip's error in the window: the edge stayed on the device,
    the link deflated 1.3x, until the next probe interval. Now the burst makes `window` samples."""
    c = make(tiny, window=5, probe_interval_s=2.0)
    for i, mbps in enumerate([10, 10, 10, 10, 10, 3, 6]):
        c.observe(Observation(0.1 * i, "rate", mbps=float(mbps)))
    due = []
    for k in range(5):
        c.observe(Observation(1.0 + 0.05 * k, "rate", mbps=10.0, probe=True))
        due.append(c.probe_due(1.0 + 0.05 * k))
        if k == 3:  # no longer "low" (over half the sample) but still deflated by the dip
            assert 5.0 <= c.scheduler_bandwidth() < 0.8 * 10.0
    assert due == [True, True, True, True, False]
    assert c.scheduler_bandwidth() == pytest.approx(10.0) and c.estimator.estimate() == pytest.approx(10.0)
