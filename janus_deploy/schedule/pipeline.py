"""The camera pipeline: frames of several streams through three resources, one set of rules.

This module is the one home of the rules that the simulator (:mod:`janus_deploy.sim.streams`)
and the pipelined edge runtime (:mod:`janus_deploy.runtime.streams`) both apply. It is pure: no
threads, no clock of its own; a caller tells it what happened and when (seconds on the caller's
clock) and asks it what to do next.

Frames of each :class:`StreamSpec` arrive at their rate. Three resources work on different
frames at once:

* the **edge** computes one frame at a time: the head segments and the codec's encode (the whole
  model for a device-only decision), and the remaining segments of a frame whose exchange failed
  (a *fallback* job, served before any new frame);
* the **uplink** carries one payload at a time, in the order the edge finished them;
* the **cloud** (RTT, decode, tail) serves every frame that crossed the uplink at once (the
  server has its own concurrency; its load is the controller's cloud estimate, not this model's).

Every frame is decided at its arrival (:meth:`Pipeline.waits`, then :meth:`Pipeline.decide` or
:meth:`Pipeline.drop_late`). A frame sent as is (s = 0, ``send_only``) skips the edge queue: it
waits for the uplink only, which takes the oldest ready payload (the edge's, or such a frame).

Queues are bounded: at most ``edge_queue`` frames wait (for the edge, or, sent as is, for the
uplink) and ``uplink_queue`` payloads of the edge for the uplink; the edge starts a frame that
sends only while the uplink queue has room (a full uplink holds it back, so nothing grows without
bound), and a device-only frame passes one so held.

Drop policy (``drop``):

``stale`` (the camera rule): a stream keeps only its newest waiting frame (an older one still
    waiting is dropped, ``superseded``); when the edge queue is full the oldest waiting frame is
    dropped (``queue-full``); and a frame whose decision at its arrival, its waits included,
    predicts that no option meets its SLA is dropped (``late``) instead of being computed.
``none``: every frame is answered; the edge queue holds the source back instead (the runtime's
    reader blocks; in the model the frame waits, its latency counted from its arrival).

``serial`` is the one-at-a-time loop of :class:`~janus_deploy.runtime.edge.EdgeRuntime`: one
frame in the system at a time, and a frame that arrives while it is busy is dropped (``busy``):
the frames today's ``run``/``simulate --fps`` skip, now reported.

Every frame gets exactly one outcome: ``answered`` (the cloud's answer), ``fallback`` (answered
on the edge after a failed exchange; device-only decisions are ``answered``) or ``dropped``
(with its reason). Latency runs from the frame's arrival (capture) to its answer.

The waits a decision needs (:meth:`Pipeline.waits`), both from the frame's arrival: the edge
wait (until the edge is predicted free for it: the job running and the decided frames ahead
that need it, at their predicted edge times) and the uplink wait (until the uplink is predicted
free: the payload being sent, those queued and those of the decided frames ahead, at the
bandwidth estimate). :meth:`janus_deploy.schedule.scheduler.Scheduler.decide` turns them into the
predicted latency ``max(edge_wait + head + encode, uplink_wait) + comm + rtt + decode + tail``
(s = 0: ``max(encode, uplink_wait) + ...``, the frame skips the edge queue).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from janus_deploy import JanusError

DROP_POLICIES = ("stale", "none")
# the uplink wait while payloads wait and the bandwidth estimate is 0: longer than any SLA, and
# finite, so that the decision's input can be logged and replayed as it was
NO_UPLINK_MS = 1e9
OUTCOMES = ("answered", "fallback", "dropped")
DROP_REASONS = ("superseded", "queue-full", "late", "busy", "error")


class PipelineError(JanusError):
    """Bad pipeline settings or a call out of order."""


@dataclass(frozen=True)
class StreamSpec:
    """One camera: ``fps`` frames per second from ``start_s`` on, ``sla_ms`` per frame; at most
    ``frames`` frames (None: as many as the run lasts)."""

    name: str
    fps: float
    sla_ms: float
    frames: int | None = None
    start_s: float = 0.0

    def validate(self) -> StreamSpec:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise PipelineError(f"stream {self.name}: the frame rate must be > 0 fps, got {self.fps}")
        if not (math.isfinite(self.sla_ms) and self.sla_ms > 0):
            raise PipelineError(f"stream {self.name}: the SLA must be > 0 ms, got {self.sla_ms}")
        if self.frames is not None and self.frames < 1:
            raise PipelineError(f"stream {self.name}: frames must be >= 1, got {self.frames}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise PipelineError(f"stream {self.name}: the start must be >= 0 s, got {self.start_s}")
        return self

    def arrival(self, seq: int) -> float:
        """Arrival time of frame ``seq`` (0-based)."""
        return self.start_s + seq / self.fps


def stagger_s(index: int, count: int, fps: float) -> float:
    """When camera ``index`` of ``count`` starts: ``index/(fps·count)`` s, spread over one frame
    interval, as unsynchronised cameras are (the simulator's streams and the runtime's alike)."""
    return index / (fps * count)


@dataclass(frozen=True)
class PipelineConfig:
    """``drop``: ``stale`` | ``none`` (module docstring); ``edge_queue``: frames waiting for the
    edge (None: two per stream); ``uplink_queue``: payloads waiting for the uplink; ``serial``:
    one frame in the system at a time (the serial runtime's loop)."""

    drop: str = "stale"
    edge_queue: int | None = None
    uplink_queue: int = 2
    serial: bool = False

    def validate(self) -> PipelineConfig:
        if self.drop not in DROP_POLICIES:
            raise PipelineError(f"unknown drop policy {self.drop!r}; choose one of {', '.join(DROP_POLICIES)}")
        if self.edge_queue is not None and self.edge_queue < 1:
            raise PipelineError(f"the edge queue must hold >= 1 frame, got {self.edge_queue}")
        if self.uplink_queue < 1:
            raise PipelineError(f"the uplink queue must hold >= 1 payload, got {self.uplink_queue}")
        return self


@dataclass(eq=False)  # frames are compared by identity (queues remove the one given)
class Frame:
    """One frame's way through the pipeline (times in s on the caller's clock)."""

    stream: int
    seq: int
    arrival_s: float
    sla_ms: float
    outcome: str | None = None
    reason: str | None = None  # why it was dropped / why it fell back
    done_s: float | None = None
    edge_wait_ms: float | None = None  # the waits its decision was given
    uplink_wait_ms: float | None = None
    nbytes: int = 0  # what its decision sends (0: nothing crosses the uplink)
    edge_ms: float = 0.0  # the edge work its decision predicts (a fallback: the remaining segments)
    send_only: bool = False  # its decision sends the frame (s = 0): it skips the edge queue
    decided: bool = False
    upload_start_s: float | None = None
    edge_start_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)  # the caller's (decision, prediction, ...)
    _live: bool = field(default=False, repr=False)  # accepted and not finished (counted in _in_system)

    @property
    def latency_ms(self) -> float | None:
        return None if self.done_s is None or self.outcome == "dropped" else (self.done_s - self.arrival_s) * 1e3

    @property
    def on_time(self) -> bool:
        lat = self.latency_ms
        return lat is not None and lat <= self.sla_ms + 1e-9


