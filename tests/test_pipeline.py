"""The pipeline model (schedule/pipeline.py) and the scheduler's pipeline waits, on hand-made cases."""

from __future__ import annotations

import math

import pytest
from sched_fixtures import profiles

from janus_deploy.schedule.pipeline import NO_UPLINK_MS, Pipeline, PipelineConfig, PipelineError, StreamSpec, stream_report
from janus_deploy.schedule.scheduler import Scheduler, SchedulerError


@pytest.fixture(scope="module")
def sched():
    edge, cloud = profiles()
    return Scheduler(edge, cloud, None, "janus-deploy", "fp16", sla_ms=10_000.0)


# ---------------------------------------------------------------- Scheduler.decide with waits
# tiny plan, fp16, α = 0 (preferred without an accuracy table), at 1 Mbit/s (comm = bytes·8/1000 ms):
#   s0: 0 + 0.384 + 40 = 40.384   s1: 100 + 0.72 + 30   s2: 200 + 0.72 + 20   s3: 300 + 0.72 + 10   s4: 310


def test_zero_waits_are_the_plain_decision(sched):
    plain = sched.decide(1.0, 0.0, 0.0)
    waited = sched.decide(1.0, 0.0, 0.0, edge_wait_ms=0.0, uplink_wait_ms=0.0)
    assert (plain.split, plain.alpha, plain.predicted_ms) == (waited.split, waited.alpha, waited.predicted_ms)
    assert plain.split == 0 and plain.predicted_ms == pytest.approx(40.384)
    assert "edge_wait_ms" not in plain.breakdown


def test_edge_wait_adds_to_every_option_that_needs_the_edge(sched):
    # s0 sends the frame as is: it skips the edge queue, so the edge wait does not delay it
    d = sched.decide(1.0, edge_wait_ms=50.0)
    assert d.split == 0 and d.predicted_ms == pytest.approx(40.384)
    assert d.breakdown["edge_wait_ms"] == 50.0 and d.breakdown["comm_ms"] == pytest.approx(0.384)
    # with the uplink busy for 500 ms, the device (s4: 50 + 310) beats s0 (540.384) and s1..s3
    # (max(50 + head, 500) + ...), and the edge wait is in its prediction
    d = sched.decide(1.0, edge_wait_ms=50.0, uplink_wait_ms=500.0)
    assert d.split == 4 and d.predicted_ms == pytest.approx(360.0)
    # SLA 35 ms forces α = 1; with a 20 ms edge wait its s0 (30.384) still fits, s1.. would not
    d = sched.decide(1.0, edge_wait_ms=20.0, sla_ms=35.0)
    assert (d.alpha, d.split, d.meets_sla) == (1.0, 0, True) and d.predicted_ms == pytest.approx(30.384)


def test_busy_uplink_pushes_to_the_device(sched):
    # uplink free 500 ms after arrival: s0 540.384, s1 530.72, s2 520.72, s3 510.72; s4 (nothing sent) 310
    d = sched.decide(1.0, uplink_wait_ms=500.0)
    assert d.split == 4 and d.predicted_ms == pytest.approx(310.0)
    # the uplink wait overlaps the edge's work: s0 = max(0, 80) + 0.384 + 40 (s1 would be max(100, 80) + 30.72)
    d = sched.decide(1.0, uplink_wait_ms=80.0, sla_ms=125.0)
    assert d.split == 0 and d.predicted_ms == pytest.approx(120.384) and d.meets_sla
    # with the edge busy for 30 ms too, s0 is max(30, 80) + 40.384: the waits overlap, they do not add
    assert sched.decide(1.0, edge_wait_ms=30.0, uplink_wait_ms=80.0).predicted_ms == pytest.approx(120.384)
    # an infinite uplink wait (outage estimate) never blocks the device-only option
    assert sched.decide(1.0, uplink_wait_ms=math.inf).split == 4


def test_stream_sla_sets_the_budget(sched):
    # SLA 35 ms: α = 0 (s0 40.384) no longer fits; α = 1 at s0 (0.384 + 30) does
    d = sched.decide(1.0, sla_ms=35.0)
    assert (d.alpha, d.split, d.meets_sla) == (1.0, 0, True) and d.predicted_ms == pytest.approx(30.384)
    # SLA 25 ms: nothing fits; the fastest option overall, reported as not meeting it
    d = sched.decide(1.0, sla_ms=25.0)
    assert (d.alpha, d.split, d.meets_sla) == (1.0, 0, False)
    with pytest.raises(SchedulerError, match="edge_wait_ms"):
        sched.decide(1.0, edge_wait_ms=-1.0)
    with pytest.raises(SchedulerError, match="SLA"):
        sched.decide(1.0, sla_ms=0.0)


