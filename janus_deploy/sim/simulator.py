"""Trace-driven simulation of Janus and its baselines.

Every system is one :class:`~janus_deploy.schedule.controller.Controller`, the same object the
edge runtime drives, with the same defaults (``docs/scheduler.md``); the simulator only turns a
bandwidth trace (and optionally a ping trace) into the controller's observations:

* ``device-only``: ToMe constant level, whole model on the edge (s = N+1).
* ``cloud-only``: ToMe constant level, the frame is sent (s = 0).
* ``mixed``: per request, whichever of those two is predicted faster under the current estimate.
* ``janus-paper``: Algorithm 1 (``mode="paper"``): no RTT in the model, fp32 tokens, the raw
  estimate.
* ``janus-deploy``: RTT, the codec's real payload, and the controller's safety margins (the
  estimate deflated by ``1 + recent error``, the max of the last RTTs, ``margin`` of the SLA);
  with ``codecs``, the codec too is chosen per request.

The practitioner's baselines (:data:`STATIC_BASELINES`, simulator only; each one fixed option
for the whole run, device-only while the server is unusable):

* ``cloud-jpeg``: every frame JPEG-encoded (``jpeg_codec``, default jpeg85) to the cloud, which
  runs the unpruned model (the exponential level α = 0): "JPEG every frame to the server".
* ``device-fast``: device-only at the fastest level whose accuracy is within ``keep_accuracy``
  (default 0.01) of the most accurate level's (the levels' own accuracy; without a table, α = 0).
* ``best-static``: the one (level, split, codec) that is best *in hindsight* on this trace:
  per option, the trace's samples give each request's latency ``fixed + bytes/bandwidth + RTT``
  (the paper model of the same trace); the option with the fewest SLA violations wins, ties
  to the higher accuracy, then the lower mean latency; that option is then simulated like any
  system. Options: every janus-deploy option (``codecs`` included) and the baselines' levels.

Two clocks:

**Time-driven** (default). Requests run back to back (the next starts when the previous one
finishes; throughput = completed / elapsed), or at a fixed ``fps`` (a request starts at the first
frame tick at or after the previous one finished; frames arriving meanwhile are skipped, as a live
video pipeline does). Per request: the controller decides, the edge computes ``head_ms``
(+ encode), the payload crosses the link with :meth:`Trace.transfer_time` (integrating the
bandwidth over time, waiting out outages), one RTT is added (the ping trace's sample at send
time, else ``rtt_ms``) whenever anything is sent, then decode + ``tail_ms``. The controller
observes the real transfer (bytes, seconds) and the RTT. When the controller asks for a probe
(:meth:`Controller.probe_due`: no link sample for ``probe_interval_s``, as when every request
runs device-only), it observes the link's average rate over that request and the ping sample, as
the runtime's background probe would.

Two settings bring it closer to the edge runtime over a real link (``docs/testbed.md``; both off by
default, the paper's model): ``timeout_factor`` cancels the exchange, as the runtime does, at
``SLA·timeout_factor`` after the request started (never sooner than ``min_timeout_ms`` after
sending) and runs the level's remaining segments on the edge (``head_ms[N+1] − head_ms[s]``); the
controller then observes what the runtime would: the bytes that crossed the link by then (a
link sample), an outage if none did, a server failure if all did. ``exchange_ms`` is the fixed
cost of one HTTP exchange beyond link and RTT (both stacks, parsing); it is charged with the RTT
and observed as part of it, as the runtime's RTT samples (network time − upload) include it.
``probe_bytes`` makes a probe what the runtime's is: that many bytes up the link and one RTT
after the request (under the same deadline), observed as a transfer, the next request starting
once it is answered (the probe is not in the request's latency); ``probe_exchange_ms`` is its
exchange cost where it differs from a request's.

**Paper mode** (``paper_mode=True``): as in the paper, one trace sample is one request and the
bandwidth is constant within it (= that sample). The estimator sees every sample after its request.
An outage sample (0 Mbit/s) makes a sending request wait for the next nonzero sample: it pays
``interval_s`` per zero sample and then sends at that sample's rate (so it nearly always violates
the SLA). RTT (ping sample of the same index, or ``rtt_ms``) is charged when something is sent.
Throughput in paper mode is the mean per-request rate (see :func:`metrics`).

:func:`replay` feeds the observations recorded in a run log to a controller and compares its
decisions with the recorded ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.net.traces import Trace
from janus_deploy.profile.table import Profile
from janus_deploy.report import run_report
from janus_deploy.schedule.controller import SYSTEMS, Choice, Controller, ControllerConfig, ControllerError, Observation
from janus_deploy.schedule.exchange import MIN_TIMEOUT_MS, PROBE_BYTES, ExchangePolicy
from janus_deploy.schedule.runlog import DecisionRecord, RequestRecord, RunLogError, read_run_log
from janus_deploy.schedule.scheduler import Decision, Scheduler, SchedulerError


class SimulationError(JanusError):
    """Bad simulation parameters."""


@dataclass
class SimConfig:
    """Simulation parameters (see the module docstring); ``controller`` is the control loop's
    settings, shared with the runtime (its ``system`` is set per run; its cold start, unless given,
    by :meth:`ControllerConfig.for_trace`); ``cold_start_mbps``, when given, overrides the controller's."""

    sla_ms: float = 300.0
    systems: Sequence[str] = SYSTEMS
    requests: int | None = None  # default: one pass through the trace
    fps: float | None = None  # None: back to back
    paper_mode: bool = False
    cold_start_mbps: float | None = None  # default: the controller's (ControllerConfig.for_trace)
    rtt_ms: float = 0.0  # used when no ping trace is given
    codec: str | None = None  # janus-deploy payload codec (default: profile's default_codec)
    codecs: Sequence[str] | None = None  # janus-deploy chooses among these per request (None: codec only)
    jpeg_codec: str = "jpeg85"  # the cloud-jpeg baseline's frame codec
    keep_accuracy: float = 0.01  # device-fast: the accuracy it may lose against the most accurate level
    frame_bytes: int | None = None  # override the s = 0 payload (see Scheduler)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    timeout_factor: float | None = None  # None: no deadline; else as the runtime's --timeout-factor
    min_timeout_ms: float = MIN_TIMEOUT_MS  # the exchange policy's (shared with the runtime)
    exchange_ms: float = 0.0  # fixed cost of one exchange beyond link and RTT
    probe_bytes: int | None = None  # None: a probe costs no time; else as the runtime's probe
    probe_exchange_ms: float | None = None  # a probe's exchange cost (None: exchange_ms)
    # camera streams (sim/streams.py, the pipeline model): None runs the one-request loop above
    streams: int | None = None
    drop: str = "stale"  # the pipeline's drop policy (stale | none)
    serial: bool = False  # streams through the serial loop: one frame at a time, the rest dropped
    stream_sla_ms: Sequence[float] | None = None  # one SLA per stream (default: sla_ms for all)
    uplink_queue: int = 2
    edge_queue: int | None = None
    uplink_setup_ms: float = 0.0  # streams: the part of the RTT before a body's first byte (holds the uplink)
    server_extra_ms: float = 0.0  # streams: what the server spends per request beyond the profile's decode + tail

    def pipeline(self) -> Any:
        """The pipeline settings of a streams run."""
        from janus_deploy.schedule.pipeline import PipelineConfig

        return PipelineConfig(self.drop, self.edge_queue, self.uplink_queue, self.serial)

    @classmethod
    def with_policy(cls, policy: ExchangePolicy, **kw: Any) -> SimConfig:
        """A simulation that applies the runtime's exchange ``policy`` (its deadline rule, minimum
        timeout and probe size, e.g. ``TransportOptions().policy``); ``kw`` are the other fields.
        The inverse of :attr:`policy`: ``SimConfig.with_policy(p).policy == p``."""
        return cls(timeout_factor=policy.timeout_factor, min_timeout_ms=policy.min_timeout_ms,
                   probe_bytes=policy.probe_bytes, **kw)

    @property
    def policy(self) -> ExchangePolicy | None:
        """The exchange policy the runtime applies (None: no deadline, the paper's model)."""
        if self.timeout_factor is None:
            return None
        return ExchangePolicy(self.timeout_factor, self.min_timeout_ms, self.probe_bytes or PROBE_BYTES)

    def validate(self) -> None:
        unknown = [s for s in self.systems if s not in ALL_SYSTEMS]
        if unknown or not self.systems:
            raise SimulationError(f"unknown system(s) {', '.join(unknown) or '(none given)'}; "
                                  f"choose from {', '.join(ALL_SYSTEMS)}")
        if not 0 <= self.keep_accuracy <= 1:
            raise SimulationError(f"keep_accuracy must be in [0, 1], got {self.keep_accuracy}")
        if self.sla_ms <= 0:
            raise SimulationError(f"the SLA must be > 0 ms, got {self.sla_ms}")
        if self.requests is not None and self.requests < 1:
            raise SimulationError(f"--requests must be >= 1, got {self.requests}")
        if self.fps is not None and self.fps <= 0:
            raise SimulationError(f"--fps must be > 0, got {self.fps}")
        if self.fps is not None and self.paper_mode:
            raise SimulationError("--fps has no meaning in paper mode (one sample = one request)")
        if self.rtt_ms < 0:
            raise SimulationError(f"--rtt must be >= 0 ms, got {self.rtt_ms}")
        if self.timeout_factor is not None and not self.timeout_factor > 0:
            raise SimulationError(f"--timeout-factor must be > 0, got {self.timeout_factor}")
        if self.min_timeout_ms < 0 or self.exchange_ms < 0 or (self.probe_exchange_ms or 0.0) < 0:
            raise SimulationError("min_timeout_ms, exchange_ms and probe_exchange_ms must be >= 0")
        if self.probe_bytes is not None and self.probe_bytes < 1:
            raise SimulationError(f"probe_bytes must be >= 1, got {self.probe_bytes}")
        for name in ("uplink_setup_ms", "server_extra_ms"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise SimulationError(f"{name} must be >= 0 ms, got {v}")
            if v and self.streams is None:
                raise SimulationError(f"{name} is a camera-streams setting (the pipeline model); give --streams too")
        if self.streams is not None:
            self._validate_streams()
        try:
            self.controller.validate()
        except ControllerError as exc:
            raise SimulationError(str(exc)) from None


    def _validate_streams(self) -> None:
        from janus_deploy.schedule.pipeline import PipelineError

        if self.streams is None or self.streams < 1:
            raise SimulationError(f"--streams must be >= 1, got {self.streams}")
        if self.fps is None:
            raise SimulationError("--streams needs --fps (each stream's frame rate)")
        if self.paper_mode:
            raise SimulationError("--streams has no meaning in paper mode (one sample = one request)")
        if self.stream_sla_ms is not None and len(self.stream_sla_ms) != self.streams:
            raise SimulationError(f"{len(self.stream_sla_ms)} stream SLAs for {self.streams} streams; "
                                  "give one per stream")
        try:
            self.pipeline().validate()
        except PipelineError as exc:
            raise SimulationError(str(exc)) from None


@dataclass
class RequestLog:
    """Per-request records of one system (for metrics and plots)."""

    start_s: list[float] = field(default_factory=list)
    bw_mbps: list[float] = field(default_factory=list)  # link at send time (paper: the sample)
    est_mbps: list[float] = field(default_factory=list)  # bandwidth the scheduler was given
    alpha: list[float] = field(default_factory=list)  # NaN for the constant policy
    split: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    predicted_ms: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)
    level_index: list[int] = field(default_factory=list)  # into the profiles' levels
    bytes: list[int] = field(default_factory=list)  # the payload the decision sends (0: device only)
    codec: list[str | None] = field(default_factory=list)  # the decision's codec (None: device only)
    elapsed_s: float = 0.0  # simulated time from the first start to the last completion
    skipped: int | None = None  # --fps: frame ticks that passed while a request ran (dropped, not queued)

    def __len__(self) -> int:
        return len(self.latency_ms)


