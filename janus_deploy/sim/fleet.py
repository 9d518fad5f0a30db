"""A fleet in the simulator: N edges, each with its own trace window and controller, against one
server with a queue, a batching curve and a number of instances.

Each edge is the single-edge simulator's time-driven loop (:mod:`janus_deploy.sim.simulator`):
back to back or at ``fps``, the same :class:`~janus_deploy.schedule.controller.Controller`, the
same exchange policy (the runtime's deadline and fallback, on by default here: a fleet's queue
makes late answers the normal failure). What changes is the cloud: instead of the profile's
idle decode + tail, a request that reaches the server waits in one FIFO queue until one of
``instances`` execution slots is free; a slot takes the request at the head of the queue and
up to ``max_batch − 1`` queued requests for the same tail model (level, split), as Triton's
dynamic batcher forms batches per model, and runs them together in
``idle_ms × batch_curve(b)``. The answer comes back half an RTT later; the edge observes the
server's time (queue + batch, what the built-in server reports as ``janus_server_ms``) next to
the profile's idle expectation, which is what the load-aware controller learns from
(:mod:`janus_deploy.schedule.cloud_load`; ``cloud_load="off"`` ignores it).

The batching curve: ``batch_curve[b-1]`` is the time of a batch of b relative to a batch of 1
(measured: ``tools/bench_fleet.py --batch-curve`` times the cloud's tails at batch 1..B),
else the linear model ``1 + batch_slope·(b − 1)`` (1: batching saves nothing, each request in a
batch costs what it costs alone; 0: a batch costs one request). The built-in server does not
batch across requests (``max_batch=1``, ``instances`` = its ``--concurrency``); Triton batches
per model (``max_batch`` = the repository's preferred/max batch, ``instances`` = the instance
count that the hardware really runs in parallel). A slot's speed is the cloud profile's: the
model assumes the profile was measured with the share of the machine one instance gets.

Edge i replays the trace rotated by ``i × duration / N`` (its own window of the same trace; the
ping trace, if any, rotated alike), so edges see different links at the same moment.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from janus_deploy.net.traces import Trace
from janus_deploy.profile.table import Profile
from janus_deploy.schedule.controller import Controller, ControllerConfig, Observation
from janus_deploy.schedule.exchange import ExchangePolicy
from janus_deploy.schedule.scheduler import Decision
from janus_deploy.sim.simulator import (
    RequestLog,
    SimConfig,
    SimulationError,
    _check_inputs,
    _log,
    _schedulers,
    metrics,
    request_start,
)


@dataclass(frozen=True)
class ServerModel:
    """The shared server (module docstring): ``instances`` parallel slots, batches of up to
    ``max_batch`` requests for the same tail model, ``batch_curve`` or ``batch_slope``;
    ``max_queue_delay_ms``: how long a free slot waits for a batch to fill (Triton's
    ``max_queue_delay_microseconds``; requests arriving at the same instant always batch)."""

    instances: int = 1
    max_batch: int = 1
    batch_slope: float = 1.0
    batch_curve: tuple[float, ...] | None = None
    max_queue_delay_ms: float = 0.0

    def validate(self) -> ServerModel:
        if int(self.instances) != self.instances or self.instances < 1:
            raise SimulationError(f"--instances must be an integer >= 1, got {self.instances}")
        if int(self.max_batch) != self.max_batch or self.max_batch < 1:
            raise SimulationError(f"--max-batch must be an integer >= 1, got {self.max_batch}")
        if not (math.isfinite(self.max_queue_delay_ms) and self.max_queue_delay_ms >= 0):
            raise SimulationError(f"the queue delay must be >= 0 ms, got {self.max_queue_delay_ms}")
        if not (math.isfinite(self.batch_slope) and self.batch_slope >= 0):
            raise SimulationError(f"--batch-slope must be >= 0, got {self.batch_slope}")
        if self.batch_curve is not None:
            c = self.batch_curve
            if not c or any(not (math.isfinite(v) and v > 0) for v in c) or c[0] != 1.0:
                raise SimulationError(f"a batch curve is the time of batch 1, 2, ... relative to batch 1 "
                                      f"(first value 1, all > 0), got {list(c)}")
        return self

    def factor(self, b: int) -> float:
        """Time of a batch of ``b`` relative to one request."""
        c = self.batch_curve
        if c is not None:
            if b <= len(c):
                return float(c[b - 1])
            step = (c[-1] - c[-2]) if len(c) > 1 else 1.0  # beyond the measured sizes: the last slope
            return float(c[-1] + step * (b - len(c)))
        return 1.0 + self.batch_slope * (b - 1)


@dataclass
class FleetConfig:
    """``edges`` clients with ``sim``'s settings (SLA, fps, RTT, codec, exchange policy; the
    controller's, with ``cloud_load`` set per mode) against ``server``. ``modes``: which
    controllers to compare, ``aware`` (``sim.controller``'s cloud_load; the default one when that
    is ``off``) and ``unaware`` (``cloud_load="off"``). ``system``: the controllers' system."""

    edges: int = 8
    sim: SimConfig = field(default_factory=lambda: SimConfig(timeout_factor=1.0))
    server: ServerModel = field(default_factory=ServerModel)
    modes: Sequence[str] = ("aware", "unaware")
    system: str = "janus-deploy"

    def validate(self) -> None:
        if int(self.edges) != self.edges or self.edges < 1:
            raise SimulationError(f"--fleet must be an integer >= 1 edges, got {self.edges}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise SimulationError(f"unknown fleet mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
        if self.sim.requests is not None or self.sim.paper_mode:
            raise SimulationError("a fleet runs for the trace's duration, time-driven: no --requests, no --paper-mode")
        self.server.validate()


MODES = ("aware", "unaware")


@dataclass
class _Req:
    edge: int
    t0: float
    decision: Decision
    est: float
    compute_edge: float
    send_t: float
    tx: float
    rtt: float
    expected: float
    key: tuple[int, int]
    arrive: float = math.nan
    server_done: float = math.nan
    deadline_ms: float | None = None
    finished: bool = False


@dataclass
class FleetResult:
    """One mode's run: per-edge metrics, the fleet's, and the server's (queue, batches)."""

    mode: str
    edges: list[dict[str, Any]]
    fleet: dict[str, Any]
    server: dict[str, Any]
    logs: list[RequestLog]


def rotated(trace: Trace, offset_s: float) -> Trace:
    """The trace started ``offset_s`` seconds in (looping): an edge's own window."""
    k = int(round(offset_s / trace.interval_s)) % len(trace)
    if k == 0:
        return trace
    s = list(trace.samples)
    return Trace(s[k:] + s[:k], trace.interval_s, f"{trace.name} +{k * trace.interval_s:g} s", trace.unit)


class _Fleet:
    """The event loop of one mode (module docstring)."""

    def __init__(self, ctrls: list[Controller], traces: list[Trace], pings: list[Trace | None],
                 cfg: SimConfig, server: ServerModel, end_s: float) -> None:
        self.ctrls, self.traces, self.pings, self.cfg, self.server, self.end = ctrls, traces, pings, cfg, server, end_s
        self.policy: ExchangePolicy | None = cfg.policy
        self.logs = [RequestLog() for _ in ctrls]
        self.fallbacks = [0 for _ in ctrls]
        self.heap: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.queue: deque[_Req] = deque()
        self.free = server.instances
        self.batches: list[int] = []
        self.waits: list[float] = []
        self.busy_s = 0.0
        self.last_done = [0.0 for _ in ctrls]

    def push(self, t: float, kind: str, item: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, item))

    def run(self, tick: Callable[[int], None]) -> None:
        for i in range(len(self.ctrls)):
            self.push(0.0, "start", i)
        done = 0
        while self.heap:
            t, _, kind, item = heapq.heappop(self.heap)
            if kind == "start":
                self._start(item, t)
                done += 1
                tick(done)
            elif kind == "arrive":
                self._arrive(item, t)
            elif kind == "free":
                self._free(item, t)
            elif kind == "dispatch":
                self._dispatch(t)
            elif kind == "answer":
                self._answer(item, t)
            elif kind == "cancel":
                self._cancel(item, t)

    # ---------------------------------------------------------------- edges
    def _start(self, i: int, t: float) -> None:
        cfg = self.cfg
        if cfg.fps is not None:
            t = math.ceil(t * cfg.fps - 1e-9) / cfg.fps
        if t >= self.end:
            self.last_done[i] = max(self.last_done[i], t)
            return
        ctrl, trace, ping = self.ctrls[i], self.traces[i], self.pings[i]
        choice, compute_edge, send_t, rtt = request_start(ctrl, ping, cfg, t)
        d = choice.decision
        bd = d.breakdown
        if d.bytes == 0:
            lat = compute_edge + bd["decode_ms"] + bd["cloud_ms"]
            done = t + lat / 1e3
            if ctrl.probe_due(done):  # as the single-edge simulator: the link's rate over the request
                ctrl.observe(Observation(done, "rate", mbps=trace.mean_rate(t, done),
                                         rtt_ms=rtt if ping is not None else None, server_ok=True, probe=True))
            self._finish(i, t, send_t, choice.bandwidth_mbps, d, lat)
            return
        tx = trace.transfer_time(send_t, d.bytes)
        req = _Req(i, t, d, choice.bandwidth_mbps, compute_edge, send_t, tx, rtt, ctrl.expected_server_ms(d),
                   (d.level_index, d.split))
        self.push(send_t + tx + rtt / 2e3, "arrive", req)
        if self.policy is not None:
            req.deadline_ms = self.policy.deadline_ms(cfg.sla_ms, compute_edge)
            self.push(t + req.deadline_ms / 1e3, "cancel", req)

    def _finish(self, i: int, t: float, send_t: float, est: float, d: Decision, lat: float) -> None:
        _log(self.logs[i], t, self.traces[i].value_at(send_t), est, d, lat)
        done = t + lat / 1e3
        self.last_done[i] = done
        self.push(done, "start", i)

    def _answer(self, req: _Req, t: float) -> None:
        if req.finished:
            return  # cancelled at its deadline; the edge has moved on (the server did the work)
        req.finished = True
        lat = (t - req.t0) * 1e3
        self.ctrls[req.edge].observe(Observation(
            t, "transfer", nbytes=req.decision.bytes, seconds=req.tx, rtt_ms=req.rtt, server_ok=True,
            server_ms=(req.server_done - req.arrive) * 1e3, expected_ms=req.expected))
        self._finish(req.edge, req.t0, req.send_t, req.est, req.decision, lat)

    def _cancel(self, req: _Req, t: float) -> None:
        """The runtime's fallback at the deadline (as the single-edge simulator's, plus the
        server-time lower bound the edge records when the whole body went up)."""
        if req.finished:
            return
        req.finished = True
        ctrl, trace, d = self.ctrls[req.edge], self.traces[req.edge], req.decision
        limit = req.deadline_ms
        assert limit is not None  # a cancel event exists only with a deadline
        window_s = (limit - req.compute_edge) / 1e3
        crossed = min(float(d.bytes), (trace.delivered_bits(req.send_t + window_s)
                                       - trace.delivered_bits(req.send_t)) / 8.0)
        if crossed >= d.bytes:
            waited = (window_s - req.tx) * 1e3 - ctrl.rtt_estimate()
            obs = Observation(t, "server", server_ok=False, server_ms=max(waited, 0.0), expected_ms=req.expected)
        elif crossed > 0:
            obs = Observation(t, "transfer", nbytes=crossed, seconds=window_s)
        else:
            obs = Observation(t, "outage")
        ctrl.observe(obs)
        edge = ctrl.deploy.edge
        local = edge.total_ms(d.level_index) - edge.head_ms(d.level_index, d.split)
        self.fallbacks[req.edge] += 1
        self._finish(req.edge, req.t0, req.send_t, req.est, d, limit + local)

    # ---------------------------------------------------------------- server
    def _arrive(self, req: _Req, t: float) -> None:
        if req.finished and req.deadline_ms is not None and req.send_t + req.tx > req.t0 + req.deadline_ms / 1e3:
            return  # the upload was cut at the deadline: the server never got the whole body
        req.arrive = t
        self.queue.append(req)
        self.push(t, "dispatch", None)  # after every other arrival at this instant: they batch together

    def _dispatch(self, t: float) -> None:
        mb, delay = self.server.max_batch, self.server.max_queue_delay_ms / 1e3
        while self.free > 0 and self.queue:
            head = self.queue[0]
            if mb > 1 and delay > 0 and t < head.arrive + delay and \
                    sum(1 for r in self.queue if r.key == head.key) < mb:
                self.push(head.arrive + delay, "dispatch", None)  # wait for the batch to fill
                return
            self.queue.popleft()
            batch = [head]
            if mb > 1 and self.queue:
                rest: deque[_Req] = deque()
                while self.queue:
                    r = self.queue.popleft()
                    (batch if len(batch) < mb and r.key == head.key else rest).append(r)
                self.queue = rest
            svc = head.expected * self.server.factor(len(batch)) / 1e3
            self.free -= 1
            self.busy_s += svc
            self.batches.append(len(batch))
            for r in batch:
                self.waits.append((t - r.arrive) * 1e3)
            self.push(t + svc, "free", batch)

    def _free(self, batch: list[_Req], t: float) -> None:
        self.free += 1
        for r in batch:
            r.server_done = t
            self.push(t + r.rtt / 2e3, "answer", r)
        self.push(t, "dispatch", None)


