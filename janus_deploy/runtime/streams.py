"""The pipelined, multi-stream edge runtime: the pipeline model's rules with threads.

:class:`StreamRuntime` runs several frame sources (:mod:`janus_deploy.runtime.session`) through
one :class:`~janus_deploy.runtime.edge.EdgeRuntime`'s controller, runner, codec and log, under the
rules of :mod:`janus_deploy.schedule.pipeline` (the simulator's, :mod:`janus_deploy.sim.streams`):

* one **reader** thread per source hands its frames over at the source's rate (a frame's arrival
  is its capture time; under ``--drop none`` a full edge queue holds the reader back);
* one **edge** thread takes the pipeline's next job: a new frame (the controller decides with the
  frame's waits and its stream's SLA; a ``late`` frame is dropped) whose head and encode it runs,
  or a fallback (the remaining segments of a frame whose exchange failed);
* ``exchanges`` **exchange** threads, each with its own HTTP client (sharing the uplink's shaper):
  one takes the next payload off the uplink queue and sends it; the uplink is free again when the
  body's last byte has left (not when the answer comes), so the next payload's upload overlaps
  this one's RTT and cloud time. A failed exchange goes back to the edge as a fallback.

The pipeline state and the controller are touched only under one lock, in the order things
happen, and every record says what the controller had seen (``obs_before``, the observations
count at its decision) and where its own observations went (``obs_index``): ``janus-deploy
replay`` feeds them back in that order (:func:`janus_deploy.sim.streams.replay_pipelined`).
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.net.shaper import unshaped_stream
from janus_deploy.runtime.edge import EdgeRuntime, summarize
from janus_deploy.runtime.transport import Transport
from janus_deploy.schedule.pipeline import Frame, Pipeline, PipelineConfig, StreamSpec, stagger_s, stream_report
from janus_deploy.schedule.runlog import LinkRecord, ProbeRecord, RequestRecord, Waits
from janus_deploy.triton import dialect
from janus_deploy.wire.v2 import model_name

FREEZE_EVERY = 256  # records written between two gc.freeze() calls (run())


class StreamError(JanusError):
    """The streams cannot run (bad sources or settings)."""


@dataclass
class Source:
    """One camera for :class:`StreamRuntime`: ``frames`` yields ``(label, uint8 frame)``;
    ``fps`` its rate; ``sla_ms`` its SLA (None: the runtime's)."""

    name: str
    frames: Iterator[tuple[str, np.ndarray]]
    fps: float
    sla_ms: float | None = None
    limit: int | None = None


class _UplinkGate:
    """An upload body that frees the uplink when its last byte has left (wraps the shared
    shaper, or the unshaped stream); what :class:`Transport` sees as its shaper."""

    def __init__(self, shaper: Any) -> None:
        self.inner = shaper
        self.on_sent: Callable[[], None] | None = None

    @property
    def t0(self) -> float | None:
        return self.inner.t0 if self.inner is not None else 0.0

    def start(self, t0: float | None = None) -> None:
        if self.inner is not None:
            self.inner.start(t0)

    def __getattr__(self, name: str) -> Any:  # trace, mean_rate: the shaper's
        if name == "inner" or self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def stream(self, body: bytes, stats: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
        gen = self.inner.stream(body, stats) if self.inner is not None else unshaped_stream(body, stats)
        try:
            async for piece in gen:
                yield piece
        finally:
            cb, self.on_sent = self.on_sent, None
            if cb is not None:
                cb()


class StreamRuntime:
    """Several sources through one edge runtime, pipelined (module docstring)."""

    def __init__(self, rt: EdgeRuntime, sources: Sequence[Source], pipeline: PipelineConfig | None = None,
                 exchanges: int = 3) -> None:
        if not sources:
            raise StreamError("give at least one frame source")
        if exchanges < 1:
            raise StreamError(f"exchanges must be >= 1, got {exchanges}")
        self.rt, self.sources = rt, list(sources)
        n = len(sources)
        self.specs = [StreamSpec(s.name, s.fps, s.sla_ms or rt.sla_ms, s.limit, stagger_s(i, n, s.fps)).validate()
                      for i, s in enumerate(sources)]
        self.pipe = Pipeline(self.specs, pipeline or PipelineConfig())
        self.cond = threading.Condition()
        self.exchanges = exchanges
        self._readers_left = len(sources)
        self._stop = False
        self._next_id = 0
        self._records: list[RequestRecord] = []
        self._errors: list[BaseException] = []
        self._triton = rt.transport.kind == dialect.TRITON
        self._probing = False
        self._probes: list[RequestRecord] = []
        self._started = threading.Event()
        self.wall_s: float | None = None

    # ------------------------------------------------------------------ run
    def run(self, progress: Callable[[RequestRecord], None] | None = None,
            on_start: Callable[[], None] | None = None) -> list[RequestRecord]:
        """Run every source to its end and every frame to its outcome; the records, by id.
        ``on_start``: called when the clock starts (the first frames are in hand), e.g. to start
        a kernel link's trace with the uplink's."""
        self._progress = progress
        # every reader holds its first frame before the clock starts (t0), and the uplink's trace
        # starts with it: the first frames are not late for the time their sources took to open
        self._ready = threading.Barrier(len(self.sources) + 1)
        self._t0 = 0.0
        threads = [threading.Thread(target=self._guard, args=(self._reader, i), daemon=True, name=f"reader{i}")
                   for i in range(len(self.sources))]
        threads.append(threading.Thread(target=self._guard, args=(self._edge,), daemon=True, name="edge"))
        transports = [Transport(self.rt.transport.server_url, self.rt.transport.options,
                                _UplinkGate(self.rt.transport.shaper),  # type: ignore[arg-type]  # a shaper in all Transport uses (t0, start, stream, trace)
                                num_classes=self.rt.transport.num_classes,
                                plan_hash=self.rt.transport.plan_hash) for _ in range(self.exchanges)]
        for tr in transports:
            tr.kind = self.rt.transport.kind
            tr.server_metadata(timeout_s=2.0)  # open its connection now, not in a frame's exchange
        threads += [threading.Thread(target=self._guard, args=(self._exchange, tr), daemon=True, name=f"exchange{k}")
                    for k, tr in enumerate(transports)]
        for th in threads:
            th.start()
        try:
            self._ready.wait()
        except threading.BrokenBarrierError:
            pass  # a reader failed before its first frame: run() reports its error below
        # what exists now (modules, sessions, profiles, the server's app in this process) is never
        # garbage, nor are the records written (kept for the run's result): frozen, the collector's
        # full passes do not walk them (_write freezes every FREEZE_EVERY records; all unfrozen at
        # the end). Without it a full pass stalls every thread of this process, the uplink and the
        # answers too, for 50-150 ms a few times a run (measured on the demo plan), which the
        # controller reads as a collapsing link or a server 30x slower than its profile
        gc.freeze()
        self._t0 = t0 = self.rt.now()
        if self.rt.transport.shaper is not None:
            self.rt.transport.shaper.start()
        if on_start is not None:
            on_start()
        self._started.set()
        try:
            for th in threads:
                while th.is_alive():
                    th.join(0.2)
        except KeyboardInterrupt:
            with self.cond:
                self._stop = True
                self.cond.notify_all()
            raise
        finally:
            gc.unfreeze()
            for tr in transports:
                tr.close()
        self.wall_s = self.rt.now() - t0
        if self._errors:
            raise self._errors[0]
        return sorted(self._records, key=lambda r: r.id)

    @property
    def t0(self) -> float:
        """When the clock started (the edge runtime's seconds), once :meth:`run` began."""
        return self._t0

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - a thread's crash ends the run, reported by run()
            with self.cond:
                self._errors.append(exc)
                self._stop = True
                self.cond.notify_all()

    def _done(self) -> bool:
        return self._stop or (self._readers_left == 0 and self.pipe.idle)

    # ------------------------------------------------------------------ readers
    def _reader(self, i: int) -> None:
        src, spec = self.sources[i], self.specs[i]
        seq = 0
        try:
            frames = iter(src.frames)
            try:
                first = next(frames, None)
            finally:
                self._ready.wait()
            self._started.wait()
            t0 = self._t0
            for label, pixels in itertools.chain([first] if first is not None else [], frames):
                if spec.frames is not None and seq >= spec.frames:
                    break
                due = t0 + spec.start_s + seq / spec.fps
                delay = due - self.rt.now()
                if delay > 0:
                    time.sleep(delay)
                with self.cond:
                    while self.pipe.source_blocked() and not self._stop:
                        self.cond.wait(0.1)
                    if self._stop:
                        return
                    now = self.rt.now()
                    frame, dropped = self.pipe.arrive(i, seq, due if delay > 0 else now)  # capture time
                    frame.info.update(id=self._take_id(), source=label, pixels=pixels)
                    for f in dropped:
                        self._write(f)
                    if frame.outcome is None:
                        self._decide(frame, now)
                    self.cond.notify_all()
                seq += 1
        finally:
            with self.cond:
                self._readers_left -= 1
                self.cond.notify_all()

    def _take_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    # ------------------------------------------------------------------ the edge
    def _edge(self) -> None:
        rt = self.rt
        while True:
            with self.cond:
                while not self.pipe.edge_can_start() and not self._done():
                    self.cond.wait(0.1)
                if self._done():
                    return
                job = self.pipe.take_edge(rt.now())
                assert job is not None  # edge_can_start() said so, under the lock
                f, fallback = job
            try:
                if fallback:
                    self._run_fallback(f)
                else:
                    self._run_head(f)
            except Exception as exc:  # noqa: BLE001 - one clear per-frame error, never a crash
                self._abandon(f, exc)
                continue
            with self.cond:
                self.pipe.edge_done(f, rt.now())
                if f.outcome is not None:
                    self._write(f)
                self.cond.notify_all()

    def _decide(self, f: Frame, now: float) -> None:
        """The controller's decision for ``f`` at its arrival (under the lock): the frame waits
        for the edge, or (sending the frame, s = 0) for the uplink only; dropped ``late`` when
        no option meets its SLA behind the waits, ``error`` when the decision fails."""
        rt = self.rt
        waits = self.pipe.waits(f, now, rt.controller.scheduler_bandwidth())
        rec = self._record(f, now)
        rec.obs_before = rt.controller.observations
        rec.waits = Waits(edge_ms=float(waits[0]), uplink_ms=float(waits[1]))
        choice = rt.controller.decide(now, edge_wait_ms=waits[0], uplink_wait_ms=waits[1], sla_ms=f.sla_ms)
        try:
            level, split, choice = rt._decide(None, rec, choice)
        except Exception as exc:  # noqa: BLE001 - a per-frame error (e.g. a level the plan lacks)
            rec.error = f"{type(exc).__name__}: {exc}"
            self.pipe.drop_late(f, now, waits, reason="error")
            self._write(f)
            return
        d = choice.decision
        if self.pipe.late(f, d.predicted_ms):
            self.pipe.drop_late(f, now, waits)
            self._write(f)
            return
        f.info.update(level=level, split=split)
        nbytes = d.bytes if split <= rt.manifest.num_blocks else 0
        send_only = split == 0 and nbytes > 0
        self.pipe.decide(f, waits, nbytes, 0.0 if send_only else d.breakdown["edge_ms"] + d.breakdown["encode_ms"],
                         send_only)

    def _run_head(self, f: Frame) -> None:
        rt, rec = self.rt, f.info["rec"]
        level, split, frame = f.info["level"], f.info["split"], f.info["pixels"]
        rt._check_frame(frame)
        m = rt.manifest
        k = m.edge_segments(split)
        t1 = time.perf_counter()
        state = rt._head(level, k, frame)
        meas = rec.measured
        meas.edge_ms = round((time.perf_counter() - t1) * 1e3, 3)
        if split > m.num_blocks:
            meas.encode_ms, meas.transfer_ms, meas.cloud_ms = 0.0, 0.0, 0.0
            f.info["logits"] = state[0][0]
            f.nbytes = 0
            return
        t2 = time.perf_counter()
        # the body carries the id the exchange checks the answer against (the frame's, not the
        # record's: a record's id is its place in the log, known only when it is written)
        body, headers = rt._encode(split, state, frame, rec, self._triton, request_id=str(f.info["id"]))
        meas.encode_ms = round((time.perf_counter() - t2) * 1e3, 3)
        f.nbytes = len(body)  # the real payload (the decision predicted rec.predicted.bytes)
        assert rec.decision is not None  # decided before the head ran
        codec = rt._codec_of(rec)
        rec.decision.model = dialect.tail_model(level, split, codec) if self._triton else model_name(level, split)
        f.info.update(state=state, body=body, headers=headers)

    def _run_fallback(self, f: Frame) -> None:
        rt, rec = self.rt, f.info["rec"]
        level, split = f.info["level"], f.info["split"]
        nseg = rt.manifest.plan_level(level).num_segments
        out = rt._fallback(level, split, rt.manifest.edge_segments(split), nseg, f.info["pixels"], f.info["state"],
                           f.info["exchange"], rec)
        f.info["logits"] = out

    # ------------------------------------------------------------------ exchanges
    def _exchange(self, tr: Transport) -> None:
        rt = self.rt
        gate: _UplinkGate = tr.shaper  # type: ignore[assignment]  # run() gives every exchange transport a gate
        while True:
            probe = False
            with self.cond:
                while not self._done():
                    if self.pipe.uplink_busy is None and self.pipe.take_uplink(rt.now()) is not None:
                        break
                    if not self._probing and rt.controller.probe_due(rt.now()):
                        self._probing = probe = True
                        break
                    self.cond.wait(0.1)
                if self._done():
                    return
            if probe:
                self._probe(tr)
                continue
            with self.cond:
                f = self.pipe.uplink_busy
                assert f is not None
            if f.send_only:  # the frame itself: encoded here, where the uplink takes it
                try:
                    self._run_head(f)
                except Exception as exc:  # noqa: BLE001 - one clear per-frame error, never a crash
                    self._abandon(f, exc)
                    continue
            with self.cond:
                elapsed_ms = (rt.now() - f.arrival_s) * 1e3
            rec = f.info["rec"]
            released = [False]

            def sent(f: Frame = f, released: list[bool] = released) -> None:
                with self.cond:
                    if not released[0]:
                        released[0] = True
                        self.pipe.uplink_done(f, rt.now())
                        self.cond.notify_all()

            gate.on_sent = sent
            timeout_s = tr.options.policy.timeout_ms(f.sla_ms, elapsed_ms) / 1e3
            assert rec.decision is not None and rec.decision.model is not None and rec.predicted is not None
            ex = tr.infer(rec.decision.model, f.info.pop("body"), f.info["headers"], timeout_s, str(f.info["id"]),
                          dialect.assumed_server_ms(rec.predicted.model_dump()) if self._triton else 0.0)
            t_answer = rt.now()  # the answer's time, before the bookkeeping below
            gate.on_sent = None
            sent()
            with self.cond:
                rec.obs_index = rt.controller.observations
                rt._observe(ex, rec, expected_ms=rt.controller.deploy.server_ms(
                    rec.decision.profile_level, rec.decision.split, rt._codec_of(rec).name))
                meas = rec.measured
                meas.upload_ms = round(ex.upload_s * 1e3, 3)
                rec.link = None if ex.link is None else LinkRecord(**ex.link)
                now = t_answer
                if ex.ok:
                    meas.cloud_ms = round(ex.server.get("janus_server_ms", ex.server.get("assumed_server_ms", 0.0)), 3)
                    meas.transfer_ms = round(ex.network_s * 1e3, 3)
                    rec.server = {k: float(v) for k, v in ex.server.items()}
                    f.info["logits"] = ex.logits[0]  # type: ignore[index]  # set when the exchange answered
                    self.pipe.answered(f, now)
                    self._write(f)
                else:
                    meas.transfer_ms, meas.cloud_ms = round(ex.elapsed_s * 1e3, 3), 0.0
                    f.info["exchange"] = ex
                    edge, li = rt.controller.deploy.edge, rec.decision.profile_level
                    self.pipe.fell_back(f, now, ex.kind or "failed",
                                        edge.total_ms(li) - edge.head_ms(li, rec.decision.split))
                self.cond.notify_all()

    def _probe(self, tr: Transport) -> None:
        """The controller asked for a probe (no link sample for a while, or the breaker's time is
        up): its observations go to the log as a record of kind ``probe``, in their place."""
        rt = self.rt
        try:
            ex = tr.probe(tr.options.policy.probe_timeout_ms(rt.sla_ms) / 1e3)
            with self.cond:
                rec = RequestRecord(id=rt._log.records, kind="probe", t=round(rt.now(), 6), sla_ms=rt.sla_ms,
                                    obs_index=rt.controller.observations)
                sample = rt._observe(ex, rec, probe=True)
                rec.probe = ProbeRecord(bytes=ex.body_bytes, ok=ex.ok, ms=round(ex.elapsed_s * 1e3, 3),
                                        sample_mbps=None if sample is None else round(sample, 4),
                                        estimate_mbps=round(rt.controller.estimator.estimate(), 4))
                self._probes.append(rec)
                rt._log.record(rec)
        finally:
            with self.cond:
                self._probing = False
                self.cond.notify_all()

    # ------------------------------------------------------------------ records
    def _record(self, f: Frame, now: float) -> RequestRecord:
        """The frame's record; its ``id`` is its place in the log, set when it is written (frames
        finish out of order; ``stream``/``seq`` name the frame)."""
        spec = self.specs[f.stream]
        rec = f.info.get("rec")
        if rec is None:
            rec = f.info["rec"] = RequestRecord(id=0, t=round(now, 6), source=f.info.get("source"), sla_ms=f.sla_ms,
                                                stream=spec.name, seq=f.seq, arrival_t=round(f.arrival_s, 6))
        return rec

    def _abandon(self, f: Frame, exc: Exception) -> None:
        """A frame's own step raised: its record says why, the pipeline drops it, the run goes on."""
        with self.cond:
            f.info["rec"].error = f"{type(exc).__name__}: {exc}"
            self.pipe.abandon(f, self.rt.now())
            self._write(f)
            self.cond.notify_all()

    def _write(self, f: Frame) -> None:
        """The frame's outcome is known: finish its record, log it (under the lock)."""
        rec = self._record(f, f.done_s if f.done_s is not None else f.arrival_s)
        rec.outcome = f.outcome  # type: ignore[assignment]  # the pipeline sets only answered/fallback/dropped
        if f.outcome == "dropped":
            rec.drop_reason = f.reason
        logits = f.info.pop("logits", None)
        if logits is not None:
            rec.top1 = int(np.argmax(logits))
        if f.latency_ms is not None:
            rec.measured.total_ms = round(f.latency_ms, 3)
            rec.violated = not f.on_time
        for k in ("pixels", "state", "body", "headers", "exchange"):
            f.info.pop(k, None)
        rec.id = self.rt._log.records  # the log's order (frames finish out of order)
        self._records.append(rec)
        if len(self._records) % FREEZE_EVERY == 0:
            gc.freeze()  # the records so far live to the end of the run (see run())
        self.rt._log.record(rec)
        if self._progress is not None:
            self._progress(rec)

    def summary(self) -> dict[str, Any]:
        """The run report of the answered frames plus the streams report (goodput, drops, ...)."""
        answered = [r for r in self._records if r.outcome in ("answered", "fallback")]
        errors = [r for r in self._records if r.error]
        rep = summarize(answered + errors, self.rt.sla_ms, self.wall_s)
        streams = stream_report(self.pipe.frames, names=[s.name for s in self.specs])
        for k in ("frames", "dropped", "drop_reasons", "on_time", "goodput_fps", "drop_ratio", "violation_ratio",
                  "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "streams", "span_s"):
            rep[k] = streams[k]
        rep["pipeline"] = {"drop": self.pipe.config.drop, "serial": self.pipe.config.serial,
                           "edge_queue": self.pipe.edge_cap, "uplink_queue": self.pipe.config.uplink_queue,
                           "exchanges": self.exchanges}
        return rep


__all__ = ["Source", "StreamError", "StreamRuntime"]