@dataclass
class SystemResult:
    name: str
    metrics: dict[str, Any]
    log: RequestLog
    engine: str = "python"  # the loop that ran it: "fast" (libjanus) or "python"


# --------------------------------------------------------------------------- simulation loops


STATIC_BASELINES = ("cloud-jpeg", "device-fast", "best-static")
ALL_SYSTEMS = (*SYSTEMS, *STATIC_BASELINES)


def _log(log: RequestLog, start: float, bw: float, est: float, d: Decision, lat: float) -> None:
    log.start_s.append(start)
    log.bw_mbps.append(bw)
    log.est_mbps.append(est)
    log.alpha.append(d.alpha if d.policy != "constant" else math.nan)
    log.split.append(d.split)
    log.latency_ms.append(lat)
    log.predicted_ms.append(d.predicted_ms)
    log.labels.append(d.label)
    log.accuracy.append(d.accuracy)
    log.level_index.append(d.level_index)
    log.bytes.append(d.bytes)
    log.codec.append(d.codec)


def request_start(ctrl: Controller, ping: Trace | None, cfg: SimConfig, t: float) -> tuple[Choice, float, float, float]:
    """A time-driven request starting at ``t`` (the simulator's and the fleet's one rule): the
    controller's choice, the edge's compute (head + encode, ms), when the payload starts up (s) and
    the exchange's RTT (the ping trace there or ``cfg.rtt_ms``, plus ``cfg.exchange_ms``)."""
    choice = ctrl.decide(t)
    bd = choice.decision.breakdown
    compute_edge = bd["edge_ms"] + bd["encode_ms"]
    send_t = t + compute_edge / 1e3
    rtt = (ping.value_at(send_t) if ping is not None else cfg.rtt_ms) + cfg.exchange_ms
    return choice, compute_edge, send_t, rtt