def merge_logs(logs: Sequence[RequestLog]) -> RequestLog:
    """The fleet's requests in one log (every edge's columns, edge after edge)."""
    merged = RequestLog()
    for lg in logs:
        for name in ("start_s", "bw_mbps", "est_mbps", "alpha", "split", "latency_ms", "predicted_ms", "labels",
                     "accuracy", "level_index", "bytes", "codec"):
            getattr(merged, name).extend(getattr(lg, name))
    return merged


def fleet_metrics(log: RequestLog, sla_ms: float, seconds: float, fallbacks: int) -> dict[str, Any]:
    m = metrics(log, sla_ms)
    lat = np.asarray(log.latency_ms, dtype=float)
    within = int(np.sum(lat <= sla_ms + 1e-9))
    m["throughput_rps"] = len(lat) / seconds if seconds > 0 else None
    m["goodput_rps"] = within / seconds if seconds > 0 else None
    m["fallbacks"] = fallbacks
    m["offloaded"] = float(np.mean(np.asarray(log.bytes) > 0)) if len(log) else None
    return m


def fleet_controller(base: ControllerConfig | None, mode: str, system: str = "janus-deploy") -> ControllerConfig:
    """The controller settings of a fleet's ``mode`` (the simulator's and the testbed's one rule):
    ``base`` (default settings when None) for ``system``, with ``cloud_load="off"`` for
    ``unaware`` and, for ``aware``, ``base``'s cloud load, or the default one when that is off."""
    base = base or ControllerConfig()
    if mode not in MODES:
        raise SimulationError(f"unknown fleet mode {mode!r}; choose from {', '.join(MODES)}")
    aware_load = base.cloud_load if base.cloud_load != "off" else ControllerConfig().cloud_load
    return base.with_(system=system, cloud_load="off" if mode == "unaware" else aware_load)