# ---------------------------------------------------------------- the pipeline's rules


def two_streams(**cfg) -> Pipeline:
    return Pipeline([StreamSpec("a", 10, 100.0), StreamSpec("b", 10, 100.0)], PipelineConfig(**cfg))


def decide(p, f, t, nbytes=0, edge_ms=10.0, send_only=False, bw=8.0):
    """Decide ``f`` at ``t`` with the pipeline's waits (what the simulator and the runtime do)."""
    p.decide(f, p.waits(f, t, bw), nbytes, edge_ms, send_only)


def test_stale_keeps_the_newest_frame_per_stream():
    p = two_streams(drop="stale")
    a0, _ = p.arrive(0, 0, 0.0)
    decide(p, a0, 0.0)
    assert p.take_edge(0.0) == (a0, False)
    a1, d1 = p.arrive(0, 1, 0.1)
    decide(p, a1, 0.1)
    b0, _ = p.arrive(1, 0, 0.1)
    decide(p, b0, 0.1)
    a2, d2 = p.arrive(0, 2, 0.2)
    assert d1 == [] and d2 == [a1] and a1.outcome == "dropped" and a1.reason == "superseded"
    decide(p, a2, 0.2)
    p.edge_done(a0, 0.25)  # device only: answered
    assert a0.outcome == "answered" and a0.latency_ms == pytest.approx(250.0)
    assert p.take_edge(0.25) == (b0, False)  # oldest waiting first


def test_none_answers_every_frame_and_holds_the_source_back():
    p = Pipeline([StreamSpec("a", 10, 100.0)], PipelineConfig(drop="none", edge_queue=2))
    frames = [p.arrive(0, i, i * 0.1)[0] for i in range(3)]
    assert all(f.outcome is None for f in frames) and p.source_blocked()
    for f in frames:
        assert not p.late(f, 1e9)  # none never drops
        decide(p, f, f.arrival_s)
    for i, f in enumerate(frames):
        assert p.take_edge(1.0 + i) == (f, False)
        p.edge_done(f, 1.5 + i)
    assert [f.outcome for f in frames] == ["answered"] * 3 and p.idle


def test_undecided_frames_wait_and_a_frame_is_decided_once():
    p = two_streams()
    a0, _ = p.arrive(0, 0, 0.0)
    assert not p.edge_can_start() and p.take_uplink(0.0) is None  # nothing decided yet
    decide(p, a0, 0.0)
    with pytest.raises(PipelineError, match="not waiting for its decision"):
        decide(p, a0, 0.0)
    b0, _ = p.arrive(1, 0, 0.0)
    p.drop_late(b0, 0.0, (0.0, 0.0))
    assert b0.reason == "late" and p.take_edge(0.0) == (a0, False)


def test_full_queue_drops_the_oldest_under_stale():
    p = Pipeline([StreamSpec(n, 10, 100.0) for n in "abc"], PipelineConfig(drop="stale", edge_queue=2))
    f = [p.arrive(i, 0, 0.01 * i)[0] for i in range(3)]
    assert f[0].reason == "queue-full" and f[1].outcome is None and f[2].outcome is None


def test_serial_drops_what_arrives_while_busy():
    p = two_streams(serial=True)
    a0, _ = p.arrive(0, 0, 0.0)
    decide(p, a0, 0.0, nbytes=1000)
    p.take_edge(0.0)
    p.edge_done(a0, 0.05)
    assert p.take_uplink(0.05) is a0
    b0, dropped = p.arrive(1, 0, 0.06)
    assert dropped == [b0] and b0.reason == "busy"
    p.uplink_done(a0, 0.08)
    p.answered(a0, 0.12)
    a1, dropped = p.arrive(0, 1, 0.12)
    decide(p, a1, 0.12)
    assert dropped == [] and p.take_edge(0.12) == (a1, False)


def test_waits_count_the_work_and_payloads_ahead_at_the_estimate():
    p = Pipeline([StreamSpec(n, 10, 100.0) for n in "abcd"], PipelineConfig(uplink_queue=4))
    a, b, c = (p.arrive(i, 0, 0.0)[0] for i in range(3))
    for f, nbytes in ((a, 1000), (b, 2000)):
        decide(p, f, 0.0, nbytes=nbytes, edge_ms=0.0)
        p.take_edge(0.0)
        p.edge_done(f, 0.0)
    decide(p, c, 0.0, nbytes=0, edge_ms=4.0)  # device only: 4 ms on the edge
    assert p.take_uplink(0.0) is a
    p.take_edge(0.0005)
    # at 8 Mbit/s: a's 1000 B take 1 ms (0.5 ms left), b's 2000 B queued 2 ms; c just started its 4 ms
    d, _ = p.arrive(3, 0, 0.0005)
    ew, uw = p.waits(d, 0.0005, 8.0)
    assert ew == pytest.approx(4.0) and uw == pytest.approx(2.5)
    assert p.waits(d, 0.0005, 0.0)[1] == NO_UPLINK_MS  # no finite time: longer than any SLA, loggable
    # decided 0.5 ms later, d's waits still count from its arrival: the edge is free at the same instant
    ew2, uw2 = p.waits(d, 0.001, 8.0)
    assert ew2 == pytest.approx(4.0) and uw2 == pytest.approx(2.5)