def _run_time_driven(ctrl: Controller, trace: Trace, ping: Trace | None, cfg: SimConfig,
                     tick: Callable[[int], None]) -> RequestLog:
    log = RequestLog()
    t, i = 0.0, 0
    limit, end = cfg.requests, trace.duration_s
    fps = cfg.fps
    probe_s = 0.0
    last_tick: int | None = None
    skipped = 0
    while (i < limit) if limit is not None else (t < end):
        if fps is not None:
            k = math.ceil(t * fps - 1e-9)
            skipped += 0 if last_tick is None else k - last_tick - 1
            last_tick, t = k, k / fps
        choice, compute_edge, send_t, rtt = request_start(ctrl, ping, cfg, t)
        d = choice.decision
        bd = d.breakdown
        if d.bytes > 0:
            tx = trace.transfer_time(send_t, d.bytes)
            lat = compute_edge + tx * 1e3 + rtt + bd["decode_ms"] + bd["cloud_ms"]
            policy = cfg.policy
            deadline = None if policy is None else policy.deadline_ms(cfg.sla_ms, compute_edge)
            if deadline is not None and lat > deadline:
                lat, obs = _cancelled(ctrl, trace, d, t, send_t, compute_edge, deadline)
            else:
                obs = Observation(t + lat / 1e3, "transfer", nbytes=d.bytes, seconds=tx, rtt_ms=rtt, server_ok=True)
            ctrl.observe(obs)
        else:
            lat = compute_edge + bd["decode_ms"] + bd["cloud_ms"]
            done = t + lat / 1e3
            if ctrl.probe_due(done) and cfg.probe_bytes:
                extra = cfg.exchange_ms if cfg.probe_exchange_ms is None else cfg.probe_exchange_ms
                probe_s, obs = _probe(trace, cfg, done, rtt - cfg.exchange_ms + extra)
                ctrl.observe(obs)
            elif ctrl.probe_due(done):
                ctrl.observe(Observation(done, "rate", mbps=trace.mean_rate(t, done),
                                         rtt_ms=rtt if ping is not None else None, server_ok=True, probe=True))
        _log(log, t, trace.value_at(send_t), choice.bandwidth_mbps, d, lat)
        t += lat / 1e3
        if d.bytes == 0 and probe_s:
            t += probe_s  # the next request starts once the probe is answered (not in this latency)
            probe_s = 0.0
        i += 1
        tick(i)
    log.elapsed_s = t
    log.skipped = skipped if fps is not None else None
    return log