def simulate_fleet(trace: Trace, edge: Profile, cloud: Profile, config: FleetConfig, *, accuracy: Any = None,
                   ping: Trace | None = None, progress: Callable[[str, int], None] | None = None) -> dict[str, FleetResult]:
    """Run the fleet once per mode of ``config`` (same trace windows); results keyed by mode.
    ``progress(mode, requests_started)`` every :data:`PROGRESS_EVERY` requests."""
    config.validate()
    _check_inputs(trace, config.sim, ping)
    n = config.edges
    step = trace.duration_s / n
    traces = [rotated(trace, i * step) for i in range(n)]
    pings = [rotated(ping, (i * step) % ping.duration_s) if ping is not None else None for i in range(n)]
    out = {}
    for mode in config.modes:
        cc = fleet_controller(config.sim.controller, mode, config.system)
        if config.sim.cold_start_mbps is not None:
            cc = cc.with_(cold_start_mbps=config.sim.cold_start_mbps)
        ctrls = []
        for i in range(n):
            deploy, paper = _schedulers(edge, cloud, replace(config.sim, systems=(config.system,)), accuracy)
            rtt_cold = pings[i].median() if pings[i] is not None else config.sim.rtt_ms  # type: ignore[union-attr]  # checked just before
            ctrls.append(Controller(deploy, cc.for_trace(traces[i]).with_(rtt_cold_ms=rtt_cold), paper))
        sim = _Fleet(ctrls, traces, pings, config.sim, config.server, trace.duration_s)

        def tick(k: int, mode: str = mode) -> None:
            if progress is not None and k % PROGRESS_EVERY == 0:
                progress(mode, k)

        sim.run(tick)
        seconds = trace.duration_s
        per_edge = [fleet_metrics(lg, config.sim.sla_ms, seconds, fb) for lg, fb in zip(sim.logs, sim.fallbacks)]
        merged = merge_logs(sim.logs)
        fleet = fleet_metrics(merged, config.sim.sla_ms, seconds, sum(sim.fallbacks))
        fleet["edges"] = n
        waits = np.asarray(sim.waits) if sim.waits else np.zeros(1)
        server = {"instances": config.server.instances, "max_batch": config.server.max_batch,
                  "requests": len(sim.waits), "batches": len(sim.batches),
                  "mean_batch": float(np.mean(sim.batches)) if sim.batches else None,
                  "utilisation": sim.busy_s / (seconds * config.server.instances),
                  "queue_ms_p50": float(np.percentile(waits, 50)), "queue_ms_p95": float(np.percentile(waits, 95))}
        out[mode] = FleetResult(mode, per_edge, fleet, server, sim.logs)
        if progress is not None:
            progress(mode, len(merged))
    return out