@dataclass
class _Job:
    frame: Frame
    fallback: bool = False


class Pipeline:
    """The pipeline's state: queues, busy resources, outcomes (module docstring)."""

    def __init__(self, streams: Sequence[StreamSpec], config: PipelineConfig = PipelineConfig()) -> None:
        if not streams:
            raise PipelineError("the pipeline needs at least one stream")
        self.streams = [s.validate() for s in streams]
        self.config = config.validate()
        self.edge_cap = config.edge_queue if config.edge_queue is not None else 2 * len(streams)
        self.frames: list[Frame] = []
        self._edge_q: deque[Frame] = deque()  # waiting frames, by arrival (send-only ones wait here for the uplink)
        self._fallback_q: deque[Frame] = deque()
        self._uplink_q: deque[Frame] = deque()  # payloads the edge made
        self.edge_busy: _Job | None = None
        self.uplink_busy: Frame | None = None
        self._in_system = 0  # frames accepted and not finished (serial: at most one)

    # ------------------------------------------------------------------ arrivals and decisions
    def arrive(self, stream: int, seq: int, now: float) -> tuple[Frame, list[Frame]]:
        """Frame ``seq`` of ``stream`` arrives at ``now``: (the frame, the frames this dropped,
        possibly the new frame itself). A frame not dropped is decided next (:meth:`waits`,
        then :meth:`decide` or :meth:`drop_late`)."""
        spec = self.streams[stream]
        f = Frame(stream, seq, now, spec.sla_ms)
        self.frames.append(f)
        dropped: list[Frame] = []
        cfg = self.config
        if cfg.serial:
            if self._in_system:
                self._drop(f, now, "busy")
                return f, [f]
        elif cfg.drop == "stale":
            for old in [q for q in self._edge_q if q.stream == stream]:
                self._edge_q.remove(old)
                self._drop(old, now, "superseded")
                dropped.append(old)
            if len(self._edge_q) >= self.edge_cap:
                old = self._edge_q.popleft()
                self._drop(old, now, "queue-full")
                dropped.append(old)
        self._edge_q.append(f)
        f._live = True
        self._in_system += 1
        return f, dropped

    def source_blocked(self) -> bool:
        """``none``: the edge queue is full, so a reader waits before handing over its next
        frame (the runtime's back-pressure; the model lets the frame wait in the queue)."""
        return self.config.drop == "none" and not self.config.serial and len(self._edge_q) >= self.edge_cap

    def waits(self, frame: Frame, now: float, bandwidth_mbps: float) -> tuple[float, float]:
        """(edge wait, uplink wait) in ms from the frame's arrival for its decision at ``now``.
        The edge wait: until the edge is predicted free for it (the job it runs, the fallbacks
        and the decided frames ahead that need it, at their predicted edge times). The uplink
        wait: until the uplink is predicted free (the payload on it, those queued and those of
        the decided frames ahead, at ``bandwidth_mbps``; :data:`NO_UPLINK_MS` while something
        waits and the estimate is 0)."""
        since = max(now - frame.arrival_s, 0.0) * 1e3
        edge_ms = 0.0
        job = self.edge_busy
        if job is not None and job.frame.edge_start_s is not None:
            edge_ms += max(job.frame.edge_ms - (now - job.frame.edge_start_s) * 1e3, 0.0)
        edge_ms += sum(f.edge_ms for f in self._fallback_q)
        ahead = [f for f in self._edge_q if f is not frame and f.decided]
        edge_ms += sum(f.edge_ms for f in ahead if not f.send_only)
        pending = ([self.uplink_busy] if self.uplink_busy is not None else []) + list(self._uplink_q) + \
            [f for f in ahead if f.nbytes > 0]
        free_in = 0.0
        for f in pending:
            if bandwidth_mbps <= 0:
                return since + edge_ms, NO_UPLINK_MS
            ms = f.nbytes * 8 / 1e3 / bandwidth_mbps
            if f is self.uplink_busy and f.upload_start_s is not None:
                ms = max(ms - (now - f.upload_start_s) * 1e3, 0.0)
            free_in += ms
        return since + edge_ms, (since + free_in) if free_in > 0 else 0.0

    def late(self, frame: Frame, predicted_ms: float) -> bool:
        """``stale``: the decision (waits included) predicts no option meets the frame's SLA."""
        return self.config.drop == "stale" and not self.config.serial and predicted_ms > frame.sla_ms + 1e-9

    def decide(self, frame: Frame, waits: tuple[float, float], nbytes: int, edge_ms: float,
               send_only: bool = False) -> None:
        """The decision for ``frame`` (just arrived, waiting): it sends ``nbytes`` after
        ``edge_ms`` of edge work; ``send_only`` (s = 0): it waits for the uplink only, not the edge."""
        if frame not in self._edge_q or frame.decided:
            raise PipelineError(f"frame {frame.stream}/{frame.seq} is not waiting for its decision")
        frame.edge_wait_ms, frame.uplink_wait_ms = waits
        frame.nbytes, frame.edge_ms = int(nbytes), float(edge_ms)
        frame.send_only = bool(send_only) and frame.nbytes > 0
        frame.decided = True

    def drop_late(self, frame: Frame, now: float, waits: tuple[float, float], reason: str = "late") -> None:
        """Drop the frame waiting for its decision (the decision said ``late``, or failed: ``error``)."""
        if frame not in self._edge_q:
            raise PipelineError(f"frame {frame.stream}/{frame.seq} is not waiting")
        frame.edge_wait_ms, frame.uplink_wait_ms = waits
        self._edge_q.remove(frame)
        self._drop(frame, now, reason)

    # ------------------------------------------------------------------ the edge
    def _next_edge(self) -> Frame | None:
        """The oldest decided frame the edge can start: one that needs it and sends nothing, or
        sends while the uplink queue has room (a device-only frame passes one held by a full
        uplink queue). None: none."""
        room = len(self._uplink_q) < self.config.uplink_queue
        for f in self._edge_q:
            if f.decided and not f.send_only and (room or f.nbytes == 0):
                return f
        return None

    def edge_can_start(self) -> bool:
        """The edge is idle and has work: a fallback, or a frame :meth:`_next_edge` finds."""
        if self.edge_busy is not None:
            return False
        return bool(self._fallback_q) or self._next_edge() is not None

    def take_edge(self, now: float) -> tuple[Frame, bool] | None:
        """The edge's next job at ``now``: (frame, is a fallback), fallbacks first; None when
        it cannot start."""
        if not self.edge_can_start():
            return None
        if self._fallback_q:
            f = self._fallback_q.popleft()
            self.edge_busy = _Job(f, True)
        else:
            f = self._next_edge()  # type: ignore[assignment]  # edge_can_start() found one
            self._edge_q.remove(f)
            self.edge_busy = _Job(f, False)
        f.edge_start_s = now
        return f, self.edge_busy.fallback

    def abandon(self, frame: Frame, now: float) -> None:
        """The frame's edge job (or, for a send-only frame, its encode on the uplink) failed (an
        error, logged with the frame): the frame is dropped, ``error``; its resource is free."""
        if self.uplink_busy is frame:
            self.uplink_busy = None
        else:
            self._check_on_edge(frame)
            self.edge_busy = None
        self._drop(frame, now, "error")

    def edge_done(self, frame: Frame, now: float) -> None:
        """The edge finished ``frame``'s job: a payload joins the uplink queue; a device-only
        frame or a fallback is answered."""
        job = self._check_on_edge(frame)
        self.edge_busy = None
        if job.fallback:
            self._finish(frame, now, "fallback", frame.reason)
        elif frame.nbytes > 0:
            self._uplink_q.append(frame)
        else:
            self._finish(frame, now, "answered")

    # ------------------------------------------------------------------ uplink and cloud
    def take_uplink(self, now: float) -> Frame | None:
        """The uplink's next payload (None while it is busy or nothing waits): the oldest, by
        arrival, of the edge's payloads and the send-only frames."""
        if self.uplink_busy is not None:
            return None
        direct = next((f for f in self._edge_q if f.decided and f.send_only), None)
        made = self._uplink_q[0] if self._uplink_q else None
        if direct is not None and (made is None or direct.arrival_s < made.arrival_s):
            self._edge_q.remove(direct)
            f = direct
        elif made is not None:
            f = self._uplink_q.popleft()
        else:
            return None
        f.upload_start_s = now
        self.uplink_busy = f
        return f

    def uplink_done(self, frame: Frame, now: float) -> None:
        """The payload has crossed (or its exchange was cancelled): the uplink is free."""
        if self.uplink_busy is not frame:
            raise PipelineError(f"frame {frame.stream}/{frame.seq} is not on the uplink")
        self.uplink_busy = None

    def answered(self, frame: Frame, now: float) -> None:
        """The cloud's answer arrived."""
        self._finish(frame, now, "answered")

    def fell_back(self, frame: Frame, now: float, reason: str, local_ms: float = 0.0) -> None:
        """The exchange failed at ``now``: the remaining segments (``local_ms`` predicted) go to
        the edge, before new frames."""
        frame.reason = reason
        frame.edge_ms = float(local_ms)
        self._fallback_q.append(frame)

    # ------------------------------------------------------------------ state
    @property
    def idle(self) -> bool:
        return (self.edge_busy is None and self.uplink_busy is None and not self._edge_q
                and not self._fallback_q and not self._uplink_q and self._in_system == 0)

    def unfinished(self) -> list[Frame]:
        return [f for f in self.frames if f.outcome is None]

    def _check_on_edge(self, frame: Frame) -> _Job:
        job = self.edge_busy
        if job is None or job.frame is not frame:
            raise PipelineError(f"frame {frame.stream}/{frame.seq} is not on the edge")
        return job

    def _release(self, f: Frame) -> None:
        if f._live:
            f._live = False
            self._in_system -= 1

    def _drop(self, f: Frame, now: float, reason: str) -> None:
        f.outcome, f.reason, f.done_s = "dropped", reason, now
        self._release(f)

    def _finish(self, f: Frame, now: float, outcome: str, reason: str | None = None) -> None:
        if f.outcome is not None:
            raise PipelineError(f"frame {f.stream}/{f.seq} already has an outcome ({f.outcome})")
        f.outcome, f.reason, f.done_s = outcome, reason, now
        self._release(f)