def _probe(trace: Trace, cfg: SimConfig, t: float, rtt: float) -> tuple[float, Observation]:
    """The runtime's probe at ``t``: ``probe_bytes`` up the link and one RTT, cancelled (as an
    exchange) at ``max(SLA·timeout_factor, min_timeout_ms)``; (seconds it takes, what it shows)."""
    nbytes = float(cfg.probe_bytes)  # type: ignore[arg-type]  # probe_bytes is always set by the exchange policy here
    tx = trace.transfer_time(t, nbytes)
    took = tx + rtt / 1e3
    policy = cfg.policy
    if policy is not None:
        limit = policy.probe_timeout_ms(cfg.sla_ms) / 1e3
        if took > limit:
            crossed = min(nbytes, (trace.delivered_bits(t + limit) - trace.delivered_bits(t)) / 8.0)
            if crossed >= nbytes:
                return limit, Observation(t + limit, "server", server_ok=False, probe=True)
            if crossed > 0:
                return limit, Observation(t + limit, "transfer", nbytes=crossed, seconds=limit, probe=True)
            return limit, Observation(t + limit, "outage", probe=True)
    return took, Observation(t + took, "transfer", nbytes=nbytes, seconds=tx, rtt_ms=rtt, server_ok=True, probe=True)


def _cancelled(ctrl: Controller, trace: Trace, d: Decision, t: float, send_t: float, compute_edge: float,
               limit: float) -> tuple[float, Observation]:
    """The runtime's fallback: the exchange is cancelled ``limit`` ms after the request started and
    the level's remaining segments run on the edge; (latency, what the runtime observes)."""
    window_s = (limit - compute_edge) / 1e3
    crossed = min(float(d.bytes), (trace.delivered_bits(send_t + window_s) - trace.delivered_bits(send_t)) / 8.0)
    edge = ctrl.deploy.edge
    local = edge.total_ms(d.level_index) - edge.head_ms(d.level_index, d.split)
    done = t + limit / 1e3
    if crossed >= d.bytes:  # all of it crossed, the answer was late: the server's fault to the runtime
        obs = Observation(done, "server", server_ok=False)
    elif crossed > 0:
        obs = Observation(done, "transfer", nbytes=crossed, seconds=window_s)
    else:
        obs = Observation(done, "outage")
    return limit + local, obs


def _next_nonzero(samples: Sequence[float]) -> list[int]:
    """For each index, the index of the next sample > 0 at or after it (looping)."""
    n = len(samples)
    nxt = [-1] * n
    nearest = -1
    for k in range(2 * n - 1, -1, -1):
        if samples[k % n] > 0:
            nearest = k
        if k < n:
            nxt[k] = nearest
    return nxt


def _run_paper(ctrl: Controller, trace: Trace, ping: Trace | None, cfg: SimConfig,
               tick: Callable[[int], None]) -> RequestLog:
    log = RequestLog()
    samples = trace.samples
    n = len(samples)
    count = cfg.requests if cfg.requests is not None else n
    nxt = _next_nonzero(samples)
    dt = trace.interval_s
    elapsed = 0.0
    for i in range(count):
        k = i % n
        b = samples[k]
        choice = ctrl.decide(elapsed)
        d = choice.decision
        bd = d.breakdown
        lat = bd["edge_ms"] + bd["encode_ms"] + bd["decode_ms"] + bd["cloud_ms"]
        rtt = None
        if d.bytes > 0:
            bits = d.bytes * 8.0
            if b > 0:
                tx_ms = bits / (b * 1e6) * 1e3
            else:
                j = nxt[k]  # exists: simulate() refuses traces without a nonzero sample
                tx_ms = (j - k) * dt * 1e3 + bits / (samples[j % n] * 1e6) * 1e3
            rtt = ping.samples[i % len(ping)] if ping is not None else cfg.rtt_ms
            lat += tx_ms + rtt
        _log(log, elapsed, b, choice.bandwidth_mbps, d, lat)
        elapsed += lat / 1e3
        ctrl.observe(Observation(elapsed, "rate", mbps=b, rtt_ms=rtt))
        tick(i + 1)
    log.elapsed_s = elapsed
    return log


# --------------------------------------------------------------------------- metrics


def metrics(log: RequestLog, sla_ms: float, paper_mode: bool = False) -> dict[str, Any]:
    """The run report (:func:`janus_deploy.report.run_report`) of one simulated system.

    Throughput: time-driven, completed requests / simulated time. Paper mode has no time axis
    (each request sees its own sample), so it is the mean per-request rate ``mean(1 / latency)``:
    summing latencies instead would charge an outage's wait once per request inside it, and one
    request stuck for minutes on a 0.01 Mbit/s sample would dominate the whole trace.
    """
    report = _report(log.latency_ms, log.elapsed_s, log.labels, log.alpha, log.accuracy, log.predicted_ms,
                     log.bytes, sla_ms, paper_mode, log.skipped)
    report["mode_codec"] = choice_counts(log)
    return report