PROGRESS_EVERY = 5000


def smallest_overloaded(trace: Trace, edge: Profile, cloud: Profile, config: FleetConfig, sizes: Sequence[int], *,
                        accuracy: Any = None, ping: Trace | None = None, threshold: float = 0.10
                        ) -> tuple[int | None, dict[int, dict[str, FleetResult]]]:
    """Fleet sizes in increasing order until the load-unaware controller exceeds ``threshold``
    violations; (that size or None, every size's results)."""
    results = {}
    for n in sorted(sizes):
        res = simulate_fleet(trace, edge, cloud, replace(config, edges=n), accuracy=accuracy, ping=ping)
        results[n] = res
        unaware = res.get("unaware")
        if unaware is not None and (unaware.fleet["violation_ratio"] or 0.0) > threshold:
            return n, results
    return None, results


FLEET_LEGEND = ("SLA {sla:g} ms. aware: the controller learns the server's load from its reported time; unaware: "
                "the profile's idle cloud. goodput: answers within the SLA per second; offload: share of requests "
                "that sent something; fallbk: exchanges cancelled at the deadline (tail run locally); batch: mean "
                "batch the server formed; util: busy share of its instances; queue p95: ms a request waited for an "
                "instance.")


def format_fleet(results: dict[str, FleetResult], sla_ms: float, per_edge: bool = False, legend: bool = True) -> str:
    """The fleet report as text: one row per mode (fleet), then optionally one per edge."""
    lines = [f"{'controller':<10} {'edges':>5} {'over SLA':>8} {'goodput/s':>9} {'req/s':>7} {'offload':>7} "
             f"{'p95 ms':>7} {'fallbk':>6} {'batch':>5} {'util':>5} {'queue p95':>9}"]
    for mode, r in results.items():
        f, s = r.fleet, r.server
        lines.append(f"{mode:<10} {f['edges']:>5} {100 * (f['violation_ratio'] or 0):>7.1f}% {f['goodput_rps'] or 0:>9.1f} "
                     f"{f['throughput_rps'] or 0:>7.1f} {100 * (f['offloaded'] or 0):>6.0f}% "
                     f"{f['latency_ms_p95'] or 0:>7.0f} {f['fallbacks']:>6} {s['mean_batch'] or 0:>5.2f} "
                     f"{100 * s['utilisation']:>4.0f}% {s['queue_ms_p95']:>9.1f}")
        if per_edge:
            for i, e in enumerate(r.edges):
                lines.append(f"  edge {i:<3} {'':>5} {100 * (e['violation_ratio'] or 0):>7.1f}% {e['goodput_rps'] or 0:>9.1f} "
                             f"{e['throughput_rps'] or 0:>7.1f} {100 * (e['offloaded'] or 0):>6.0f}% "
                             f"{e['latency_ms_p95'] or 0:>7.0f} {e['fallbacks']:>6}")
    if legend:
        lines.append(FLEET_LEGEND.format(sla=sla_ms))
    return "\n".join(lines)


__all__ = ["FLEET_LEGEND", "FleetConfig", "FleetResult", "MODES", "ServerModel", "fleet_controller", "fleet_metrics",
           "format_fleet", "merge_logs", "rotated", "simulate_fleet", "smallest_overloaded"]