# --------------------------------------------------------------------------- metrics


def _span(frames: Sequence[Frame]) -> float:
    """Seconds from the first arrival to the last arrival or answer."""
    if not frames:
        return 0.0
    first = min(f.arrival_s for f in frames)
    last = max(max(f.arrival_s, f.done_s or 0.0) for f in frames)
    return last - first


def _report(frames: Sequence[Frame], span_s: float) -> dict[str, Any]:
    n = len(frames)
    answered = [f for f in frames if f.outcome in ("answered", "fallback")]
    lat = np.asarray([f.latency_ms for f in answered], dtype=float)
    good = sum(f.on_time for f in answered)
    dropped = [f for f in frames if f.outcome == "dropped"]
    reasons: dict[str, int] = {}
    for f in dropped:
        reasons[f.reason or "?"] = reasons.get(f.reason or "?", 0) + 1

    def pct(q: float) -> float | None:
        return float(np.percentile(lat, q)) if lat.size else None

    return {
        "frames": n, "answered": len(answered), "fallbacks": sum(f.outcome == "fallback" for f in frames),
        "dropped": len(dropped), "drop_reasons": reasons, "unfinished": sum(f.outcome is None for f in frames),
        "on_time": int(good), "goodput_fps": good / span_s if span_s > 0 else None,
        "drop_ratio": len(dropped) / n if n else None,
        "violation_ratio": 1.0 - good / len(answered) if answered else None,
        "latency_ms_p50": pct(50), "latency_ms_p95": pct(95), "latency_ms_p99": pct(99),
        "latency_ms_mean": float(lat.mean()) if lat.size else None,
    }


def stream_report(frames: Iterable[Frame], names: Sequence[str] | None = None,
                  span_s: float | None = None) -> dict[str, Any]:
    """What a camera user reads, in total and per stream: ``goodput_fps`` (frames answered
    within their SLA per second of the run: first arrival to the last arrival or answer, or
    ``span_s``), ``drop_ratio`` (dropped / frames), ``violation_ratio`` (late among answered),
    latency percentiles over answered frames, counts of outcomes and drop reasons."""
    frames = list(frames)
    span = _span(frames) if span_s is None else span_s
    out = _report(frames, span)
    out["span_s"] = span
    ids = sorted({f.stream for f in frames})
    label = (lambda i: names[i]) if names is not None else str  # noqa: E731 - a one-line name choice
    out["streams"] = {label(i): _report([f for f in frames if f.stream == i], span) for i in ids}
    return out


__all__ = ["stagger_s", "NO_UPLINK_MS", "DROP_POLICIES", "DROP_REASONS", "OUTCOMES", "Frame", "Pipeline", "PipelineConfig", "PipelineError",
           "StreamSpec", "stream_report"]