def _report(latency_ms: Sequence[float], elapsed_s: float, labels: Sequence[str], alphas: Sequence[float],
            accuracies: Sequence[float | None], predicted_ms: Sequence[float], sent_bytes: Sequence[float],
            sla_ms: float, paper_mode: bool, skipped: int | None = None) -> dict[str, Any]:
    """:func:`metrics` of a request log's columns (lists, or the fast engine's arrays);
    ``skipped``: with ``--fps``, the frame ticks that passed while a request ran."""
    lat = np.asarray(latency_ms, dtype=float)
    n = len(lat)
    if paper_mode:
        throughput = float(np.mean(1e3 / lat)) if n and lat.min() > 0 else None
    else:
        throughput = n / elapsed_s if elapsed_s > 0 else None
    rep = run_report(lat, sla_ms, throughput_rps=throughput, labels=labels, alphas=alphas,
                     accuracies=accuracies, predicted_ms=predicted_ms, sent_bytes=sent_bytes)
    if skipped is not None:  # --fps: the frames that passed while a request ran are dropped frames
        frames = n + skipped
        good = int(np.sum(lat <= sla_ms + 1e-9))
        rep.update(frames=frames, dropped=skipped, drop_ratio=skipped / frames if frames else None,
                   goodput_fps=good / elapsed_s if elapsed_s > 0 else None)
    return rep


def choice_counts(log: RequestLog) -> dict[str, int]:
    """How often each (mode, codec) was chosen: ``device-only``, ``cloud/<codec>`` (s = 0) or
    ``split/<codec>`` (0 < s ≤ N), most frequent first."""
    counts: dict[str, int] = {}
    for split, codec in zip(log.split, log.codec):
        key = "device-only" if codec is None else f"{'cloud' if split == 0 else 'split'}/{codec}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------- entry point


ProgressFn = Callable[[str, int, "int | None"], None]
PROGRESS_EVERY = 1000  # requests between progress calls


def _schedulers(edge: Profile, cloud: Profile, config: SimConfig, accuracy: Any) -> tuple[Scheduler, Scheduler | None]:
    try:
        deploy = Scheduler(edge, cloud, accuracy, mode="janus-deploy", codec=config.codec,
                           sla_ms=config.sla_ms, frame_bytes=config.frame_bytes, codecs=config.codecs)
        paper = (Scheduler(edge, cloud, accuracy, mode="paper", codec=config.codec,
                           sla_ms=config.sla_ms, frame_bytes=config.frame_bytes)
                 if "janus-paper" in config.systems else None)
    except SchedulerError as exc:
        raise SimulationError(str(exc)) from None
    return deploy, paper


def _check_inputs(trace: Trace, config: SimConfig, ping: Trace | None) -> None:
    config.validate()
    if ping is not None and ping.unit != "ms":
        raise SimulationError(f"the ping trace {ping.name} must hold RTTs in ms")
    if trace.unit != "Mbit/s":
        raise SimulationError(f"the bandwidth trace {trace.name} must be in Mbit/s")
    if max(trace.samples) <= 0:
        raise SimulationError(f"trace {trace.name} has no nonzero bandwidth sample")


@dataclass(frozen=True)
class RequestEstimate:
    """How many requests one system's run will be: ``low == high`` when known in advance
    (``requests`` given, paper mode, a single option that sends nothing); else, time-driven, each
    trace sample's seconds divided by the slowest and by the fastest per-request time among the
    options the system can choose at that sample's bandwidth (at least one frame interval with
    ``fps``), summed over one pass, with a 10 % allowance for requests that straddle samples.
    ``fastest_ms`` / ``slowest_ms``: the extremes of those per-request times over the trace."""

    system: str
    low: int
    high: int
    fastest_ms: float | None = None
    slowest_ms: float | None = None

    @property
    def exact(self) -> bool:
        return self.low == self.high


