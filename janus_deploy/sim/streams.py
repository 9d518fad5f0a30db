"""Camera streams over a trace: the pipeline model (:mod:`janus_deploy.schedule.pipeline`) run
as a discrete-event simulation, the runtime's rules with the trace's clock.

Frames of every stream arrive at their rate; the :class:`~janus_deploy.schedule.pipeline.Pipeline`
says which frame the edge takes next, which one is dropped, and the waits each decision is given.
Per frame, at its arrival: the controller decides (the waits and the stream's SLA included), a
frame ``late`` under ``stale`` is dropped, a frame sent as is (s = 0) waits for the uplink only,
else the edge computes ``head_ms`` + encode (the whole model for device-only) when its turn comes;
a payload then queues for the uplink, crosses it with
:meth:`Trace.transfer_time` from the instant the uplink takes it (one payload at a time), and
the cloud (RTT: the ping trace's sample at send time, else ``rtt_ms``, plus ``exchange_ms``;
decode; ``tail_ms``) answers it, concurrently with the next payload's upload. With a deadline
(``timeout_factor``), the exchange is cancelled ``SLA·factor`` after the frame's arrival (never
sooner than ``min_timeout_ms`` after sending) and the remaining segments run on the edge, before
any new frame; the controller observes what the runtime would (as in the one-request loop).
Observations reach the controller when their exchange ends, so later frames are decided before
earlier answers are known, as in the runtime. A probe (no link sample for
``probe_interval_s``): the link's mean rate over the device-only frame that finished.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from janus_deploy.net.traces import Trace
from janus_deploy.schedule.controller import Controller, Observation
from janus_deploy.schedule.pipeline import Frame, Pipeline, PipelineConfig, StreamSpec, stagger_s
from janus_deploy.schedule.runlog import RequestRecord, RunLogError

# event kinds, in the order they are handled at one instant: work that ends frees resources
# before a new frame arrives (a frame arriving as the previous one is answered is taken)
EDGE_DONE, UPLINK_DONE, ANSWER, CANCEL, PROBE_DONE, ARRIVE = range(6)


@dataclass
class StreamsRun:
    """What a streams run gives: every frame (with its outcome) and the pipeline."""

    pipeline: Pipeline
    elapsed_s: float

    @property
    def frames(self) -> list[Frame]:
        return self.pipeline.frames


def run_streams(ctrl: Controller, trace: Trace, ping: Trace | None, streams: Sequence[StreamSpec],
                pipeline: PipelineConfig, *, duration_s: float, rtt_ms: float = 0.0, exchange_ms: float = 0.0,
                policy: Any = None, probe: Callable[[float, float], tuple[float, Observation]] | None = None,
                tick: Callable[[int], None] | None = None, uplink_setup_ms: float = 0.0,
                server_extra_ms: float = 0.0) -> StreamsRun:
    """Simulate ``streams`` for ``duration_s`` of arrivals (the work in flight then drains).
    ``policy``: an :class:`~janus_deploy.schedule.exchange.ExchangePolicy` (None: no deadline).
    ``probe(t, rtt_ms)``: the runtime's probe started at ``t`` as (seconds it takes, what it
    shows), started whenever the controller says one is due and none is running (None: a probe
    costs no time and observes the link's mean rate over the device-only frame that finished).
    ``uplink_setup_ms``: the part of each exchange's RTT spent before its body's first byte (the
    edge's HTTP client setting the request up), measured (:attr:`Exchange.setup_s`): it holds the
    uplink, the rest of the RTT follows the transfer. ``server_extra_ms``: what the server spends
    per request beyond the profile's decode + tail (parsing, queueing; measured from its reported
    ``janus_server_ms``): charged, and reported to the controller as the server's time, as the
    runtime's answers report it (its cloud-load estimate learns it the same way)."""
    pipe = Pipeline(streams, pipeline)
    edge = ctrl.deploy.edge
    heap: list[tuple[float, int, int, Any]] = []
    order = [0]

    def push(t: float, kind: int, item: Any) -> None:
        order[0] += 1
        heapq.heappush(heap, (t, kind, order[0], item))

    def next_arrival(i: int, seq: int) -> None:
        s = streams[i]
        t = s.arrival(seq)
        if t < s.start_s + duration_s - 1e-12 and (s.frames is None or seq < s.frames):
            push(t, ARRIVE, (i, seq))

    for i in range(len(streams)):
        next_arrival(i, 0)

    def decide(f: Frame, now: float) -> None:
        """The frame's decision at its arrival (the waits of the pipeline ahead of it)."""
        waits = pipe.waits(f, now, ctrl.scheduler_bandwidth())
        choice = ctrl.decide(now, edge_wait_ms=waits[0], uplink_wait_ms=waits[1], sla_ms=f.sla_ms)
        d = choice.decision
        f.info.update(choice=choice, decided_s=now)
        if pipe.late(f, d.predicted_ms):
            pipe.drop_late(f, now, waits)
            return
        bd = d.breakdown
        send_only = d.split == 0 and d.bytes > 0
        pipe.decide(f, waits, d.bytes, 0.0 if send_only else bd["edge_ms"] + bd["encode_ms"], send_only)

    def start_edge(now: float) -> bool:
        job = pipe.take_edge(now)
        if job is None:
            return False
        f, fallback = job
        push(now + f.edge_ms / 1e3, EDGE_DONE, f)  # a fallback's edge_ms: its remaining segments
        return True

    def start_uplink(now: float) -> bool:
        f = pipe.take_uplink(now)
        if f is None:
            return False
        d = f.info["choice"].decision
        bd = d.breakdown
        rtt = (ping.value_at(now) if ping is not None else rtt_ms) + exchange_ms
        setup = min(uplink_setup_ms, rtt)
        # the frame's encode (a send-only frame is encoded where the uplink takes it), the request's set-up
        now = now + ((bd["encode_ms"] if f.send_only else 0.0) + setup) / 1e3
        tx = trace.transfer_time(now, d.bytes)
        expected = ctrl.deploy.server_ms(d.level_index, d.split, d.codec)
        server = expected + server_extra_ms
        answer = now + tx + (rtt - setup + server) / 1e3
        f.info.update(send_s=now, bw_mbps=trace.value_at(now))
        deadline = None
        if policy is not None:
            deadline = f.arrival_s + policy.deadline_ms(f.sla_ms, (now - f.arrival_s) * 1e3) / 1e3
        if deadline is not None and answer > deadline:
            crossed = min(float(d.bytes), (trace.delivered_bits(deadline) - trace.delivered_bits(now)) / 8.0)
            if crossed >= d.bytes:
                obs = Observation(deadline, "server", server_ok=False)
            elif crossed > 0:
                obs = Observation(deadline, "transfer", nbytes=crossed, seconds=deadline - now)
            else:
                obs = Observation(deadline, "outage")
            f.info["local_ms"] = edge.total_ms(d.level_index) - edge.head_ms(d.level_index, d.split)
            push(min(now + tx, deadline), UPLINK_DONE, f)
            push(deadline, CANCEL, (f, obs))
        else:
            push(now + tx, UPLINK_DONE, f)
            reported = server_extra_ms > 0  # else the server takes what the profile says: no load to learn
            push(answer, ANSWER, (f, Observation(answer, "transfer", nbytes=d.bytes, seconds=tx, rtt_ms=rtt,
                                                   server_ok=True, server_ms=server if reported else None,
                                                   expected_ms=expected if reported else None)))
        return True

    probing = [False]

    def pump(now: float) -> None:
        while start_edge(now) or start_uplink(now):
            pass
        if probe is not None and not probing[0] and heap and ctrl.probe_due(now):
            probing[0] = True
            took, obs = probe(now, (ping.value_at(now) if ping is not None else rtt_ms) + exchange_ms)
            push(now + took, PROBE_DONE, obs)

    now = 0.0
    handled = 0
    while heap:
        now, kind, _, item = heapq.heappop(heap)
        if kind == ARRIVE:
            i, seq = item
            f, _ = pipe.arrive(i, seq, now)
            if f.outcome is None:
                decide(f, now)
            next_arrival(i, seq + 1)
        elif kind == EDGE_DONE:
            f = item
            was_fallback = pipe.edge_busy is not None and pipe.edge_busy.fallback
            pipe.edge_done(f, now)
            if probe is None and not was_fallback and f.nbytes == 0 and ctrl.probe_due(now):
                start = f.edge_start_s if f.edge_start_s is not None else now
                ctrl.observe(Observation(now, "rate", mbps=trace.mean_rate(start, now) if now > start
                                         else trace.value_at(now),
                                         rtt_ms=ping.value_at(now) if ping is not None else None,
                                         server_ok=True, probe=True))
        elif kind == UPLINK_DONE:
            pipe.uplink_done(item, now)
        elif kind == ANSWER:
            f, obs = item
            ctrl.observe(obs)
            pipe.answered(f, now)
        elif kind == CANCEL:
            f, obs = item
            ctrl.observe(obs)
            pipe.fell_back(f, now, "timeout", f.info["local_ms"])
        else:  # PROBE_DONE
            ctrl.observe(item)
            probing[0] = False
        pump(now)
        handled += 1
        if tick is not None:
            tick(handled)
    left = pipe.unfinished()
    if left:  # cannot happen: every event path ends in an outcome; say so loudly if it does
        raise RuntimeError(f"{len(left)} frame(s) left without an outcome (first: stream {left[0].stream}, "
                           f"frame {left[0].seq})")
    return StreamsRun(pipe, now)


def stream_specs(count: int, fps: float, sla_ms: float | Sequence[float], frames: int | None = None) -> list[StreamSpec]:
    """``count`` streams at ``fps`` (started :func:`stagger_s` apart),
    each with its SLA (one for all, or one per stream)."""
    slas = [float(sla_ms)] * count if isinstance(sla_ms, (int, float)) else [float(s) for s in sla_ms]
    if len(slas) != count:
        from janus_deploy.schedule.pipeline import PipelineError

        raise PipelineError(f"{len(slas)} SLAs for {count} streams; give one per stream (or one for all)")
    return [StreamSpec(f"stream{i}", fps, slas[i], frames, start_s=stagger_s(i, count, fps)) for i in range(count)]


__all__ = ["StreamsRun", "run_streams", "stream_specs"]


def simulate_streams_system(ctrl: Controller, trace: Trace, ping: Trace | None, config: Any, system: str,
                            progress: Any = None) -> Any:
    """One system's streams run for :func:`janus_deploy.sim.simulator.simulate` (``config``: its
    :class:`SimConfig` with ``streams`` set): the run report of the answered frames plus the
    streams report (:func:`~janus_deploy.schedule.pipeline.stream_report`)."""
    from janus_deploy.report import run_report
    from janus_deploy.schedule.pipeline import stream_report
    from janus_deploy.sim.simulator import RequestLog, SystemResult, _log

    specs = stream_specs(config.streams, config.fps, config.stream_sla_ms or config.sla_ms,
                         frames=config.requests)
    duration = trace.duration_s if config.requests is None else config.requests / config.fps
    from janus_deploy.sim.simulator import _probe

    probe = None
    if config.probe_bytes:
        def probe(t: float, rtt: float) -> tuple[float, Observation]:
            extra = config.exchange_ms if config.probe_exchange_ms is None else config.probe_exchange_ms
            return _probe(trace, config, t, rtt - config.exchange_ms + extra)
    run = run_streams(ctrl, trace, ping, specs, config.pipeline(), duration_s=duration, rtt_ms=config.rtt_ms,
                      exchange_ms=config.exchange_ms, policy=config.policy, probe=probe,
                      uplink_setup_ms=config.uplink_setup_ms, server_extra_ms=config.server_extra_ms)
    log = RequestLog()
    decided = [f for f in run.frames if f.outcome in ("answered", "fallback")]
    for f in sorted(decided, key=lambda f: f.arrival_s):
        ch = f.info["choice"]
        _log(log, f.arrival_s, f.info.get("bw_mbps", trace.value_at(f.arrival_s)), ch.bandwidth_mbps, ch.decision,
             f.latency_ms or 0.0)  # answered: always set
    rep = stream_report(run.frames, names=[s.name for s in specs])
    log.elapsed_s = rep["span_s"]
    metrics = run_report(log.latency_ms, config.sla_ms, throughput_rps=len(decided) / rep["span_s"]
                         if rep["span_s"] > 0 else None, labels=log.labels, alphas=log.alpha,
                         accuracies=log.accuracy, predicted_ms=log.predicted_ms, sent_bytes=log.bytes,
                         fallback_kinds=[f.reason or "timeout" for f in decided if f.outcome == "fallback"])
    for k in ("frames", "dropped", "drop_reasons", "on_time", "goodput_fps", "drop_ratio", "violation_ratio",
              "streams"):
        metrics[k] = rep[k]  # violation_ratio: against each frame's own stream SLA
    if progress is not None:
        progress(system, len(run.frames), len(run.frames))
    return SystemResult(system, metrics, log)


def is_pipelined_log(records: Sequence[RequestRecord]) -> bool:
    """A log of the pipelined runtime: its records say what the controller had seen (``obs_before``)."""
    return any(r.obs_before is not None or r.kind == "probe" for r in records)


def replay_pipelined(ctrl: Controller, records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Replay a pipelined, multi-stream run (:mod:`janus_deploy.runtime.streams`): its
    observations in the order the controller got them (``obs_index``), each decision after the
    ``obs_before`` observations it had seen, with the frame's waits and SLA; counts and the first
    mismatches as :func:`janus_deploy.sim.simulator.replay`. The records were checked field by
    field when the log was read (:func:`janus_deploy.schedule.runlog.read_run_log`)."""
    observed: dict[int, Observation] = {}
    decisions = []
    for i, r in enumerate(records):
        if r.observations:
            start = r.obs_index
            if start is None:
                raise RunLogError(f"run log record {r.id}: obs_index must be an integer >= 0 with observations")
            for k, o in enumerate(r.observations):
                if start + k in observed:
                    raise RunLogError(f"run log record {r.id}: observation {start + k} is recorded twice")
                observed[start + k] = o
        if r.decision is not None and not r.decision.forced:
            if r.obs_before is None:
                raise RunLogError(f"run log record {r.id}: obs_before must be an integer >= 0")
            ew, uw = (r.waits.edge_ms, r.waits.uplink_ms) if r.waits is not None else (0.0, 0.0)
            decisions.append((r.obs_before, r.t, i, ew, uw, r.sla_ms, r.decision))
    missing = [k for k in range(len(observed)) if k not in observed]
    if missing:
        raise RunLogError(f"the run log lacks observation {missing[0]} of {len(observed)} (records deleted?)")
    decisions.sort(key=lambda d: (d[0], d[1], d[2]))
    fed = same = 0
    mismatches: list[dict[str, Any]] = []
    for before, t, _, ew, uw, sla, recorded in decisions:
        while fed < before and fed in observed:
            ctrl.observe(observed[fed])
            fed += 1
        d = ctrl.decide(t, edge_wait_ms=ew, uplink_wait_ms=uw, sla_ms=sla).decision
        codec_same = recorded.codec is None or d.codec is None or recorded.codec == d.codec
        if (recorded.policy, recorded.split) == (d.policy, d.split) and codec_same and \
                math.isclose(recorded.alpha, d.alpha, rel_tol=0, abs_tol=1e-9):
            same += 1
        elif len(mismatches) < 10:
            mismatches.append({"t": t, "recorded": recorded.model_dump(),
                               "replayed": {"policy": d.policy, "alpha": d.alpha, "split": d.split, "codec": d.codec}})
    total = len(decisions)
    return {"requests": total, "decisions_reproduced": (same / total) if total else None, "mismatches": mismatches}
