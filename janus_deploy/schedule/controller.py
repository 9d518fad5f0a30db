"""The one control loop around the scheduler, driven by the simulator and the edge runtime alike.

A :class:`Controller` owns everything between "what did the last requests observe" and "what
does this request do": the bandwidth estimator, the RTT tracker, the deflation of the estimate
by its recent error, the SLA margin, the choice of system (janus-deploy, janus-paper and the
baselines), server health (a circuit breaker) and when to probe. Callers feed it
:class:`Observation` s after each request and ask :meth:`Controller.decide` before the next one.

* the **simulator** (:mod:`janus_deploy.sim.simulator`) makes observations from a trace;
* the **edge runtime** (:mod:`janus_deploy.runtime.edge`) makes them from real exchanges and
  writes them into its request log;
* **replay** (:func:`janus_deploy.sim.simulator.replay`) feeds a log's observations back.

Decisions depend only on the observations and their times (``t``, seconds on the caller's
clock), never on the wall clock, so the same sequence gives the same decisions on every path.

Server health: a timeout after the whole body left, a 5xx answer or an unreadable answer counts
against the *server* (never against the link: the estimator learns only from link samples).
After ``breaker_failures`` consecutive such failures the breaker opens: every request runs
device-only, and after ``breaker_open_s`` a probe is due (:meth:`Controller.probe_due`); a
probe that the server answers closes the breaker, one that fails re-opens it for twice as long
(at most ``breaker_max_open_s``). A 401/403 answer disables offloading for good: it is a
configuration error (wrong or missing token), reported once (:attr:`Controller.config_error`).

Probes (with ``probe_interval_s`` set) and the cold start: before its first link sample the
controller does not know the link (the cold-start estimate is a long-run mean, not what the link
does now: sent into a trace's start it met 0.01 Mbit/s or a 220 ms RTT), so janus-deploy runs the
request on the device when the device alone is predicted within the SLA's budget, and a probe is
due at once. After a surprise (the last link sample was an outage, or the estimate standing before
it missed it by half of the sample or more, so that the deflation cuts the bandwidth by a third
or more; an outage keeps the harmonic estimate at 0 until ``window`` samples have replaced it) a
probe is due :data:`OUTAGE_PROBE_S` after it, then after twice as long at every further surprise,
up to ``probe_interval_s``: the LTE trace's dips last a few hundred ms, the interval is 2 s.
A probe that finds the link up while the estimate (the outage's 0 still in the window, stale low
samples) or the bandwidth the scheduler gets (deflated by the error of a dip the link has left)
is under half its sample makes another one due at once, and the burst goes on until it has made
``window`` samples (at most ``window`` times in a row): the
windows then hold only new samples (without it, a dip kept the edge on the device until
``window`` probes at ``probe_interval_s`` had flushed it: 10 s). The deflation divides by
1 + the largest *overshoot* of the last ``window`` estimates made from samples
(:meth:`Estimator.overshoot_error`): an estimate above what the link gave makes a request late,
one below only keeps the edge on the device; counted both ways, the undershoot of an estimate of
0 (or of a dip's samples) against a link that had come back (a relative error of up to 1) halved
its bandwidth for ``window`` more samples; the cold-start guess is no estimate. Otherwise a probe
is due when no link sample has arrived for ``probe_interval_s``.

Server load: answers that report the server's own time (an :class:`Observation`'s ``server_ms``
next to the profile's ``expected_ms``) feed a :class:`~janus_deploy.schedule.cloud_load.CloudLoad`,
whose estimate every decision adds to the cloud's share of each option (``cloud_load``:
``extra``, ``factor`` or ``off``, the load-unaware controller). Without such answers (the
simulator of one edge, an old log) the load stays neutral and decisions are the profile's.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from janus_deploy import JanusError
from janus_deploy.schedule.cloud_load import CLOUD_LOAD_MODES, CloudLoad
from janus_deploy.schedule.estimators import ESTIMATORS, Estimator, EstimatorError, make_estimator
from janus_deploy.schedule.scheduler import Decision, Scheduler, SchedulerError

SYSTEMS = ("device-only", "cloud-only", "mixed", "janus-paper", "janus-deploy")
RTT_ESTIMATES = ("max", "median")
COLD_START_MBPS = 100.0  # the cold start when no trace is known (ControllerConfig.for_trace)
OUTAGE_PROBE_S = 0.25  # after an outage (or a surprise), the first probe this soon, doubling up to probe_interval_s
OBSERVATION_KINDS = ("transfer", "rate", "outage", "server", "unauthorized")


class ControllerError(JanusError):
    """Bad controller settings or observations."""


@dataclass(frozen=True)
class ControllerConfig:
    """Settings of the control loop; the defaults are what ``run``, ``demo`` and ``simulate`` use.

    ``margin``: fraction of the SLA held back (janus-deploy). ``deflate``: divide the bandwidth
    estimate by ``1 + recent error`` (janus-deploy; not for estimators that already discount
    their error). ``rtt_window``/``rtt_estimate``: the RTT estimate is the max (conservative) or
    median of the last ``rtt_window`` RTT samples, ``rtt_cold_ms`` until one is seen; ``rtt_fixed``
    keeps ``rtt_cold_ms`` whatever is observed. ``cloud_load``/``cloud_window``/``cloud_half_life_s``:
    the server-load estimate (:mod:`janus_deploy.schedule.cloud_load`; ``off``: load-unaware).
    ``probe_interval_s``: when no link sample has
    arrived for this long, a probe is due (None: never). ``breaker_*``: server health (module
    docstring; ``breaker_failures`` 0 turns the breaker off). ``cold_start_mbps``: the bandwidth
    assumed before the first link sample; None (the default) means the cold-start rule of
    :meth:`for_trace`: the trace's mean when a trace with a mean > 0 is known ("seen offline"),
    else :data:`COLD_START_MBPS`. The :class:`Controller` resolves it, so what it runs with (and
    what a run log's header records) is always a number.
    """

    system: str = "janus-deploy"
    estimator: str = "harmonic"
    window: int = 5
    cold_start_mbps: float | None = None
    margin: float = 0.1
    deflate: bool = True
    rtt_cold_ms: float = 0.0
    rtt_fixed: bool = False
    rtt_window: int = 5
    rtt_estimate: str = "max"
    probe_interval_s: float | None = 2.0
    breaker_failures: int = 3
    breaker_open_s: float = 1.0
    breaker_max_open_s: float = 30.0
    cloud_load: str = "factor"
    cloud_window: int = 5
    cloud_half_life_s: float = 4.0

    def validate(self) -> ControllerConfig:
        def bad(msg: str) -> ControllerError:
            return ControllerError(msg)

        if self.system not in SYSTEMS:
            raise bad(f"unknown system {self.system!r}; choose one of {', '.join(SYSTEMS)}")
        if self.estimator not in ESTIMATORS:
            raise bad(f"unknown estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        if self.cold_start_mbps is not None and not (math.isfinite(self.cold_start_mbps)
                                                     and self.cold_start_mbps > 0):
            raise bad(f"the cold-start bandwidth must be > 0 Mbit/s, got {self.cold_start_mbps}")
        if not 0 <= self.margin < 1:
            raise bad(f"--margin must be in [0, 1), got {self.margin}")
        if not (math.isfinite(self.rtt_cold_ms) and self.rtt_cold_ms >= 0):
            raise bad(f"--rtt must be >= 0 ms, got {self.rtt_cold_ms}")
        if self.rtt_estimate not in RTT_ESTIMATES:
            raise bad(f"unknown RTT estimate {self.rtt_estimate!r}; choose one of {', '.join(RTT_ESTIMATES)}")
        if self.rtt_window < 1 or self.window < 1:
            raise bad("the estimator and RTT windows must be >= 1")
        if self.probe_interval_s is not None and not self.probe_interval_s > 0:
            raise bad(f"the probe interval must be > 0 s (or None), got {self.probe_interval_s}")
        if self.breaker_failures < 0 or not 0 < self.breaker_open_s <= self.breaker_max_open_s:
            raise bad("breaker settings: failures >= 0 and 0 < open_s <= max_open_s")
        if self.cloud_load not in CLOUD_LOAD_MODES:
            raise bad(f"unknown cloud-load mode {self.cloud_load!r}; choose one of {', '.join(CLOUD_LOAD_MODES)}")
        if self.cloud_window < 1 or not (math.isfinite(self.cloud_half_life_s) and self.cloud_half_life_s > 0):
            raise bad("cloud-load settings: window >= 1 and half-life > 0 s")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ControllerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known}).validate()

    def with_(self, **changes: Any) -> ControllerConfig:
        return replace(self, **changes).validate()

    def for_trace(self, trace: Any = None) -> ControllerConfig:
        """The cold-start rule, its one home: a cold start given explicitly is kept; else the
        mean of ``trace`` (anything with ``mean()``: the bandwidth the run will see, known
        offline) when it is > 0; else :data:`COLD_START_MBPS`."""
        if self.cold_start_mbps is not None:
            return self.validate()
        mean = float(trace.mean()) if trace is not None else 0.0
        return self.with_(cold_start_mbps=mean if math.isfinite(mean) and mean > 0 else COLD_START_MBPS)


@dataclass(frozen=True)
class Observation:
    """What one exchange (or probe, or trace sample) taught the controller.

    ``kind``: ``transfer`` (``nbytes`` crossed the uplink in ``seconds``: a link sample, also
    what got through before a deadline), ``rate`` (a directly observed throughput ``mbps``),
    ``outage`` (nothing got through), ``server`` (the link worked, the server did not answer
    usably: only ``server_ok`` counts) or ``unauthorized`` (401/403). ``rtt_ms``: an RTT sample,
    if the exchange gave one. ``server_ok``: True when the server answered usably, False when it
    failed after the upload (timeout, 5xx, unreadable answer), None when this says nothing about
    the server. ``server_ms``: the time the server reported for this request (or, on a timeout
    after the whole upload, the least it took), next to ``expected_ms``, what the profile expects
    it to spend on the same option idle (:meth:`Scheduler.server_ms`); both None when unknown.
    ``server_compute_ms``: the part of ``server_ms`` the server reports as its decode + tail (the
    built-in server's ``janus_decode_ms + janus_compute_ms``; None when it does not say), so that
    the load's proportional and fixed parts are learnt apart (:mod:`~janus_deploy.schedule.cloud_load`).
    """

    t: float
    kind: str
    nbytes: float = 0.0
    seconds: float = 0.0
    mbps: float | None = None
    rtt_ms: float | None = None
    server_ok: bool | None = None
    probe: bool = False
    server_ms: float | None = None
    expected_ms: float | None = None
    server_compute_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field that is set (None left out); zeros and False are values here (an RTT
        sample of 0 ms, a failed server) and must survive the log."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Observation:
        if d.get("kind") not in OBSERVATION_KINDS:
            raise ControllerError(f"observation kind {d.get('kind')!r} is not one of {', '.join(OBSERVATION_KINDS)}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Choice:
    """A decision and the controller state it was made from (logged per request)."""

    decision: Decision
    estimate_mbps: float  # the estimator's raw estimate
    bandwidth_mbps: float  # what the scheduler was given (deflated; 0 while offloading is off)
    rtt_ms: float
    recent_error: float  # what the deflation divides by, 1 + this (Estimator.overshoot_error; robustmpc: its own)
    reason: str  # "scheduler", "breaker-open", "unauthorized"
    cloud_factor: float = 1.0  # the server load the decision was made with (cloud_load)
    cloud_extra_ms: float = 0.0

    def state(self) -> dict[str, Any]:
        return {"estimate_mbps": round(self.estimate_mbps, 4), "bandwidth_mbps": round(self.bandwidth_mbps, 4),
                "rtt_ms": round(self.rtt_ms, 3), "recent_error": round(self.recent_error, 4),
                "reason": self.reason, "cloud_factor": round(self.cloud_factor, 4),
                "cloud_extra_ms": round(self.cloud_extra_ms, 3)}


class _RttTracker:
    def __init__(self, cold_ms: float, window: int, stat: str) -> None:
        self.cold = cold_ms
        self.use_max = stat == "max"
        self.buf: deque[float] = deque(maxlen=window)

    def add(self, v: float) -> None:
        self.buf.append(float(v))

    def estimate(self) -> float:
        if not self.buf:
            return self.cold
        if self.use_max:
            return max(self.buf)
        s = sorted(self.buf)
        m = len(s) // 2
        return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float | None = None  # None: closed
    open_s: float = 0.0
    opened: int = 0  # times it opened (reported)


class Controller:
    """Estimator + RTT tracker + server health around a :class:`Scheduler` (module docstring).

    ``deploy``: the janus-deploy scheduler (also the baselines'); ``paper``: the paper-mode one,
    needed only for ``system="janus-paper"``.
    """

    def __init__(self, deploy: Scheduler, config: ControllerConfig = ControllerConfig(),
                 paper: Scheduler | None = None, estimator: Estimator | None = None) -> None:
        self.config = config = config.for_trace(None)  # an unresolved cold start: the default
        if config.system == "janus-paper" and paper is None:
            raise ControllerError("the janus-paper system needs a paper-mode scheduler")
        if deploy.mode != "janus-deploy":
            raise ControllerError("the controller's main scheduler must be in janus-deploy mode")
        self.deploy, self.paper = deploy, paper
        assert config.cold_start_mbps is not None  # for_trace resolved it
        try:
            self.estimator = estimator or make_estimator(config.estimator, config.cold_start_mbps,
                                                         window=config.window)
        except EstimatorError as exc:
            raise ControllerError(str(exc)) from None
        self.rtt = _RttTracker(config.rtt_cold_ms, config.rtt_window, config.rtt_estimate)
        self.cloud = CloudLoad(config.cloud_load, config.cloud_window, config.cloud_half_life_s)
        self.breaker = _Breaker()
        self.config_error: str | None = None
        self._last_link_t: float | None = None
        self._probe_again = False
        self._surprises = 0  # consecutive link samples that were outages or missed by half or more
        self._reprobes = 0  # probes in a row that made another one due at once
        self.observations = 0

    # ------------------------------------------------------------------ decide
    def rtt_estimate(self) -> float:
        return self.config.rtt_cold_ms if self.config.rtt_fixed else self.rtt.estimate()

    def scheduler_bandwidth(self) -> float:
        """The bandwidth (Mbit/s) :meth:`decide` gives the scheduler now: the estimate, deflated by
        its recent error (janus-deploy), 0 while offloading is off; the pipeline's uplink wait is
        predicted at it."""
        if not self.offloading:
            return 0.0
        return self._deflated(self.estimator.estimate())

    def _deflated(self, est: float) -> float:
        cfg = self.config
        if cfg.system == "janus-deploy" and cfg.deflate and not self.estimator.discounts_error:
            return est / (1.0 + self.estimator.overshoot_error())
        return est

    @property
    def cold(self) -> bool:
        """True before the first link sample while probes are on (janus-deploy): the request then
        runs on the device if that alone meets the budget, and a probe is due (module docstring)."""
        return (self._last_link_t is None and self.config.probe_interval_s is not None
                and self.config.system == "janus-deploy")

    @property
    def offloading(self) -> bool:
        """False while the breaker is open (until a probe succeeds) or after a 401/403."""
        return self.config_error is None and self.breaker.open_until is None

    def decide(self, t: float, *, edge_wait_ms: float = 0.0, uplink_wait_ms: float = 0.0,
               sla_ms: float | None = None) -> Choice:
        """The decision for a request starting at ``t``. ``edge_wait_ms``/``uplink_wait_ms``: the
        pipeline's waits for this frame and ``sla_ms`` its stream's SLA
        (:meth:`Scheduler.decide`; janus-deploy only: the baselines and Algorithm 1 ignore them)."""
        cfg = self.config
        est = self.estimator.estimate()
        err = self.estimator.recent_error() if self.estimator.discounts_error else self.estimator.overshoot_error()
        rtt = self.rtt_estimate()
        bw = self.scheduler_bandwidth()
        cold_bw, bw = bw, (0.0 if self.cold else bw)  # the cold start: the device, if it meets the budget
        reason = "scheduler" if self.offloading else ("unauthorized" if self.config_error else "breaker-open")
        factor, extra = self.cloud.estimate(t)
        try:
            if cfg.system in ("device-only", "cloud-only", "mixed"):
                system = "device-only" if reason != "scheduler" else cfg.system
                d = self.deploy.baseline(system, bw, rtt, cloud_factor=factor, cloud_extra_ms=extra)
            elif cfg.system == "janus-paper":
                d = self.paper.decide(bw)  # type: ignore[union-attr]  # self.paper is set whenever system is janus-paper
            else:
                d = self.deploy.decide(bw, rtt, cfg.margin, edge_wait_ms=edge_wait_ms,
                                       uplink_wait_ms=uplink_wait_ms, sla_ms=sla_ms,
                                       cloud_factor=factor, cloud_extra_ms=extra)
                budget = (self.deploy.sla_ms if sla_ms is None else sla_ms) * (1.0 - cfg.margin)
                if self.cold and not d.predicted_ms <= budget:
                    bw = cold_bw  # the device alone misses the budget: the cold-start estimate
                    d = self.deploy.decide(bw, rtt, cfg.margin, edge_wait_ms=edge_wait_ms,
                                           uplink_wait_ms=uplink_wait_ms, sla_ms=sla_ms,
                                           cloud_factor=factor, cloud_extra_ms=extra)
        except SchedulerError as exc:
            raise ControllerError(str(exc)) from None
        return Choice(d, est, bw, rtt, err, reason, factor, extra)

    def expected_server_ms(self, decision: Decision) -> float:
        """What the profile expects the server to spend on ``decision``'s option when idle (the
        ``expected_ms`` of the observation its answer makes)."""
        return self.deploy.server_ms(decision.level_index, decision.split, decision.codec)

    # ------------------------------------------------------------------ feedback
    def observe(self, obs: Observation) -> float | None:
        """Learn from one observation; returns the link sample in Mbit/s it gave (None: none)."""
        self.observations += 1
        sample: float | None = None
        prior = self.estimator.estimate()  # what this observation's link sample is measured against
        try:
            if obs.kind == "transfer":
                sample = self.estimator.observe(obs.nbytes, obs.seconds)
            elif obs.kind == "rate":
                self.estimator.observe_rate(float(obs.mbps))  # type: ignore[arg-type]  # a rate observation always carries mbps
                sample = float(obs.mbps)  # type: ignore[arg-type]  # a rate observation always carries mbps
            elif obs.kind == "outage":
                self.estimator.observe_rate(0.0)
                sample = 0.0
            elif obs.kind == "unauthorized":
                self.config_error = self.config_error or "the server refused the credentials (401/403)"
            elif obs.kind != "server":
                raise ControllerError(f"unknown observation kind {obs.kind!r}")
        except EstimatorError as exc:
            raise ControllerError(f"bad observation {obs}: {exc}") from None
        if sample is not None:
            self._last_link_t = obs.t
            # a surprise: an outage, or a sample the standing estimate missed by half of it or more (the
            # deflation then cuts the bandwidth by a third or more); probes then come soon (probe_due)
            surprise = sample == 0 or abs(prior - sample) >= 0.5 * sample
            self._surprises = self._surprises + 1 if surprise else 0
            # the link answers but the estimate (stale low samples, an outage's 0) or the bandwidth the
            # scheduler gets (deflated by a dip's error) is under half of it: probe again, and once such a
            # burst started, go on until it made `window` samples (then the windows hold only the new
            # samples: a burst that stopped as soon as the bandwidth passed half the sample left the
            # dip's error in the window, deflating it by 1.8x for another probe interval, 3 s of the demo)
            low = min(self.estimator.estimate(), self.scheduler_bandwidth()) < 0.5 * sample
            burst = 0 < self._reprobes < self.config.window - 1  # this burst has not yet made `window` samples
            self._probe_again = bool(obs.probe and sample > 0 and (low or burst) and self._reprobes < self.config.window)
            self._reprobes = self._reprobes + 1 if self._probe_again else 0
        if obs.rtt_ms is not None and math.isfinite(obs.rtt_ms) and obs.rtt_ms >= 0:
            self.rtt.add(obs.rtt_ms)
        if obs.server_ok is not None:
            self._server(obs.t, obs.server_ok, obs.probe)
        if obs.server_ms is not None and obs.expected_ms is not None:
            self.cloud.observe(obs.t, float(obs.server_ms), float(obs.expected_ms),
                               None if obs.server_compute_ms is None else float(obs.server_compute_ms))
        return sample

    def _server(self, t: float, ok: bool, probe: bool) -> None:
        cfg, b = self.config, self.breaker
        if cfg.breaker_failures == 0:
            return
        if ok:
            b.failures, b.open_until, b.open_s = 0, None, 0.0
            return
        if b.open_until is not None and not probe:
            return  # an exchange in flight when the breaker opened (pipelined runs): nothing new
        b.failures += 1
        if b.open_until is not None:  # a failed probe while open: back off
            b.open_s = min(b.open_s * 2, cfg.breaker_max_open_s)
            b.open_until = t + b.open_s
        elif b.failures >= cfg.breaker_failures:
            b.open_s = cfg.breaker_open_s
            b.open_until = t + b.open_s
            b.opened += 1

    def probe_due(self, t: float) -> bool:
        """Should the caller probe the server after the request at ``t``? While the breaker is
        open: once its open time is over. Otherwise (probes on): before the first link sample
        (janus-deploy); at once after a probe that found the link up while the estimate or the
        deflated bandwidth is under half its sample (at most ``window`` in a row); after a
        surprise (an outage, or a sample the estimate missed by half of it or more),
        :data:`OUTAGE_PROBE_S` after it, doubling per further one up to ``probe_interval_s``; else when no link sample has
        arrived for ``probe_interval_s`` (e.g. every request ran device-only)."""
        if self.config_error is not None:
            return False
        if self.breaker.open_until is not None:
            return t >= self.breaker.open_until
        interval = self.config.probe_interval_s
        if interval is None:
            return False
        last = self._last_link_t
        if self._probe_again or self.cold:
            return True
        if last is None:
            last = 0.0
        if self._surprises:
            interval = min(interval, OUTAGE_PROBE_S * 2.0 ** min(self._surprises - 1, 60))  # capped: no float overflow
        return (t - last) > interval

    def state(self) -> dict[str, Any]:
        b = self.breaker
        return {"breaker": "open" if b.open_until is not None else "closed", "consecutive_failures": b.failures,
                "breaker_opened": b.opened, "config_error": self.config_error,
                "estimate_mbps": self.estimator.estimate(), "rtt_ms": self.rtt_estimate(),
                "cloud_samples": self.cloud.count}


def build_controller(edge: Any, cloud: Any, config: ControllerConfig, *, accuracy: Any = None,
                     sla_ms: float, codec: str | None = None, frame_bytes: int | None = None,
                     codecs: Any = None) -> Controller:
    """A controller with its scheduler(s) for two profiles (the one way sim and runtime build it);
    ``codecs``: the set janus-deploy chooses the codec from per request (None: ``codec`` alone)."""
    try:
        deploy = Scheduler(edge, cloud, accuracy, "janus-deploy", codec, sla_ms, frame_bytes=frame_bytes,
                           codecs=codecs)
        paper = (Scheduler(edge, cloud, accuracy, "paper", codec, sla_ms, frame_bytes=frame_bytes)
                 if config.system == "janus-paper" else None)
    except SchedulerError as exc:
        raise ControllerError(str(exc)) from None
    return Controller(deploy, config, paper)


__all__ = ["Choice", "Controller", "ControllerConfig", "ControllerError", "Observation", "OBSERVATION_KINDS",
           "OUTAGE_PROBE_S",
           "RTT_ESTIMATES", "SYSTEMS", "build_controller"]