def _option_costs(sched: Scheduler, system: str, rtt_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """(ms that do not depend on the link, kbits sent) of every option ``system`` can choose: a
    latency at ``b`` Mbit/s is ``fixed + kbits / b`` (``fixed`` includes the RTT when sending)."""
    if system in ("device-only", "cloud-only", "mixed"):
        kinds = ["device-only", "cloud-only"] if system == "mixed" else [system]
        at = lambda bw: [sched.baseline(k, bw, rtt_ms).predicted_ms for k in kinds]  # noqa: E731 - a one-line named lambda reads better than a def here
    else:
        at = lambda bw: [sched.evaluate(li, o.split, bw, rtt_ms, codec=o.codec).predicted_ms  # noqa: E731 - a one-line named lambda reads better than a def here
                         for li in sched.janus_levels for o in sched.options]
    fixed = np.asarray(at(math.inf))
    return fixed, np.asarray(at(1.0)) - fixed  # at 1 Mbit/s, kbits cost kbits ms


def estimate_requests(trace: Trace, edge: Profile, cloud: Profile, config: SimConfig, *, accuracy: Any = None,
                      ping: Trace | None = None) -> dict[str, RequestEstimate]:
    """Per system, how many requests :func:`simulate` will run (see :class:`RequestEstimate`):
    cheap (a few cost-model evaluations per option), so a caller can say it before a long run."""
    _check_inputs(trace, config, ping)
    if config.requests is not None or config.paper_mode:
        n = config.requests if config.requests is not None else len(trace)
        return {s: RequestEstimate(s, n, n) for s in config.systems}
    deploy, paper = _schedulers(edge, cloud, config, accuracy)
    rtt = ping.median() if ping is not None else config.rtt_ms
    bws, counts = np.unique(np.asarray(trace.samples, dtype=float), return_counts=True)
    seconds = counts * trace.interval_s * 1e3  # ms of the trace at each distinct bandwidth
    out = {}
    for system in config.systems:
        fixed, kbits = _option_costs(paper if system == "janus-paper" else deploy, system, rtt)
        with np.errstate(divide="ignore", invalid="ignore"):
            lat = fixed[:, None] + np.where(kbits[:, None] > 0, kbits[:, None] / bws[None, :], 0.0)
        if config.fps:
            lat = np.ceil(lat * config.fps / 1e3 - 1e-9) * 1e3 / config.fps
        lat = np.maximum(lat, 1e-3)
        fast, slow = lat.min(axis=0), lat.max(axis=0)  # per distinct bandwidth; inf: waits out an outage
        high = float(np.sum(seconds / fast))
        low = float(np.sum(seconds / slow))
        finite = lambda a: a[np.isfinite(a)]  # noqa: E731 - a one-line named lambda reads better than a def here
        fastest = float(finite(fast).min()) if finite(fast).size else None
        slowest = float(finite(slow).max()) if finite(slow).size else None
        if len(fixed) == 1 and kbits[0] == 0:  # one option that sends nothing: a fixed time per request
            n = max(1, math.ceil(trace.duration_s * 1e3 / lat[0, 0]))
            out[system] = RequestEstimate(system, n, n, fastest, slowest)
        else:
            out[system] = RequestEstimate(system, max(1, math.floor(0.9 * low)), max(1, math.ceil(1.1 * high) + 1),
                                          fastest, slowest)
    return out


LONG_RUN_REQUESTS = 1_000_000
FAST_LONG_RUN_REQUESTS = 50_000_000  # the fast engine's threshold (it runs about a million requests a second)


def long_run_warning(estimates: dict[str, RequestEstimate], threshold: int | None = None) -> str | None:
    """One line when a system's pass may reach ``threshold`` requests (default
    :data:`LONG_RUN_REQUESTS`; None otherwise), saying how to shorten it."""
    threshold = LONG_RUN_REQUESTS if threshold is None else threshold
    big = [e for e in estimates.values() if e.high >= threshold]
    if not big:
        return None
    worst = max(big, key=lambda e: e.high)
    why = f" (its fastest option takes {worst.fastest_ms:.3g} ms)" if worst.fastest_ms is not None else ""
    return (f"one pass of {worst.system} may be up to {worst.high / 1e6:.1f} million requests{why}; shorten it "
            "with --requests N (e.g. --requests 10000) or a shorter trace window (--trace-seconds S, or --run N "
            "for one run of a 5G/LTE file)")


def engine_for(config: SimConfig, engine: str = "fast") -> tuple[str, str | None]:
    """(the loop that runs ``config``, why not the fast one): ``engine`` "fast" runs libjanus's
    loop (:mod:`janus_deploy.sim.fast`) where it models every setting of ``config``, else the
    Python loop with the reason (also logged); "python" always runs the Python loop."""
    from janus_deploy.sim import fast

    if engine not in fast.ENGINES:
        raise SimulationError(f"unknown engine {engine!r}; choose one of {', '.join(fast.ENGINES)}")
    if engine == "python":
        return "python", None
    why = fast.unsupported(config)
    if why is not None:
        fast.log.info("simulate: %s; the Python loop runs", why)
        return "python", why
    return "fast", None


def simulate(trace: Trace, edge: Profile, cloud: Profile, config: SimConfig, *,
             accuracy: Any = None, ping: Trace | None = None, progress: ProgressFn | None = None,
             jobs: int = 1, engine: str = "fast") -> dict[str, SystemResult]:
    """Run every system of ``config`` over ``trace``; results keyed by system name.
    ``progress(system, done, total)`` is called every :data:`PROGRESS_EVERY` requests and when a
    system finishes (``total`` is None while unknown: time-driven runs without ``requests``; the
    fast engine calls it only when a system finishes).
    ``jobs`` > 1 runs the systems in that many processes (each system's run is independent: the
    same results as one at a time; ``progress`` is then called only when a system finishes).
    ``engine``: "fast" (default: libjanus's loop, the same decisions bit for bit, the Python loop
    where it does not apply: :func:`engine_for`) or "python"; each result says which ran."""
    _check_inputs(trace, config, ping)
    if jobs < 1:
        raise SimulationError(f"--jobs must be >= 1, got {jobs}")
    engine = engine_for(config, engine)[0]
    if jobs > 1 and len(config.systems) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(jobs, len(config.systems))) as pool:
            futures = {s: pool.submit(_simulate_system, trace, edge, cloud, config, accuracy, ping, s, None, engine)
                       for s in config.systems}
            results = {}
            for system, fut in futures.items():
                results[system] = fut.result()
                if progress is not None:
                    progress(system, len(results[system].log), len(results[system].log))
        return results
    tables: dict[str, bytes] = {}  # the fast engine's decision table, built once for every system
    return {s: _simulate_system(trace, edge, cloud, config, accuracy, ping, s, progress, engine, tables)
            for s in config.systems}


