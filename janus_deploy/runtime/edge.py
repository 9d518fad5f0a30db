"""The edge half: per request, decide (α, s), run the head locally, send the payload, get logits.

:class:`EdgeRuntime` serves one request at a time (use one per client thread). It only
orchestrates; each job has its own piece:

1. the :class:`~janus_deploy.schedule.controller.Controller` (the same one the simulator runs)
   picks (α, split) from its bandwidth and RTT estimates and the server's health;
2. the local runner runs segments ``0 .. edge_segments(split) - 1`` of that level (sessions stay
   resident, so switching levels costs no reload once used);
3. the boundary tensors are encoded with the profile's codec (:mod:`janus_deploy.wire.codecs`)
   into a V2 binary-tensor body (:mod:`janus_deploy.wire.v2`), zstd-compressed for ``fp16-zstd``;
4. the :class:`~janus_deploy.runtime.transport.Transport` sends it to the tail model
   ``janus_L{level}_S{split}`` (paced by a bandwidth trace when one is given) and checks the answer;
5. if the server is unreachable, answers an error or unusable logits, is slower than the SLA (the
   exchange is cancelled at the deadline) or the connection drops mid-transfer, the remaining
   segments run locally (*fallback*), so every request gets exactly one answer;
6. what the exchange showed goes back to the controller as observations, which the request's log
   record keeps, so ``janus-deploy replay`` can re-run the decisions.

One :class:`~janus_deploy.schedule.runlog.RequestRecord` per request goes to ``log`` after a
header line, and a trailer (record count, sha256) when the runtime closes
(:mod:`janus_deploy.schedule.runlog`; the schema table in ``docs/runtime.md`` is generated from it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.images import ImageError, list_images, load_frame, normalize, synthetic_frames
from janus_deploy.levels import config_label
from janus_deploy.net.shaper import TraceShaper
from janus_deploy.plan.manifest import Manifest
from janus_deploy.profile.table import Profile, load_profile
from janus_deploy.report import run_report
from janus_deploy.runtime.transport import Exchange, Transport, TransportError, TransportOptions
from janus_deploy.schedule.controller import Choice, ControllerConfig, ControllerError, Observation, build_controller
from janus_deploy.schedule.runlog import (
    ControllerState,
    DecisionRecord,
    FallbackRecord,
    LinkRecord,
    Predicted,
    ProbeRecord,
    RequestRecord,
    RunLogHeader,
    RunLogWriter,
)
from janus_deploy.triton import dialect
from janus_deploy.wire.codecs import Codec, compress, encode_payload, get_codec
from janus_deploy.wire.v2 import HEADER_LENGTH, encode_request, model_name


class EdgeError(JanusError):
    """The edge runtime cannot start (inconsistent plan / profiles / options)."""


@dataclass
class RequestResult:
    """The one answer of one request: logits (None on a per-request error) and its log record."""

    id: int
    record: RequestRecord
    logits: np.ndarray | None = None

    @property
    def top1(self) -> int | None:
        return self.record.top1

    @property
    def fallback(self) -> FallbackRecord | None:
        return self.record.fallback

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def total_ms(self) -> float:
        return self.record.measured.total_ms


def _as_profile(p: Profile | str | Path) -> Profile:
    return p if isinstance(p, Profile) else load_profile(p)


class _Log(RunLogWriter):
    """The run log (:mod:`janus_deploy.schedule.runlog`) on a path or a stream; a path is checked
    and opened here, and closed (after the trailer) with the runtime."""

    def __init__(self, log: str | Path | IO[str] | None) -> None:
        super().__init__(None)
        self.own = False
        if isinstance(log, (str, Path)):
            from janus_deploy import check_output_path

            check_output_path(log, "run log", error=EdgeError)
            try:
                Path(log).parent.mkdir(parents=True, exist_ok=True)
                self.f, self.own = open(log, "w"), True
            except OSError as exc:
                raise EdgeError(f"cannot write the run log {log}: {exc.strerror or exc}; give another path") from None
        elif log is not None:
            self.f = log

    def close(self) -> None:
        self.end()
        if self.own and self.f is not None:
            try:
                self.f.close()
            except OSError as exc:
                self.error = self.error or exc.strerror or str(exc)


class EdgeRuntime:
    """Splits every request between this device and a V2 server (see module docstring).

    ``plan``/``engines``: a :class:`Manifest` or plan directory, and a runner or engine
    directory. ``edge_profile``/``cloud_profile``: profiles (objects or paths) of the same plan;
    ``accuracy``: an accuracy table of the same plan (object or path). ``sla_ms``: latency SLA.
    ``controller``: the control loop's settings (default :class:`ControllerConfig`; its
    ``cold_start_mbps`` defaults to the trace mean when a trace is given, and its RTT to what the
    health checks measure at start unless ``rtt_fixed``). ``transport``: token, timeouts, probe
    size. ``trace``: a bandwidth :class:`~janus_deploy.net.traces.Trace` (or shaper) replayed on
    the upload. ``log``: path or text stream for the JSON lines.
    """

    def __init__(self, plan: Manifest | str | Path, engines: Any, edge_profile: Profile | str | Path,
                 cloud_profile: Profile | str | Path, *, server_url: str, sla_ms: float, accuracy: Any = None,
                 codec: str | None = None, codecs: Any = None, controller: ControllerConfig | None = None,
                 transport: TransportOptions | None = None, trace: Any = None,
                 log: str | Path | IO[str] | None = None, threads: int = 0) -> None:
        self.manifest = plan if isinstance(plan, Manifest) else Manifest.load(plan)
        self.runner = self._load_runner(engines, threads)
        self.edge_profile, self.cloud_profile = _as_profile(edge_profile), _as_profile(cloud_profile)
        self.accuracy = self._load_accuracy(accuracy)
        if not (isinstance(sla_ms, (int, float)) and math.isfinite(sla_ms) and sla_ms > 0):
            raise EdgeError(f"--sla must be a positive number of ms, got {sla_ms!r}")
        self.sla_ms = float(sla_ms)
        self._check_profiles()
        shaper = None
        if trace is not None:
            shaper = trace if isinstance(trace, TraceShaper) else TraceShaper(
                trace, chunk_bytes=(transport or TransportOptions()).chunk_bytes)
        try:
            self.transport = Transport(server_url, transport or TransportOptions(), shaper,
                                       num_classes=self.manifest.model_info.num_classes, plan_hash=self.manifest.hash)
        except TransportError as exc:
            raise EdgeError(str(exc)) from None
        try:
            self.controller = build_controller(self.edge_profile, self.cloud_profile,
                                               self._controller_config(controller, shaper),
                                               accuracy=self.accuracy, sla_ms=self.sla_ms, codec=codec,
                                               codecs=codecs)
        except ControllerError as exc:
            self.transport.close()
            raise EdgeError(str(exc)) from None
        self.codec: Codec = get_codec(self.controller.deploy.codec)
        self._plan_level = self._map_levels()
        self._lock = threading.Lock()
        self._next_id = 0
        self._records: list[RequestRecord] = []
        self._t_start = time.perf_counter()
        self._t_first: float | None = None
        self._t_end: float | None = None
        self._closed = False
        self._reported_auth = False
        self._log = _Log(log)
        self._log.header(self._header())

    # ------------------------------------------------------------------ setup pieces
    def _load_runner(self, engines: Any, threads: int) -> Any:
        from janus_deploy.backends.base import EngineError, check_batch

        if isinstance(engines, (str, Path)):
            from janus_deploy.backends import load_runner

            engines = load_runner(self.manifest, engines, threads=threads)
        try:  # the engines' batch range (TensorRT's profile) must hold the edge's one frame per request
            check_batch(engines, 1, "the edge (one frame per request)")
        except EngineError as exc:
            raise EdgeError(str(exc)) from None
        return engines

    def _load_accuracy(self, accuracy: Any) -> Any:
        if isinstance(accuracy, (str, Path)):
            from janus_deploy.calibrate.accuracy import load_accuracy

            accuracy = load_accuracy(accuracy)
        if isinstance(accuracy, dict) and accuracy.get("plan_hash") not in (None, self.manifest.hash):
            raise EdgeError(f"the accuracy table was made for plan {str(accuracy['plan_hash'])[:12]}, not for this "
                            f"plan ({self.manifest.hash[:12]}); run `janus-deploy calibrate` on this plan")
        return accuracy

    def _check_profiles(self) -> None:
        from janus_deploy.profile.measure import check_profile_for_plan

        for name, prof in (("edge", self.edge_profile), ("cloud", self.cloud_profile)):
            check_profile_for_plan(prof, self.manifest, f"{name} profile")

    def _controller_config(self, cfg: ControllerConfig | None, shaper: TraceShaper | None) -> ControllerConfig:
        cfg = (cfg or ControllerConfig()).for_trace(shaper.trace if shaper else None)
        if self.transport.options.probe_rtt and not cfg.rtt_fixed:
            probed = self.transport.health_rtt()
            if probed is not None:
                cfg = cfg.with_(rtt_cold_ms=probed)
        return cfg

    def _map_levels(self) -> dict[int, int]:
        out = {}
        for li in self.controller.deploy.janus_levels:
            lv = self.edge_profile.levels[li]
            try:
                out[li] = self.manifest.find_level(lv.alpha, lv.policy)
            except JanusError as exc:
                raise EdgeError(f"the profile's level {lv.label} is not in the plan: {exc}") from None
        return out

    def _header(self) -> RunLogHeader:
        acc = self.accuracy if isinstance(self.accuracy, dict) else None
        return RunLogHeader.model_construct(plan_hash=self.manifest.hash, sla_ms=self.sla_ms, codec=self.codec.name,
                                            codecs=list(self.controller.deploy.codecs),
                                            server=self.transport.server_url, controller=self.controller.config.to_dict(),
                                            edge_profile=self.edge_profile.to_dict(),
                                            cloud_profile=self.cloud_profile.to_dict(), accuracy=acc)

    def now(self) -> float:
        """Seconds since this runtime started: the clock of its observations and decisions."""
        return time.perf_counter() - self._t_start

    # ------------------------------------------------------------------ one request
    def infer(self, frame: np.ndarray, *, force: tuple[int, int] | None = None,
              source: str | None = None) -> RequestResult:
        """Answer one frame (uint8 [H, W, 3]). ``force=(plan_level, split)`` skips the controller."""
        with self._lock:
            if self._closed:
                raise EdgeError("this EdgeRuntime is closed")
            rid = self._next_id
            self._next_id += 1
            t0 = time.perf_counter()
            self._t_first = self._t_first if self._t_first is not None else t0
            rec = RequestRecord(id=rid, t=round(self.now(), 6), source=source, sla_ms=self.sla_ms)
            logits = None
            try:
                logits = self._infer(frame, force, t0, rec)
                rec.top1 = int(np.argmax(logits))
            except Exception as exc:  # noqa: BLE001 - one clear per-request error, never a crash
                rec.error = f"{type(exc).__name__}: {exc}"
            total = (time.perf_counter() - t0) * 1e3
            rec.measured.total_ms = round(total, 3)
            rec.violated = total > self.sla_ms
            if self.controller.probe_due(self.now()):
                rec.probe = self._probe(rec)  # after the answer is timed: not in total_ms, though infer() waits
            self._t_end = time.perf_counter()
            self._records.append(rec)
            self._log.record(rec)
            return RequestResult(rid, rec, logits)

    def _infer(self, frame: np.ndarray, force: tuple[int, int] | None, t0: float, rec: RequestRecord) -> np.ndarray:
        self._check_frame(frame)
        level, split, choice = self._decide(force, rec)
        m = self.manifest
        k, nseg = m.edge_segments(split), m.plan_level(level).num_segments
        t1 = time.perf_counter()
        state = self._head(level, k, frame)
        meas = rec.measured
        meas.edge_ms = round((time.perf_counter() - t1) * 1e3, 3)
        if split > m.num_blocks:  # device only
            meas.encode_ms = meas.transfer_ms = meas.cloud_ms = 0.0
            return state[0][0]
        t2 = time.perf_counter()
        # Triton's conventions: per-codec model names, gzip, no timings (asked within a quarter of the deadline)
        triton = self.transport.triton(self._timeout_s(t0) / 4)
        body, headers = self._encode(split, state, frame, rec, triton)
        meas.encode_ms = round((time.perf_counter() - t2) * 1e3, 3)
        timeout_s = self._timeout_s(t0)
        codec = self._codec_of(rec)
        name = dialect.tail_model(level, split, codec) if triton else model_name(level, split)
        assert rec.decision is not None and rec.predicted is not None  # set by _decide
        rec.decision.model = name
        ex = self.transport.infer(name, body, headers, timeout_s, str(rec.id),
                                  dialect.assumed_server_ms(rec.predicted.model_dump()) if triton else 0.0)
        self._observe(ex, rec, expected_ms=self.controller.deploy.server_ms(rec.decision.profile_level, split,
                                                                           codec.name))
        meas.upload_ms = round(ex.upload_s * 1e3, 3)
        rec.link = None if ex.link is None else LinkRecord(**ex.link)
        if ex.ok:
            meas.cloud_ms = round(ex.server.get("janus_server_ms", ex.server.get("assumed_server_ms", 0.0)), 3)
            meas.transfer_ms = round(ex.network_s * 1e3, 3)
            rec.server = {k: float(v) for k, v in ex.server.items()}
            return ex.logits[0]  # type: ignore[index]  # logits are set when the exchange answered (checked above)
        meas.transfer_ms, meas.cloud_ms = round(ex.elapsed_s * 1e3, 3), 0.0
        return self._fallback(level, split, k, nseg, frame, state, ex, rec)

    def _check_frame(self, frame: Any) -> None:
        img = self.manifest.model_info.img_size
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (img, img, 3):
            got = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ImageError(f"a frame must be uint8 [{img}, {img}, 3], got {got}")

    def _decide(self, force: tuple[int, int] | None, rec: RequestRecord,
                choice: Choice | None = None) -> tuple[int, int, Choice]:
        """(plan level, split, the controller's choice); a forced pair is evaluated, not chosen.
        ``choice``: one the caller already made (the pipelined runtime decides with its waits)."""
        m = self.manifest
        choice = choice if choice is not None else self.controller.decide(self.now())
        rec.controller = ControllerState(**choice.state())
        if force is not None:
            level, split = force
            lv = m.plan_level(level)
            if split not in m.candidates:
                raise EdgeError(f"forced split {split} is not a candidate {m.candidates}")
            pli = self.edge_profile.level_index(lv.policy, lv.alpha)
            d = self.controller.deploy.evaluate(pli, split, choice.bandwidth_mbps, choice.rtt_ms)
        else:
            d = choice.decision
            level, split = self._plan_level[d.level_index], d.split
            lv = m.plan_level(level)
        rec.decision = DecisionRecord(alpha=lv.alpha, policy=lv.policy, level=level,
                                      profile_level=d.level_index, split=split,
                                      label=config_label(lv.policy, lv.alpha, split),
                                      model=model_name(level, split) if split <= m.num_blocks else None,
                                      codec=d.codec if d.codec is not None or split > m.num_blocks else self.codec.name,
                                      meets_sla=bool(d.meets_sla), forced=force is not None)
        rec.predicted = Predicted.model_construct(**{k: _finite(v) for k, v in d.breakdown.items()},
                                                  total_ms=_finite(d.predicted_ms), bytes=int(d.bytes))
        return level, split, choice

    def _head(self, level: int, k: int, frame: np.ndarray) -> list[np.ndarray]:
        if k == 0:
            return [frame[None]]
        m = self.manifest.model_info
        return self._run(level, 0, k, [normalize(frame[None], m.mean, m.std)])

    def _encode(self, split: int, state: list[np.ndarray], frame: np.ndarray,
                rec: RequestRecord, triton: bool = False, request_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The request body and headers; ``request_id``: the id the answer must carry (the
        record's id when None; the streams runtime's frames get their log id only when written)."""
        codec = self._codec_of(rec)
        tensors = encode_payload(split, np.ascontiguousarray(frame[None]), None if split == 0 else (state[0], state[1]),
                                 codec)
        body, hlen = encode_request(tensors, request_id=str(rec.id) if request_id is None else request_id, **dialect.request_outputs(triton))
        rec.raw_bytes = len(body)
        headers = {HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream"}
        if codec.compress and triton:  # Triton takes gzip, not zstd
            body = dialect.gzip_body(body)
            headers["Content-Encoding"] = "gzip"
        elif codec.compress:
            body = compress(body, codec)
            headers["Content-Encoding"] = codec.compress
        headers["Content-Length"] = str(len(body))
        rec.bytes = len(body)
        return body, headers

    def _codec_of(self, rec: RequestRecord) -> Codec:
        """The codec this request's decision sends with (the run's main codec when it names none)."""
        name = rec.decision.codec if rec.decision is not None else None
        return get_codec(name) if name else self.codec

    def _timeout_s(self, t0: float) -> float:
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        return self.transport.options.policy.timeout_ms(self.sla_ms, elapsed_ms) / 1e3

    def _fallback(self, level: int, split: int, k: int, nseg: int, frame: np.ndarray, state: list[np.ndarray],
                  ex: Exchange, rec: RequestRecord) -> np.ndarray:
        t = time.perf_counter()
        if split == 0:
            m = self.manifest.model_info
            out = self._run(level, 0, nseg, [normalize(frame[None], m.mean, m.std)])
        else:
            out = self._run(level, k, nseg, state)
        rec.measured.fallback_ms = round((time.perf_counter() - t) * 1e3, 3)
        rec.fallback = FallbackRecord(kind=ex.kind, reason=ex.reason, ran_locally=f"segments {k if split else 0}..{nseg - 1}")
        return out[0][0]

    def _run(self, level: int, first: int, last: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
        from janus_deploy.backends import run_segments

        return run_segments(self.runner, level, first, last, inputs)

    # ------------------------------------------------------------------ observations
    def observations_of(self, ex: Exchange, *, probe: bool = False, expected_ms: float | None = None) -> list[Observation]:
        """What one exchange tells the controller (the runtime's half of the one feedback loop).

        Success: the upload is a link sample and ``network − upload`` an RTT sample, where the
        upload takes the server's own receive time (``janus_receive_ms``: headers to the body's
        last byte) when it reports one, else ``max(upload, network − RTT)``: a kernel socket takes
        a whole body at once, so on a real link only the receiver sees how long the body took
        (docs/testbed.md). A timeout: the bytes that crossed the link (handed to the socket and
        acknowledged by the server, :attr:`Exchange.unacked`) are a link sample, nothing at all
        is an outage; if all of them crossed, a 5xx or an unusable answer: the server's fault,
        never the link's. 401/403: a configuration error. ``expected_ms``: what the profile expects
        the server to spend on this request; with it, the server's reported ``janus_server_ms``
        (or, on a timeout after the whole upload, the least the server took) is a server-load
        sample (:mod:`janus_deploy.schedule.cloud_load`)."""
        t = self.now()
        load = {} if expected_ms is None else server_time(ex, expected_ms, self.controller.rtt_estimate(),
                                                           self.controller.estimator.estimate())
        if ex.ok:
            recv_s = ex.server.get("janus_receive_ms", 0.0) / 1e3
            if recv_s > 0:
                transfer_s = max(ex.upload_s, recv_s, 1e-4)
            else:
                transfer_s = max(ex.upload_s, ex.network_s - self.controller.rtt_estimate() / 1e3, 1e-4)
            rtt_ms = max(ex.network_s - (transfer_s if recv_s > 0 else ex.upload_s), 0.0) * 1e3
            return [Observation(t, "transfer", nbytes=ex.body_bytes, seconds=transfer_s, rtt_ms=rtt_ms,
                                server_ok=True, probe=probe, **load)]
        crossed = ex.sent - ex.unacked
        if ex.kind == "unauthorized":
            return [Observation(t, "unauthorized", probe=probe)]
        if ex.kind in ("server-error", "protocol") or (ex.kind == "timeout" and crossed >= ex.body_bytes):
            return [Observation(t, "server", server_ok=False, probe=probe, **(load if ex.kind == "timeout" else {}))]
        if ex.kind == "timeout" and crossed > 0 and ex.elapsed_s > 0:
            return [Observation(t, "transfer", nbytes=crossed, seconds=ex.elapsed_s, probe=probe)]
        return [Observation(t, "outage", server_ok=False if ex.kind == "unreachable" else None, probe=probe)]

    def _observe(self, ex: Exchange, rec: RequestRecord, probe: bool = False,
                 expected_ms: float | None = None) -> float | None:
        sample = None
        for obs in self.observations_of(ex, probe=probe, expected_ms=expected_ms):
            s = self.controller.observe(obs)
            sample = s if s is not None else sample
            rec.observations.append(obs)
        if ex.kind == "unauthorized" and not self._reported_auth:
            self._reported_auth = True
            rec.config_error = (f"{ex.reason}: offloading is off for this run; check the token "
                                   "(--token-file or JANUS_TOKEN)")
        return sample

    def _probe(self, rec: RequestRecord) -> ProbeRecord:
        """Probe the server (bandwidth sample; closes the breaker when it answers)."""
        ex = self.transport.probe(self.transport.options.policy.probe_timeout_ms(self.sla_ms) / 1e3)
        sample = self._observe(ex, rec, probe=True)
        return ProbeRecord(bytes=int(ex.body_bytes), ok=bool(ex.ok), ms=round(ex.elapsed_s * 1e3, 3),
                           sample_mbps=None if sample is None else round(float(sample), 4),
                           estimate_mbps=round(float(self.controller.estimator.estimate()), 4),
                           kind=None if ex.ok else ex.kind, reason=None if ex.ok else ex.reason)

    # ------------------------------------------------------------------ batches + summary
    def run(self, frames: Iterable[np.ndarray | tuple[str, np.ndarray]],
            progress: Callable[[RequestResult], None] | None = None) -> list[RequestResult]:
        """Answer frames one after the other (items may be ``(source, frame)`` pairs)."""
        out = []
        for item in frames:
            source, frame = item if isinstance(item, tuple) else (None, item)
            res = self.infer(frame, source=source)
            out.append(res)
            if progress:
                progress(res)
        return out

    @property
    def records(self) -> list[RequestRecord]:
        return list(self._records)

    @property
    def config_error(self) -> str | None:
        return self.controller.config_error

    @property
    def log_error(self) -> str | None:
        """Why the run log stopped being written (None while it is written)."""
        return self._log.error

    def summary(self) -> dict[str, Any]:
        wall = None if self._t_first is None else (self._t_end or time.perf_counter()) - self._t_first
        return summarize(self._records, self.sla_ms, wall)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.transport.close()
        finally:
            self._log.close()

    def __enter__(self) -> EdgeRuntime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def server_time(ex: Exchange, expected_ms: float, rtt_ms: float, mbps: float = 0.0) -> dict[str, float]:
    """The server-load sample of an exchange as Observation fields ({} without one): the server's
    reported ``janus_server_ms`` (and of it, ``server_compute_ms``, its decode + compute when it
    reports them), or on a timeout the least the server took: elapsed − the body's transfer (the
    upload, or the body at the estimated ``mbps`` when longer: a kernel socket takes a body at
    once) − RTT."""
    if ex.ok and "janus_server_ms" in ex.server:
        out = {"server_ms": round(ex.server["janus_server_ms"], 3), "expected_ms": round(expected_ms, 3)}
        if "janus_compute_ms" in ex.server:  # the built-in server says which part is decode + tail
            out["server_compute_ms"] = round(ex.server["janus_compute_ms"] + ex.server.get("janus_decode_ms", 0.0), 3)
        return out
    if not ex.ok and ex.kind == "timeout":  # the whole body went up; the answer never came
        sent_s = max(ex.upload_s, ex.body_bytes * 8 / (mbps * 1e6) if mbps > 0 and math.isfinite(mbps) else 0.0)
        waited = (ex.elapsed_s - sent_s) * 1e3 - rtt_ms
        return {"server_ms": round(max(waited, 0.0), 3), "expected_ms": round(expected_ms, 3)}
    return {}


def summarize(records: list[RequestRecord], sla_ms: float, wall_s: float | None) -> dict[str, Any]:
    """The run report (:func:`janus_deploy.report.run_report`) of a run's records, plus the
    prediction error without fallbacks and the wall time."""
    answered = [r for r in records if r.error is None]
    decided = [r.decision for r in answered if r.decision is not None]

    def pred(r: RequestRecord) -> float:
        p = r.predicted.total_ms if r.predicted is not None else None
        return float(p) if p is not None else math.nan

    rep = run_report([r.measured.total_ms for r in answered], sla_ms,
                     throughput_rps=(len(records) / wall_s) if wall_s else None,
                     labels=[d.label for d in decided],
                     alphas=[d.alpha if d.policy != "constant" else math.nan for d in decided],
                     sent_bytes=[r.bytes for r in answered],
                     predicted_ms=[pred(r) for r in answered],
                     fallback_kinds=[r.fallback.kind for r in answered if r.fallback is not None],
                     errors=len(records) - len(answered))
    direct = [r for r in answered if r.fallback is None]
    rep["median_abs_pred_err_pct_no_fallback"] = run_report(
        [r.measured.total_ms for r in direct], sla_ms, throughput_rps=None,
        predicted_ms=[pred(r) for r in direct])["median_abs_pred_err_pct"]
    rep["wall_s"] = wall_s
    return rep


def _finite(v: Any) -> float | None:
    """A predicted figure for the log: None where infinite (an outage) or missing."""
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


# ------------------------------------------------------------------ frame sources


def frames_from_images(folder: str | Path, img_size: int, limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    files = list_images(folder)
    for path, _ in files[: limit or None]:
        yield str(path), load_frame(path, img_size)


def frames_synthetic(count: int, img_size: int, seed: int = 0, batch: int = 64) -> Iterator[tuple[str, np.ndarray]]:
    if count < 1:
        raise EdgeError(f"--synthetic needs a count >= 1, got {count}")
    for start in range(0, count, batch):
        frames = synthetic_frames(min(batch, count - start), img_size, seed=seed + start)
        for i, fr in enumerate(frames):
            yield f"synthetic:{start + i}", fr


def frames_from_video(path: str | Path, img_size: int, limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of a video file, resized to the model's input (needs imageio or OpenCV)."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"video file {p} does not exist")

    def resize(rgb: np.ndarray) -> np.ndarray:
        im = Image.fromarray(np.ascontiguousarray(rgb[..., :3]).astype(np.uint8))
        return np.asarray(im.resize((img_size, img_size), Image.BILINEAR), dtype=np.uint8)

    try:
        import imageio.v3 as iio  # type: ignore[import-not-found]  # optional video reader, not a dependency
    except ImportError:
        iio = None
    if iio is not None:
        for i, fr in enumerate(iio.imiter(p)):
            if limit and i >= limit:
                return
            yield f"{p.name}#{i}", resize(fr)
        return
    try:
        import cv2  # type: ignore[import-not-found]  # optional video reader, not a dependency
    except ImportError:
        raise EdgeError("--video needs a video reader: pip install 'imageio[ffmpeg]' (or "
                        "opencv-python-headless); or extract frames and use --images") from None
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise ImageError(f"OpenCV cannot open video {p}")
    i = 0
    try:
        while not limit or i < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            yield f"{p.name}#{i}", resize(bgr[..., ::-1])
            i += 1
    finally:
        cap.release()


__all__ = ["EdgeError", "EdgeRuntime", "RequestResult", "frames_from_images", "frames_from_video",
           "frames_synthetic", "summarize"]