def test_send_only_frames_skip_the_edge_queue():
    p = Pipeline([StreamSpec(n, 10, 100.0) for n in "abc"], PipelineConfig(uplink_queue=1))
    a, b, c = (p.arrive(i, 0, 0.001 * i)[0] for i in range(3))
    decide(p, a, 0.0, nbytes=0, edge_ms=30.0)  # device only: the edge for 30 ms
    decide(p, b, 0.001, nbytes=0, edge_ms=30.0)
    assert p.waits(c, 0.002, 8.0) == (pytest.approx(60.0), 0.0)  # a and b ahead on the edge
    decide(p, c, 0.002, nbytes=1000, send_only=True)  # sends the frame: waits for the uplink only
    assert p.take_edge(0.002) == (a, False)
    assert p.take_uplink(0.002) is c  # while a is on the edge and b waits for it
    assert p.take_edge(0.003) is None  # the edge is a's
    p.edge_done(a, 0.032)
    assert p.take_edge(0.032) == (b, False)


def test_a_full_uplink_queue_holds_the_sending_edge_work_and_fallbacks_go_first():
    p = Pipeline([StreamSpec(n, 10, 100.0) for n in "abcd"], PipelineConfig(uplink_queue=1))
    a, b, c, d = (p.arrive(i, 0, 0.0)[0] for i in range(4))
    for f in (a, b, c):
        decide(p, f, 0.0, nbytes=100)
    decide(p, d, 0.0, nbytes=0)  # device only
    for f in (a, b):
        p.take_edge(0.0)
        p.edge_done(f, 0.01)
        if f is a:
            assert p.take_uplink(0.01) is a
    assert p.take_edge(0.01) == (d, False)  # b fills the uplink queue: c waits, the device-only d does not
    p.edge_done(d, 0.015)
    assert not p.edge_can_start()
    p.uplink_done(a, 0.02)
    p.fell_back(a, 0.03, "timeout", local_ms=20.0)
    assert p.take_edge(0.03) == (a, True)  # the fallback before c, although the uplink queue is full
    p.edge_done(a, 0.05)
    assert a.outcome == "fallback" and a.reason == "timeout"
    with pytest.raises(PipelineError, match="already has an outcome"):
        p.answered(a, 0.06)


def test_stream_report_goodput_drops_and_violations():
    p = two_streams(drop="stale")

    def serve(f, t0, t1):
        assert p.take_edge(t0) == (f, False)
        p.edge_done(f, t1)

    def arrive(i, seq, t):
        f, _ = p.arrive(i, seq, t)
        decide(p, f, t)
        return f

    a0 = arrive(0, 0, 0.0)
    b0 = arrive(1, 0, 0.0)
    serve(a0, 0.0, 0.05)  # 50 ms: on time
    assert p.take_edge(0.05) == (b0, False)
    a1 = arrive(0, 1, 0.1)
    assert a1.outcome is None
    b1 = arrive(1, 1, 0.2)
    a2 = arrive(0, 2, 0.22)  # supersedes a1
    assert a1.reason == "superseded"
    p.edge_done(b0, 0.25)  # 250 ms: late
    serve(b1, 0.25, 0.3)  # 100 ms: on time (at the SLA)
    serve(a2, 0.3, 0.35)  # 130 ms: late
    rep = stream_report(p.frames, names=["a", "b"], span_s=2.0)
    assert (rep["frames"], rep["answered"], rep["dropped"], rep["on_time"]) == (5, 4, 1, 2)
    assert rep["drop_reasons"] == {"superseded": 1} and rep["drop_ratio"] == pytest.approx(0.2)
    assert rep["goodput_fps"] == pytest.approx(1.0) and rep["violation_ratio"] == pytest.approx(0.5)
    assert rep["latency_ms_p50"] == pytest.approx(115.0)  # of 50, 100, 130, 250
    a, b = rep["streams"]["a"], rep["streams"]["b"]
    assert (a["frames"], a["on_time"], a["dropped"], b["frames"], b["on_time"]) == (3, 1, 1, 2, 1)
    assert stream_report(p.frames)["span_s"] == pytest.approx(0.35)  # first arrival to last answer