def _fast_run(trace: Trace, ping: Trace | None, edge: Profile, cloud: Profile, config: SimConfig, accuracy: Any,
              ctrl_config: ControllerConfig, deploy: Scheduler,
              tables: dict[str, bytes] | None) -> tuple[RequestLog, dict[str, Any]] | None:
    """One system's RequestLog and report from libjanus's loop (None: it refused; the reason is
    logged); the report is made from the loop's arrays (the same numbers as from the lists)."""
    from janus_deploy.sim import fast

    out = fast.run_system(trace, ping, edge, cloud, config, accuracy, ctrl_config, deploy, tables)
    if out is None:
        return None
    cols, elapsed = out
    per = fast.decision_columns(cols, deploy)
    skipped = fast.skipped_frames(cols["start_s"], config.fps) if config.fps is not None else None
    report = _report(cols["latency_ms"], elapsed, per["labels"], per["alpha"], per["accuracy"], cols["predicted_ms"],
                     cols["bytes"], config.sla_ms, config.paper_mode, skipped)
    log = RequestLog(start_s=cols["start_s"].tolist(), bw_mbps=cols["bw_mbps"].tolist(),
                     est_mbps=cols["est_mbps"].tolist(), alpha=per["alpha"], split=cols["split"].tolist(),
                     latency_ms=cols["latency_ms"].tolist(), predicted_ms=cols["predicted_ms"].tolist(),
                     labels=per["labels"], accuracy=per["accuracy"], level_index=cols["level_index"].tolist(),
                     bytes=cols["bytes"].tolist(), codec=per["codec"], elapsed_s=elapsed, skipped=skipped)
    report["mode_codec"] = choice_counts(log)
    return log, report


def _simulate_system(trace: Trace, edge: Profile, cloud: Profile, config: SimConfig, accuracy: Any,
                     ping: Trace | None, system: str, progress: ProgressFn | None = None,
                     engine: str = "python", tables: dict[str, bytes] | None = None) -> SystemResult:
    """One system's run of :func:`simulate` (a top-level function: it runs in worker processes);
    ``engine`` as :func:`engine_for` resolved it; ``tables``: the run's decision-table cache."""
    deploy, paper = _schedulers(edge, cloud, config, accuracy)
    ctrl_config = config.controller if config.cold_start_mbps is None else \
        config.controller.with_(cold_start_mbps=config.cold_start_mbps)
    ctrl_config = ctrl_config.for_trace(trace)
    rtt_cold = ping.median() if ping is not None else config.rtt_ms
    if config.paper_mode:
        total = config.requests if config.requests is not None else len(trace)
    else:
        total = config.requests
    runner = _run_paper if config.paper_mode else _run_time_driven
    static = system in STATIC_BASELINES  # a fixed option; its controller runs as janus-deploy's
    ctrl_config = ctrl_config.with_(system="janus-deploy" if static else system, rtt_cold_ms=rtt_cold)
    if config.streams is not None:
        from janus_deploy.sim.streams import simulate_streams_system

        return simulate_streams_system(_controller(system, deploy, ctrl_config, paper, trace, config, rtt_cold),
                                       trace, ping, config, system, progress)
    done = (_fast_run(trace, ping, edge, cloud, config, accuracy, ctrl_config, deploy, tables)
            if engine == "fast" and not static else None)
    if done is not None:
        log, report = done
    else:
        ctrl = _controller(system, deploy, ctrl_config, paper, trace, config, rtt_cold)

        def tick(i: int) -> None:
            if progress is not None and i % PROGRESS_EVERY == 0:
                progress(system, i, total)

        log = runner(ctrl, trace, ping, config, tick)
        report = metrics(log, config.sla_ms, config.paper_mode)
    if progress is not None:
        progress(system, len(log), len(log))
    return SystemResult(system, report, log, "fast" if done is not None else "python")


def _controller(system: str, deploy: Scheduler, ctrl_config: ControllerConfig, paper: Scheduler | None,
                trace: Trace, config: SimConfig, rtt_cold: float) -> Controller:
    """The controller of one simulated system: a static baseline's fixed option, else the real one."""
    if system in STATIC_BASELINES:
        option = static_option(system, deploy, trace, config, rtt_cold)
        return _StaticController(deploy, ctrl_config, option)
    return Controller(deploy, ctrl_config, paper)


# --------------------------------------------------------------------------- static baselines


StaticOption = tuple[int, int, "str | None"]  # (profile level index, split, codec)


class _StaticController(Controller):
    """A controller whose decision is one fixed option (the static baselines): the estimator,
    RTT tracker and breaker run as for any system; while offloading is off it runs device-only."""

    def __init__(self, deploy: Scheduler, config: ControllerConfig, option: StaticOption) -> None:
        super().__init__(deploy, config)
        self.option = option

    def decide(self, t: float, **waits: Any) -> Any:
        choice = super().decide(t, **waits)
        li, split, codec = self.option
        if choice.reason != "scheduler":
            split, codec = self.deploy.candidates[-1], None
        choice.decision = self.deploy.evaluate(li, split, choice.bandwidth_mbps, choice.rtt_ms, codec=codec)
        return choice


def static_option(system: str, sched: Scheduler, trace: Trace, config: SimConfig, rtt_ms: float) -> StaticOption:
    """The fixed option of a static baseline (module docstring)."""
    n1 = sched.candidates[-1]
    if system == "cloud-jpeg":
        li = sched.janus_levels[0]
        try:
            sched.evaluate(li, 0, 1.0, codec=config.jpeg_codec)
        except SchedulerError as exc:
            raise SimulationError(f"cloud-jpeg: {exc} (profile the plan with the JPEG codecs, or drop cloud-jpeg)") from None
        return li, 0, config.jpeg_codec
    levels = sorted(set(sched.janus_levels) | ({sched.baseline_level_index} - {None}))  # type: ignore[arg-type]  # None removed
    if system == "device-fast":
        acc = {li: sched.level_accuracy(li) for li in levels}
        known = [a for a in acc.values() if a is not None]
        if not known:
            return sched.janus_levels[0], n1, None
        keep = [li for li in levels if acc[li] is not None and acc[li] >= max(known) - config.keep_accuracy - 1e-12]
        return min(keep, key=lambda li: (sched.edge.total_ms(li), li)), n1, None
    return _best_static(sched, levels, trace, config, rtt_ms)


