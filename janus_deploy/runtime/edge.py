"""The edge half: per request, decide (α, s), run the head locally, send the payload, get logits.

:class:`EdgeRuntime` serves one request at a time (use one per client thread):

1. bandwidth estimate from earlier transfers (:mod:`janus_deploy.schedule.estimators`), RTT
   estimate (health probes at start, then an EWMA of observed response delays);
2. :class:`~janus_deploy.schedule.scheduler.Scheduler` picks (α, split) for the SLA;
3. the local runner runs segments ``0 .. edge_segments(split) - 1`` of that level (sessions stay
   resident, so switching levels costs no reload once used);
4. the boundary tensors are encoded with the profile's codec (:mod:`janus_deploy.wire.codecs`)
   into a V2 binary-tensor body (:mod:`janus_deploy.wire.v2`), zstd-compressed for
   ``fp16-zstd``, and streamed to the server's tail model ``janus_L{level}_S{split}`` (paced by a
   bandwidth trace when one is given, :mod:`janus_deploy.net.shaper`);
5. if the server is unreachable, answers an error, is slower than the SLA (the exchange is
   cancelled at the deadline) or the connection drops mid-transfer, the remaining segments run
   locally (*fallback*), so every request gets exactly one answer.

One JSON line per request goes to ``log`` (schema in ``docs/runtime.md``).
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.images import ImageError, list_images, load_frame, normalize, synthetic_frames
from janus_deploy.plan.manifest import Manifest
from janus_deploy.wire.codecs import Codec, compress, encode_tokens, get_codec
from janus_deploy.profile.table import Profile, load_profile
from janus_deploy.net.shaper import DEFAULT_CHUNK_BYTES, TraceShaper, unshaped_stream
from janus_deploy.wire.v2 import (HEADER_LENGTH, WireError, encode_request, model_name, parse_header_length,
                                       parse_response)
from janus_deploy.schedule.estimators import Estimator, EstimatorError, make_estimator
from janus_deploy.schedule.scheduler import Scheduler

DEFAULT_COLD_START_MBPS = 100.0
DEFAULT_PROBE_INTERVAL_S = 2.0
DEFAULT_PROBE_BYTES = 32768
PROBE_PATH = "/janus/probe"
RTT_EWMA = 0.3


class EdgeError(JanusError):
    """The edge runtime cannot start (inconsistent plan / profiles / options)."""


@dataclass
class RequestResult:
    """The one answer of one request: logits (None on a per-request error) and its log record."""

    id: int
    record: dict[str, Any]
    logits: np.ndarray | None = None

    @property
    def top1(self) -> int | None:
        return self.record.get("top1")

    @property
    def fallback(self) -> dict[str, Any] | None:
        return self.record.get("fallback")

    @property
    def error(self) -> str | None:
        return self.record.get("error")

    @property
    def total_ms(self) -> float:
        return self.record["measured"]["total_ms"]


class _Failure(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class _Exchange:
    logits: np.ndarray
    server: dict[str, float]
    network_ms: float


def _classify(exc: BaseException) -> tuple[str, str]:
    import httpx

    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, httpx.TimeoutException)):
        return "timeout", "no answer before the SLA deadline"
    if isinstance(exc, httpx.ConnectError):
        return "unreachable", f"cannot connect to the server ({exc or type(exc).__name__})"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.NetworkError,
                        ConnectionError)):
        return "dropped", f"connection dropped mid-transfer ({type(exc).__name__}: {exc})"
    if isinstance(exc, (WireError, ValueError, KeyError)):
        return "protocol", f"unreadable server response ({exc})"
    return "dropped", f"{type(exc).__name__}: {exc}"


class EdgeRuntime:
    """Splits every request between this device and a V2 server (see module docstring).

    ``plan``/``engines``: a :class:`Manifest` or plan directory, and a runner or engine
    directory. ``edge_profile``/``cloud_profile``: profiles (objects or paths) of the same plan.
    ``sla_ms``: latency SLA; the server exchange is cancelled ``sla_ms·timeout_factor`` after the
    request started (but never sooner than ``min_timeout_ms`` after sending). ``estimator``: a
    name (harmonic, ewma, robustmpc) or an :class:`Estimator`; its cold start is
    ``cold_start_mbps`` (default: the trace mean, else 100 Mbit/s). ``rtt_ms``: fix the RTT the
    scheduler charges (default: measured). ``trace``: a bandwidth :class:`Trace` replayed on the
    upload. ``log``: path or text stream for the JSON lines. ``probe_interval_s``: when no
    transfer has been observed for this long (e.g. the estimate fell so low that every request
    ran device-only), send a ``probe_bytes`` probe to the server after the current request, so
    the estimate can recover; while a successful probe still leaves the estimate under half of
    what it measured (stale low samples in the window), the next request probes again
    (None: never probe).
    """

    def __init__(
        self,
        plan: Manifest | str | Path,
        engines: Any,
        edge_profile: Profile | str | Path,
        cloud_profile: Profile | str | Path,
        *,
        server_url: str,
        sla_ms: float,
        accuracy: Any = None,
        codec: str | None = None,
        estimator: str | Estimator = "harmonic",
        cold_start_mbps: float | None = None,
        rtt_ms: float | None = None,
        margin: float = 0.0,
        token: str | None = None,
        trace: Any = None,
        chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
        log: str | Path | IO[str] | None = None,
        timeout_factor: float = 1.0,
        min_timeout_ms: float = 20.0,
        threads: int = 0,
        probe_rtt: bool = True,
        probe_interval_s: float | None = DEFAULT_PROBE_INTERVAL_S,
        probe_bytes: int = DEFAULT_PROBE_BYTES,
    ) -> None:
        import httpx

        from janus_deploy.backends import load_runner

        self.manifest = plan if isinstance(plan, Manifest) else Manifest.load(plan)
        if isinstance(engines, (str, Path)):
            engines = load_runner(self.manifest, engines, threads=threads)
        self.runner = engines
        self.edge_profile = edge_profile if isinstance(edge_profile, Profile) else load_profile(edge_profile)
        self.cloud_profile = cloud_profile if isinstance(cloud_profile, Profile) else load_profile(cloud_profile)
        if isinstance(accuracy, (str, Path)):
            from janus_deploy.schedule.accuracy_view import load_accuracy

            accuracy = load_accuracy(accuracy)
        if not (isinstance(sla_ms, (int, float)) and math.isfinite(sla_ms) and sla_ms > 0):
            raise EdgeError(f"--sla must be a positive number of ms, got {sla_ms!r}")
        if timeout_factor <= 0 or min_timeout_ms < 0:
            raise EdgeError("timeout_factor must be > 0 and min_timeout_ms >= 0")
        self.sla_ms = float(sla_ms)
        self.timeout_factor = float(timeout_factor)
        self.min_timeout_ms = float(min_timeout_ms)
        self.margin = float(margin)
        self._check_profiles()
        from janus_deploy.schedule.scheduler import SchedulerError

        try:
            self.scheduler = Scheduler(self.edge_profile, self.cloud_profile, accuracy, "janus-deploy",
                                       codec, self.sla_ms)
        except SchedulerError as exc:
            raise EdgeError(str(exc)) from None
        self.codec: Codec = get_codec(self.scheduler.codec)
        self._plan_level = self._map_levels()

        self.shaper: TraceShaper | None = None
        if trace is not None:
            self.shaper = trace if isinstance(trace, TraceShaper) else TraceShaper(trace, chunk_bytes=chunk_bytes)
        if cold_start_mbps is None:
            cold_start_mbps = self.shaper.trace.mean() if self.shaper else DEFAULT_COLD_START_MBPS
            if cold_start_mbps <= 0:
                cold_start_mbps = DEFAULT_COLD_START_MBPS
        try:
            self.estimator = (estimator if isinstance(estimator, Estimator)
                              else make_estimator(estimator, cold_start_mbps))
        except EstimatorError as exc:
            raise EdgeError(str(exc)) from None
        self.estimator_name = estimator if isinstance(estimator, str) else type(estimator).__name__
        self._rtt_fixed = rtt_ms is not None
        self.rtt_ms = float(rtt_ms) if rtt_ms is not None else 0.0

        self.server_url = server_url.rstrip("/")
        if not self.server_url.startswith(("http://", "https://")):
            raise EdgeError(f"--server must be an http:// or https:// URL, got {server_url!r}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(base_url=self.server_url, headers=headers, timeout=None,
                                         trust_env=False,
                                         limits=httpx.Limits(max_connections=4, max_keepalive_connections=2))
        self._lock = threading.Lock()
        self._next_id = 0
        self._records: list[dict[str, Any]] = []
        self._t_start: float | None = None
        self._t_end: float | None = None
        self._closed = False
        if probe_interval_s is not None and probe_interval_s <= 0:
            raise EdgeError(f"the probe interval must be > 0 s (or None), got {probe_interval_s}")
        self.probe_interval_s = probe_interval_s
        self.probe_bytes = int(probe_bytes)
        self._last_obs = time.perf_counter()
        self._probe_again = False
        self._log, self._own_log = None, False
        if isinstance(log, (str, Path)):
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            self._log, self._own_log = open(log, "w"), True
        elif log is not None:
            self._log = log
        if self.shaper is not None and self.shaper.t0 is None:
            self.shaper.start()
        if probe_rtt and not self._rtt_fixed:
            probed = self._loop.run_until_complete(self._probe_rtt())
            if probed is not None:
                self.rtt_ms = probed

    # ------------------------------------------------------------------ setup helpers
    def _check_profiles(self) -> None:
        from janus_deploy.profile.measure import check_profile_for_plan

        for name, prof in (("edge", self.edge_profile), ("cloud", self.cloud_profile)):
            check_profile_for_plan(prof, self.manifest, f"{name} profile")

    def _map_levels(self) -> dict[int, int]:
        out = {}
        for li in self.scheduler.janus_levels:
            lv = self.edge_profile.levels[li]
            try:
                out[li] = self.manifest.find_level(lv.alpha, lv.policy)
            except JanusError as exc:
                raise EdgeError(f"the profile's level {lv.label} is not in the plan: {exc}") from None
        return out

    async def _probe_rtt(self, count: int = 3) -> float | None:
        times = []
        for _ in range(count):
            t = time.perf_counter()
            try:
                r = await asyncio.wait_for(self._client.get("/v2/health/live"), timeout=2.0)
            except Exception:  # noqa: BLE001 - unreachable at start: requests will fall back
                return None
            if r.status_code != 200:
                return None
            times.append((time.perf_counter() - t) * 1e3)
        return min(times)

    # ------------------------------------------------------------------ prediction
    # ------------------------------------------------------------------ one request
    def infer(self, frame: np.ndarray, *, force: tuple[int, int] | None = None,
              source: str | None = None) -> RequestResult:
        """Answer one frame (uint8 [H, W, 3]). ``force=(plan_level, split)`` skips the scheduler."""
        with self._lock:
            if self._closed:
                raise EdgeError("this EdgeRuntime is closed")
            rid = self._next_id
            self._next_id += 1
            t0 = time.perf_counter()
            if self._t_start is None:
                self._t_start = t0
            rec: dict[str, Any] = {"id": rid, "t": round(t0 - self._t_start, 4), "source": source,
                                   "sla_ms": self.sla_ms, "decision": None, "predicted": None,
                                   "measured": {}, "bytes": 0, "estimator": None, "link": None,
                                   "server": None, "fallback": None, "top1": None, "violated": None,
                                   "error": None}
            logits = None
            try:
                logits = self._infer(frame, force, t0, rec)
                rec["top1"] = int(np.argmax(logits))
            except Exception as exc:  # noqa: BLE001 - one clear per-request error, never a crash
                rec["error"] = f"{type(exc).__name__}: {exc}"
            total = (time.perf_counter() - t0) * 1e3
            rec["measured"]["total_ms"] = round(total, 3)
            rec["violated"] = total > self.sla_ms
            if self.probe_interval_s is not None and (
                    self._probe_again or time.perf_counter() - self._last_obs > self.probe_interval_s):
                rec["probe"] = self._probe()  # after the answer is timed: not in total_ms, though infer() waits
            self._t_end = time.perf_counter()
            self._records.append(rec)
            if self._log is not None:
                self._log.write(_dumps(rec) + "\n")
                self._log.flush()
            return RequestResult(rid, rec, logits)

    def _infer(self, frame: np.ndarray, force: tuple[int, int] | None, t0: float,
               rec: dict[str, Any]) -> np.ndarray:
        m = self.manifest
        img = m.model["img_size"]
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (img, img, 3):
            got = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ImageError(f"a frame must be uint8 [{img}, {img}, 3], got {got}")
        est = self.estimator.estimate()
        rtt = self.rtt_ms
        est_state = {"name": self.estimator_name, "estimate_mbps": round(est, 4),
                     "observations": self.estimator.observations,
                     "recent_error": round(self.estimator.recent_error(), 4), "rtt_ms": round(rtt, 3),
                     "sample_mbps": None}
        rec["estimator"] = est_state
        # ---- decision
        if force is not None:
            level, split = force
            lv = m.level(level)
            pli = self.edge_profile.level_index(lv["policy"], lv["alpha"])
            if split not in m.candidates:
                raise EdgeError(f"forced split {split} is not a candidate {m.candidates}")
            d = self.scheduler.evaluate(pli, split, est, rtt)
            pred = dict(d.breakdown, total_ms=d.predicted_ms, bytes=d.bytes)
            meets = d.meets_sla
        else:
            d = self.scheduler.decide(est, rtt, self.margin)
            pli, split = d.level_index, d.split
            level = self._plan_level[pli]
            pred = dict(d.breakdown, total_ms=d.predicted_ms, bytes=d.bytes)
            meets = d.meets_sla
        n = m.num_blocks
        lv = m.level(level)
        tail_name = model_name(level, split) if split <= n else None
        rec["decision"] = {"alpha": lv["alpha"], "policy": lv["policy"], "level": level, "profile_level": pli,
                           "split": split, "model": tail_name, "codec": self.codec.name,
                           "meets_sla": bool(meets), "forced": force is not None}
        rec["predicted"] = {k: _num(v) for k, v in pred.items()}  # inf (outage) -> null
        meas = rec["measured"]
        # ---- edge head
        t1 = time.perf_counter()
        k = m.edge_segments(split)
        nseg = len(lv["segments"])
        state: list[np.ndarray] = [frame[None]]
        if k > 0:
            x = normalize(frame[None], m.model["mean"], m.model["std"])
            state = self._run(level, 0, k, [x])
        t2 = time.perf_counter()
        meas["edge_ms"] = round((t2 - t1) * 1e3, 3)
        if tail_name is None:  # device only
            meas.update(encode_ms=0.0, transfer_ms=0.0, cloud_ms=0.0)
            return state[0][0]
        # ---- encode
        if split == 0:
            tensors = {"frame": np.ascontiguousarray(frame[None])}
        else:
            tensors = encode_tokens(state[0], state[1], self.codec)
        body, hlen = encode_request(tensors, request_id=str(rec["id"]))
        raw_bytes = len(body)
        headers = {HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream",
                   "Content-Length": str(len(body))}
        if self.codec.compress:
            body = compress(body, self.codec)
            headers["Content-Encoding"] = self.codec.compress
            headers["Content-Length"] = str(len(body))
        t3 = time.perf_counter()
        meas["encode_ms"] = round((t3 - t2) * 1e3, 3)
        rec["bytes"] = len(body)
        rec["raw_bytes"] = raw_bytes
        # ---- exchange
        elapsed_ms = (t3 - t0) * 1e3
        timeout_s = max(self.sla_ms * self.timeout_factor - elapsed_ms, self.min_timeout_ms) / 1e3
        stats: dict[str, Any] = {"sent": 0}
        t_send = time.perf_counter()
        try:
            ex = self._loop.run_until_complete(
                self._exchange(tail_name, body, headers, stats, timeout_s, str(rec["id"])))
        except _Failure as f:
            fail = f
        except BaseException as exc:  # noqa: BLE001 - classify every transport failure
            if isinstance(exc, KeyboardInterrupt):
                raise
            fail = _Failure(*_classify(exc))
        else:
            fail = None
        t4 = time.perf_counter()
        upload_s = max(stats.get("t_last", t_send) - stats.get("t_first", t_send), 0.0)
        meas["upload_ms"] = round(upload_s * 1e3, 3)
        self._link_record(rec, stats, upload_s)
        if fail is None:
            meas["cloud_ms"] = round(ex.server.get("janus_server_ms", 0.0), 3)
            meas["transfer_ms"] = round(ex.network_ms, 3)
            rec["server"] = ex.server
            self._observe_success(len(body), upload_s, ex.network_ms / 1e3, est_state)
            return ex.logits[0]
        # ---- fallback: finish locally
        meas["transfer_ms"] = round((t4 - t_send) * 1e3, 3)
        meas["cloud_ms"] = 0.0
        self._observe_failure(fail.kind, stats, t4 - t_send, est_state, len(body))
        if split == 0:
            x = normalize(frame[None], m.model["mean"], m.model["std"])
            out = self._run(level, 0, nseg, [x])
        else:
            out = self._run(level, k, nseg, state)
        meas["fallback_ms"] = round((time.perf_counter() - t4) * 1e3, 3)
        rec["fallback"] = {"kind": fail.kind, "reason": fail.reason, "ran_locally": f"segments {k if split else 0}..{nseg - 1}"}
        return out[0][0]

    def _run(self, level: int, first: int, last: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
        from janus_deploy.backends import run_segments

        return run_segments(self.runner, level, first, last, inputs)

    async def _exchange(self, model: str, body: bytes, headers: dict[str, str], stats: dict[str, Any],
                        timeout_s: float, rid: str) -> _Exchange:
        content = self.shaper.stream(body, stats) if self.shaper is not None else unshaped_stream(body, stats)
        t = time.perf_counter()
        resp = await asyncio.wait_for(
            self._client.post(f"/v2/models/{model}/infer", content=content, headers=headers), timeout_s)
        wall_ms = (time.perf_counter() - t) * 1e3
        if resp.status_code != 200:
            try:
                j = resp.json()
                msg = j.get("error", resp.text) if isinstance(j, dict) else resp.text[:200]
            except ValueError:
                msg = resp.text[:200]
            raise _Failure("server-error", f"server answered {resp.status_code}: {msg}")
        try:
            hlen = parse_header_length(resp.headers.get(HEADER_LENGTH), len(resp.content))
            header, outs = parse_response(resp.content, hlen)
            logits = np.asarray(outs["logits"], dtype=np.float32)
        except (WireError, KeyError) as exc:
            raise _Failure("protocol", f"unreadable server response: {exc}") from None
        if header.get("id") not in (None, rid):
            raise _Failure("protocol", f"response id {header.get('id')!r} does not match request {rid!r}")
        if logits.ndim != 2 or logits.shape[0] != 1:
            raise _Failure("protocol", f"logits of shape {list(logits.shape)}, expected [1, classes]")
        server = {k: float(v) for k, v in (header.get("parameters") or {}).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        network_ms = max(wall_ms - server.get("janus_server_ms", 0.0), 0.0)
        return _Exchange(logits, server, network_ms)

    # ------------------------------------------------------------------ observations
    def _link_record(self, rec: dict[str, Any], stats: dict[str, Any], upload_s: float) -> None:
        if self.shaper is None:
            return
        t_a, t_b = stats.get("trace_t0"), stats.get("trace_t1")
        link = {"trace_mbps": None, "trace_mean_mbps": None, "achieved_mbps": None}
        if t_a is not None:
            link["trace_mbps"] = round(self.shaper.trace.value_at(t_a), 4)
            if t_b is not None and t_b > t_a:
                link["trace_mean_mbps"] = round(self.shaper.mean_rate(t_a, t_b), 4)
        if upload_s > 0 and stats.get("sent"):
            link["achieved_mbps"] = round(stats["sent"] * 8 / upload_s / 1e6, 4)
        rec["link"] = link

    def _probe(self) -> dict[str, Any]:
        """Send ``probe_bytes`` to the server's probe endpoint and observe the transfer."""
        body = bytes(self.probe_bytes)
        stats: dict[str, Any] = {"sent": 0}
        state: dict[str, Any] = {"sample_mbps": None}
        timeout_s = max(self.sla_ms * self.timeout_factor, self.min_timeout_ms) / 1e3
        t = time.perf_counter()

        async def go() -> float:
            content = self.shaper.stream(body, stats) if self.shaper is not None else unshaped_stream(body, stats)
            t1 = time.perf_counter()
            r = await asyncio.wait_for(self._client.post(
                PROBE_PATH, content=content,
                headers={"Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}), timeout_s)
            if r.status_code != 200:
                raise _Failure("server-error", f"probe answered {r.status_code}")
            return time.perf_counter() - t1

        out: dict[str, Any] = {"bytes": len(body)}
        try:
            network_s = self._loop.run_until_complete(go())
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            kind, reason = (exc.kind, exc.reason) if isinstance(exc, _Failure) else _classify(exc)
            self._observe_failure(kind, stats, time.perf_counter() - t, state, len(body))
            out.update(ok=False, kind=kind, reason=reason)
        else:
            upload_s = max(stats.get("t_last", t) - stats.get("t_first", t), 0.0)
            self._observe_success(len(body), upload_s, network_s, state)
            out.update(ok=True)
        est = self.estimator.estimate()
        # the link answers but the window still holds stale low samples: probe again next request
        self._probe_again = bool(out["ok"] and state["sample_mbps"] and est < 0.5 * state["sample_mbps"])
        self._last_obs = time.perf_counter()  # probe at most once per interval, whatever happened
        out.update(ms=round((time.perf_counter() - t) * 1e3, 3), sample_mbps=state["sample_mbps"],
                   estimate_mbps=round(est, 4))
        return out

    def _observe_success(self, nbytes: int, upload_s: float, network_s: float, est_state: dict[str, Any]) -> None:
        self._last_obs = time.perf_counter()
        rtt_s = self.rtt_ms / 1e3
        transfer_s = max(upload_s, network_s - rtt_s, 1e-4)
        try:
            est_state["sample_mbps"] = round(self.estimator.observe(nbytes, transfer_s), 4)
        except EstimatorError:
            pass
        if not self._rtt_fixed:
            sample = max(network_s - upload_s, 0.0) * 1e3
            self.rtt_ms = (1 - RTT_EWMA) * self.rtt_ms + RTT_EWMA * sample

    def _observe_failure(self, kind: str, stats: dict[str, Any], elapsed_s: float, est_state: dict[str, Any],
                         body_bytes: int) -> None:
        """``elapsed_s``: from the start of the exchange to the failure."""
        sent = stats.get("sent", 0)
        if kind in ("server-error", "protocol"):
            return  # the link worked; the server did not
        if kind == "timeout" and sent >= body_bytes:
            return  # the whole body left, the answer was late (cold engine, busy server): not the link
        self._last_obs = time.perf_counter()
        if kind == "timeout" and sent > 0 and elapsed_s > 0:
            rate = self.estimator.observe(sent, elapsed_s)  # what got through before the deadline
        else:
            rate = 0.0  # nothing got through: an outage sample
            self.estimator.observe_rate(0.0)
        est_state["sample_mbps"] = round(rate, 4)

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
    def records(self) -> list[dict[str, Any]]:
        return list(self._records)

    def summary(self) -> dict[str, Any]:
        return summarize(self._records, self.sla_ms,
                         None if self._t_start is None else (self._t_end or time.perf_counter()) - self._t_start)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run_until_complete(self._client.aclose())
        finally:
            self._loop.close()
            if self._own_log and self._log is not None:
                self._log.close()

    def __enter__(self) -> "EdgeRuntime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _num(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 3) if math.isfinite(v) else None
    return v


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _dumps(rec: dict[str, Any]) -> str:
    """One strict-JSON log line (non-finite numbers become null)."""
    return json.dumps(_clean(rec), default=_jsonable, allow_nan=False)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))


def summarize(records: list[dict[str, Any]], sla_ms: float, wall_s: float | None) -> dict[str, Any]:
    """Violation ratio, throughput, chosen configurations, prediction error of a run's records."""
    answered = [r for r in records if r.get("error") is None]
    lat = [r["measured"]["total_ms"] for r in answered]
    fb = [r for r in answered if r.get("fallback")]
    errs = []
    for r in answered:
        p = (r.get("predicted") or {}).get("total_ms")
        if isinstance(p, (int, float)) and math.isfinite(p) and r["measured"]["total_ms"] > 0:
            errs.append(abs(p - r["measured"]["total_ms"]) / r["measured"]["total_ms"] * 100)
    errs_ok = [abs(r["predicted"]["total_ms"] - r["measured"]["total_ms"]) / r["measured"]["total_ms"] * 100
               for r in answered if not r.get("fallback") and isinstance((r.get("predicted") or {}).get("total_ms"), (int, float))
               and math.isfinite(r["predicted"]["total_ms"]) and r["measured"]["total_ms"] > 0]
    configs = Counter(
        f"{r['decision']['policy'][:3]}:{r['decision']['alpha']:g}@{r['decision']['split']}"
        for r in answered if r.get("decision"))
    return {
        "requests": len(records),
        "answered": len(answered),
        "errors": len(records) - len(answered),
        "fallbacks": len(fb),
        "fallback_kinds": dict(Counter(r["fallback"]["kind"] for r in fb)),
        "sla_ms": sla_ms,
        "violation_ratio": (sum(1 for x in lat if x > sla_ms) / len(lat)) if lat else None,
        "throughput_rps": (len(records) / wall_s) if wall_s else None,
        "latency_ms": {"mean": statistics.fmean(lat) if lat else None, "p50": _pct(lat, 50),
                       "p95": _pct(lat, 95), "max": max(lat) if lat else None},
        "median_abs_pred_err_pct": statistics.median(errs) if errs else None,
        "median_abs_pred_err_pct_no_fallback": statistics.median(errs_ok) if errs_ok else None,
        "configurations": dict(configs.most_common()),
        "mean_bytes": statistics.fmean([r.get("bytes", 0) for r in answered]) if answered else None,
        "wall_s": wall_s,
    }


def render_summary(summary: dict[str, Any], console: Any = None) -> None:
    """A rich table of :func:`summarize`'s output."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def f(v: Any, fmt: str = "{:.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    t = Table(title="janus-deploy run", show_header=False)
    t.add_column("metric", style="bold")
    t.add_column("value")
    lat = summary["latency_ms"]
    t.add_row("requests", f"{summary['requests']} ({summary['answered']} answered, {summary['errors']} errors)")
    kinds = ", ".join(f"{k}: {v}" for k, v in summary["fallback_kinds"].items())
    t.add_row("fallbacks (device-only)", f"{summary['fallbacks']}" + (f" ({kinds})" if kinds else ""))
    t.add_row("SLA", f"{summary['sla_ms']:g} ms")
    t.add_row("violation ratio", f(summary["violation_ratio"] * 100 if summary["violation_ratio"] is not None else None,
                                   "{:.1f} %"))
    t.add_row("throughput", f(summary["throughput_rps"], "{:.2f} req/s"))
    t.add_row("latency mean / p50 / p95 / max",
              " / ".join(f(lat[k]) for k in ("mean", "p50", "p95", "max")) + " ms")
    t.add_row("median |prediction error|", f(summary["median_abs_pred_err_pct"], "{:.1f} %")
              + f"  (without fallbacks: {f(summary['median_abs_pred_err_pct_no_fallback'], '{:.1f} %')})")
    t.add_row("mean bytes sent", f(summary["mean_bytes"], "{:.0f}"))
    console.print(t)
    if summary["configurations"]:
        c = Table(title="chosen configurations (policy:level@split)")
        c.add_column("configuration")
        c.add_column("requests", justify="right")
        c.add_column("share", justify="right")
        total = sum(summary["configurations"].values())
        for k, v in summary["configurations"].items():
            c.add_row(k, str(v), f"{v / total * 100:.1f} %")
        console.print(c)


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
        import imageio.v3 as iio  # type: ignore[import-not-found]
    except ImportError:
        iio = None
    if iio is not None:
        for i, fr in enumerate(iio.imiter(p)):
            if limit and i >= limit:
                return
            yield f"{p.name}#{i}", resize(fr)
        return
    try:
        import cv2  # type: ignore[import-not-found]
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
           "frames_synthetic", "render_summary", "summarize"]