def _best_static(sched: Scheduler, levels: list[int], trace: Trace, config: SimConfig, rtt_ms: float) -> StaticOption:
    options: list[StaticOption] = [(li, o.split, o.codec) for li in levels for o in sched.options]
    if config.jpeg_codec and sched.janus_levels:
        try:
            sched.evaluate(sched.janus_levels[0], 0, 1.0, codec=config.jpeg_codec)
            options += [(li, 0, config.jpeg_codec) for li in levels if (li, 0, config.jpeg_codec) not in options]
        except SchedulerError:
            pass
    fixed, kbits, acc = [], [], []
    for li, split, codec in options:
        d_inf = sched.evaluate(li, split, math.inf, rtt_ms, codec=codec)
        fixed.append(d_inf.predicted_ms)
        kbits.append(d_inf.bytes * 8 / 1e3)
        acc.append(-1.0 if d_inf.accuracy is None else d_inf.accuracy)
    f, kb = np.asarray(fixed)[:, None], np.asarray(kbits)[:, None]
    bw = np.asarray(trace.samples, dtype=float)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        lat = f + np.where(kb > 0, kb / bw, 0.0)  # an outage sample: inf wherever bytes are sent
    violations = (lat > config.sla_ms).sum(axis=1)
    mean_lat = np.where(np.isfinite(lat), lat, 1e12).mean(axis=1)
    k = min(range(len(options)), key=lambda i: (violations[i], -acc[i], mean_lat[i], i))
    return options[k]


# --------------------------------------------------------------------------- replay


def replay(ctrl: Controller,
           steps: Iterable[tuple[float, DecisionRecord | Mapping[str, Any] | None, Sequence[Observation]]]
           ) -> dict[str, Any]:
    """Feed recorded requests to ``ctrl``, as the simulator feeds its own: per step ``(t,
    recorded decision or None, observations made after it)``, decide at ``t``, compare with the
    recorded (level, split, codec), then observe. Returns counts and the first mismatches. A
    recorded decision is a run log's :class:`DecisionRecord` or a mapping with its ``policy``,
    ``alpha``, ``split`` (and optionally ``codec``)."""
    total = same = 0
    mismatches: list[dict[str, Any]] = []
    for t, recorded, observations in steps:
        d = ctrl.decide(t).decision
        if recorded is not None:
            total += 1
            got = {"policy": d.policy, "alpha": d.alpha, "split": d.split, "codec": d.codec}
            rec = recorded.model_dump() if isinstance(recorded, DecisionRecord) else dict(recorded)
            codec_same = rec.get("codec") is None or d.codec is None or rec["codec"] == d.codec
            if (rec["policy"], rec["split"]) == (d.policy, d.split) and codec_same and \
                    math.isclose(rec["alpha"], d.alpha, rel_tol=0, abs_tol=1e-9):
                same += 1
            elif len(mismatches) < 10:
                mismatches.append({"t": t, "recorded": rec, "replayed": got})
        for obs in observations:
            ctrl.observe(obs)
    return {"requests": total, "decisions_reproduced": (same / total) if total else None,
            "mismatches": mismatches}


def replay_steps(records: Iterable[RequestRecord]) -> list[tuple[float, DecisionRecord | None, list[Observation]]]:
    """A run log's records as :func:`replay`'s steps (forced requests observed, not compared)."""
    return [(r.t, r.decision if r.replayed else None, list(r.observations)) for r in records]


def replay_log(path: Any, *, partial: bool = False) -> dict[str, Any]:
    """Replay a run log (``run --log``, the demo's ``requests.jsonl``): read and check it whole
    (:func:`janus_deploy.schedule.runlog.read_run_log`: every record, ids, trailer, checksum),
    rebuild the controller from its header (settings, profiles, accuracy table, SLA, codec) and
    feed it the recorded observations through :func:`replay`. ``partial``: a log without its
    trailer (a killed run) is replayed as far as it goes (``complete`` is then False)."""
    from janus_deploy.profile.table import profile_from_dict
    from janus_deploy.schedule.controller import build_controller

    log = read_run_log(path, partial=partial)
    h = log.header
    edge = profile_from_dict(h.edge_profile, where="run log edge_profile")
    cloud = profile_from_dict(h.cloud_profile, where="run log cloud_profile")
    try:
        config = ControllerConfig.from_dict(h.controller)
        ctrl = build_controller(edge, cloud, config, accuracy=h.accuracy, sla_ms=h.sla_ms, codec=h.codec,
                                codecs=h.codecs)
    except (ControllerError, TypeError, ValueError) as exc:
        raise RunLogError(f"{path}: the run log header's controller settings cannot rebuild the controller: {exc}") from None
    from janus_deploy.sim.streams import is_pipelined_log, replay_pipelined

    out = replay_pipelined(ctrl, log.records) if is_pipelined_log(log.records) else replay(ctrl, replay_steps(log.records))
    out["log_requests"] = len(log.records)
    out["complete"] = log.complete
    out["plan_hash"] = h.plan_hash
    return out
