"""The edge's side of the network: one HTTP exchange with the V2 server, probes, health.

:class:`Transport` owns the HTTP client, its event loop and the optional uplink shaper
(:mod:`janus_deploy.net.shaper`). Every call returns what happened on the wire (bytes sent,
upload time, network time, the server's answer or a classified failure) and never raises for a
network or server problem: deciding what that means is the controller's job.

Failure kinds (``docs/runtime.md``): ``unreachable`` (no connection), ``dropped`` (connection
lost mid-exchange), ``timeout`` (no answer before the deadline), ``server-error`` (a non-200
answer), ``unauthorized`` (401/403), ``protocol`` (an answer that is unreadable, or whose logits
are not finite or not of the plan's shape, from another model than asked, longer than the plan's
answer can be, or from a server that does not serve this plan: asked again after every new
connection).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.net.shaper import DEFAULT_CHUNK_BYTES, TraceShaper, unshaped_stream
from janus_deploy.schedule.exchange import MIN_TIMEOUT_MS, PROBE_BYTES, TIMEOUT_FACTOR, ExchangePolicy
from janus_deploy.triton import dialect
from janus_deploy.wire.v2 import HEADER_LENGTH, WireError, parse_header_length, parse_response

PROBE_PATH = "/janus/probe"
DEFAULT_PROBE_BYTES = PROBE_BYTES


class TransportError(JanusError):
    """The transport cannot be set up (bad URL or options)."""


def answer_limit(num_classes: int | None) -> int:
    """The most bytes an inference answer of ``num_classes`` logits can take: the fp32 tensor
    (binary or as JSON numbers of at most ~26 characters each) plus 64 KiB of JSON header."""
    return 64 * 1024 + 32 * max(int(num_classes or 0), 1000)


def served_plan(metadata: Any) -> str | None:
    """The plan hash a ``GET /v2`` answer (built-in server) or a Triton model configuration
    (``parameters.janus_plan_hash``) says is served; None when it says none."""
    if not isinstance(metadata, dict):
        return None
    janus = metadata.get("janus")
    if isinstance(janus, dict) and isinstance(janus.get("plan_hash"), str):
        return janus["plan_hash"]
    p = (metadata.get("parameters") or {}) if isinstance(metadata.get("parameters"), dict) else {}
    v = p.get("janus_plan_hash")
    if isinstance(v, dict):
        v = v.get("string_value")
    return v if isinstance(v, str) else None


@dataclass(frozen=True)
class TransportOptions:
    """``token``: bearer token sent to the server. The exchange is cancelled
    ``sla_ms·timeout_factor`` after the request started, never sooner than ``min_timeout_ms``
    after sending. ``probe_bytes``: size of a bandwidth probe. ``probe_rtt``: measure the RTT at
    start with health checks (else the controller's cold value). ``allow_unverified_plan``: use
    answers of a server that cannot say which plan it serves (refused by default).
    ``max_answer_bytes``: read at most this much of an answer (default: what the plan's logits
    can take, see :func:`answer_limit`). The deadline rule and the defaults are
    :class:`~janus_deploy.schedule.exchange.ExchangePolicy`'s (:attr:`policy`)."""

    token: str | None = None
    timeout_factor: float = TIMEOUT_FACTOR
    min_timeout_ms: float = MIN_TIMEOUT_MS
    chunk_bytes: int | None = DEFAULT_CHUNK_BYTES
    probe_bytes: int = DEFAULT_PROBE_BYTES
    probe_rtt: bool = True
    allow_unverified_plan: bool = False
    max_answer_bytes: int | None = None

    @property
    def policy(self) -> ExchangePolicy:
        """The exchange policy these options set (the rule the simulator applies too)."""
        return ExchangePolicy(self.timeout_factor, self.min_timeout_ms, self.probe_bytes)

    def validate(self) -> TransportOptions:
        if not self.timeout_factor > 0 or not self.min_timeout_ms >= 0:
            raise TransportError("timeout_factor must be > 0 and min_timeout_ms >= 0")
        if self.probe_bytes < 1:
            raise TransportError(f"the probe size must be >= 1 byte, got {self.probe_bytes}")
        if self.token is not None:
            if not self.token:
                raise TransportError("the token must not be empty")
            try:
                self.token.encode("ascii")
            except UnicodeEncodeError:
                raise TransportError("the token must be ASCII (it travels in an HTTP header)") from None
            if any(c in self.token for c in "\r\n"):
                raise TransportError("the token must be one line")
        return self


@dataclass
class Exchange:
    """One exchange: ``ok`` with logits, or a failure ``kind`` and ``reason``."""

    ok: bool
    sent: int  # bytes that left the edge (were handed to the socket)
    body_bytes: int
    upload_s: float  # first to last byte handed to the socket (the link's share)
    elapsed_s: float  # send to answer (or failure)
    link: dict[str, Any] | None = None  # trace rate vs achieved (shaped runs)
    logits: np.ndarray | None = None
    server: dict[str, float] = field(default_factory=dict)
    network_s: float = 0.0  # elapsed minus the server's own time
    kind: str | None = None
    reason: str | None = None
    status: int | None = None
    unacked: int = 0  # of ``sent``, bytes the kernel still held unacknowledged at a timeout (Linux)
    setup_s: float = 0.0  # send to the body's first byte offered (the client's request set-up)


def classify(exc: BaseException) -> tuple[str, str]:
    """Failure kind and reason of a transport exception."""
    import httpx

    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, httpx.TimeoutException)):
        return "timeout", "no answer before the deadline"
    if isinstance(exc, httpx.ConnectError):
        return "unreachable", f"cannot connect to the server ({exc or type(exc).__name__})"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.NetworkError,
                        ConnectionError)):
        return "dropped", f"connection dropped mid-transfer ({type(exc).__name__}: {exc})"
    if isinstance(exc, (WireError, ValueError, KeyError)):
        return "protocol", f"unreadable server response ({exc})"
    return "dropped", f"{type(exc).__name__}: {exc}"


class _Failure(Exception):
    def __init__(self, kind: str, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.status = kind, reason, status


def _error_text(resp: Any, data: bytes | None = None) -> str:
    text = data.decode("utf-8", "replace")[:200] if data is not None else resp.text[:200]
    try:
        j = json.loads(data) if data is not None else resp.json()
        return str(j.get("error", text) if isinstance(j, dict) else text)
    except ValueError:
        return text


class Transport:
    """HTTP client of one edge runtime (one request at a time)."""

    def __init__(self, server_url: str, options: TransportOptions = TransportOptions(),
                 shaper: TraceShaper | None = None, num_classes: int | None = None,
                 plan_hash: str | None = None) -> None:
        import httpx

        self.options = options.validate()
        self.server_url = server_url.rstrip("/")
        if not self.server_url.startswith(("http://", "https://")):
            raise TransportError(f"--server must be an http:// or https:// URL, got {server_url!r}")
        self.shaper = shaper
        self.num_classes = num_classes
        headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(base_url=self.server_url, headers=headers, timeout=None, trust_env=False,
                                         limits=httpx.Limits(max_connections=4, max_keepalive_connections=2))
        if shaper is not None and shaper.t0 is None:
            shaper.start()
        self.kind: str | None = None  # "triton" or "janus" once GET /v2 answered (docs/runtime.md)
        self._kind_asked = -1e9
        self._sockets: list[Any] = []  # of this client's connections, for _unacked_bytes
        # the plan check: answers are used only from a server that serves ``plan_hash``; asked
        # again after every new connection (a restarted server may serve another plan)
        self.plan_hash = plan_hash
        self._connects = 0
        self._verified: dict[str, int] = {}  # what was checked ("/v2" or a Triton model) -> connection count
        self.max_answer = options.max_answer_bytes or answer_limit(num_classes)

    # ------------------------------------------------------------------ calls
    def health_rtt(self, count: int = 3) -> float | None:
        """Min of ``count`` health-check round trips (ms); None when the server does not answer."""

        async def go() -> float | None:
            times = []
            for _ in range(count):
                t = time.perf_counter()
                try:
                    r = await asyncio.wait_for(self._client.get("/v2/health/live"), timeout=2.0)
                except Exception:  # noqa: BLE001 - unreachable: the caller reports it
                    return None
                if r.status_code != 200:
                    return None
                times.append((time.perf_counter() - t) * 1e3)
            return min(times)

        return self._loop.run_until_complete(go())

    def server_metadata(self, timeout_s: float = 5.0) -> tuple[int | None, dict[str, Any] | str]:
        """``GET /v2``: (status, JSON) or (None, why it failed)."""

        async def go():
            return await asyncio.wait_for(self._client.get("/v2"), timeout_s)

        try:
            r = self._loop.run_until_complete(go())
        except BaseException as exc:  # noqa: BLE001 - every failure of the exchange, cancellation included, is reported, not raised
            if isinstance(exc, KeyboardInterrupt):
                raise
            return None, classify(exc)[1]
        try:
            info = r.json() if r.status_code == 200 else _error_text(r)
        except ValueError:
            return r.status_code, f"the answer is not JSON ({r.text[:60]!r})"
        if r.status_code == 200 and not isinstance(info, dict):
            return r.status_code, f"the answer is JSON but not an object ({type(info).__name__})"
        if r.status_code == 200:
            self.kind = dialect.TRITON if dialect.is_triton(info) else "janus"
        return r.status_code, info

    def triton(self, timeout_s: float = 1.0) -> bool:
        """Whether the server is Triton Inference Server (asks ``GET /v2``, at most once a second,
        until the server answers; then remembered): its conventions differ (:mod:`janus_deploy.triton.dialect`).
        ``timeout_s`` bounds the question (a request passes a share of its own deadline, so a
        server that accepts and never answers does not stall it for a second)."""
        if self.kind is None and time.perf_counter() - self._kind_asked > 1.0:
            self._kind_asked = time.perf_counter()
            self.server_metadata(timeout_s=max(min(timeout_s, 1.0), 0.001))
        return self.kind == dialect.TRITON

    def infer(self, model: str, body: bytes, headers: dict[str, str], timeout_s: float, rid: str,
              assumed_server_ms: float = 0.0) -> Exchange:
        """POST a V2 body to ``model``; the answer's logits are checked (finite, [1, classes]).
        ``assumed_server_ms``: the server's share of the exchange when its answer reports none (Triton)."""
        ex = self._post(f"/v2/models/{model}/infer", body, headers, timeout_s, rid)
        if ex.ok and "janus_server_ms" not in ex.server and assumed_server_ms > 0:
            ex.server["assumed_server_ms"] = assumed_server_ms
            ex.network_s = max(ex.network_s - assumed_server_ms / 1e3, 0.0)
        return ex

    def probe(self, timeout_s: float) -> Exchange:
        """Send ``probe_bytes`` to the server's probe endpoint (the server discards them)."""
        if self.triton():  # no /janus/probe on Triton: a V2 inference on the repository's janus_probe
            path, body, headers = dialect.probe_request(self.options.probe_bytes)
            return self._post(path, body, headers, timeout_s, None)
        body = bytes(self.options.probe_bytes)
        headers = {"Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}
        return self._post(PROBE_PATH, body, headers, timeout_s, None)

    # ------------------------------------------------------------------ internals
    def _post(self, path: str, body: bytes, headers: dict[str, str], timeout_s: float, rid: str | None) -> Exchange:
        stats: dict[str, Any] = {"sent": 0}
        t_send = time.perf_counter()
        out = Exchange(False, 0, len(body), 0.0, 0.0)
        try:
            out = self._loop.run_until_complete(self._send(path, body, headers, stats, timeout_s, rid))
        except _Failure as f:
            out.kind, out.reason, out.status = f.kind, f.reason, f.status
        except BaseException as exc:  # noqa: BLE001 - classify every transport failure
            if isinstance(exc, KeyboardInterrupt):
                raise
            out.kind, out.reason = classify(exc)
        out.elapsed_s = time.perf_counter() - t_send
        out.sent = stats.get("sent", 0)
        out.unacked = min(stats.get("unacked", 0), out.sent)
        out.upload_s = max(stats.get("t_last", t_send) - stats.get("t_first", t_send), 0.0)
        out.setup_s = max(stats.get("t_first", t_send) - t_send, 0.0)
        out.link = self._link_record(stats, out.upload_s)
        return out

    async def _bounded_post(self, path: str, content: Any, headers: dict[str, str]) -> tuple[Any, bytes]:
        """POST and read at most ``max_answer`` bytes of the answer (a longer one is a protocol
        failure, found without holding more than the limit)."""
        req = self._client.build_request("POST", path, content=content, headers=headers,
                                         extensions={"trace": self._on_trace})
        resp = await self._client.send(req, stream=True)
        try:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.strip().isdigit() and int(declared) > self.max_answer:
                raise _Failure("protocol", f"the answer is {int(declared)} bytes, more than the "
                                           f"{self.max_answer} this plan's answer can take")
            buf = bytearray()
            chunks = resp.aiter_raw()
            try:
                async for chunk in chunks:
                    buf += chunk
                    if len(buf) > self.max_answer:
                        raise _Failure("protocol", f"the answer is longer than the {self.max_answer} bytes this "
                                                   "plan's answer can take")
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]  # httpx returns an async generator (has aclose); its annotation says AsyncIterator
        finally:
            await resp.aclose()
        enc = resp.headers.get("Content-Encoding", "").strip().lower()
        data = bytes(buf)
        if enc in ("gzip", "deflate"):
            d = zlib.decompressobj(zlib.MAX_WBITS | 32 if enc == "gzip" else zlib.MAX_WBITS)
            data = d.decompress(data, self.max_answer + 1)
            if len(data) > self.max_answer or d.unconsumed_tail:
                raise _Failure("protocol", f"the answer inflates past the {self.max_answer} bytes this plan's "
                                           "answer can take")
        elif enc not in ("", "identity"):
            raise _Failure("protocol", f"the answer has an unsupported Content-Encoding {enc!r}")
        return resp, data

    def _check_answer(self, header: dict[str, Any], raw: Any, model: str | None) -> None:
        """The answer is the one asked for: the model's name (and a version, when given, that is a
        version string), float32 logits."""
        name = header.get("model_name")
        if model is not None and name != model:
            raise _Failure("protocol", f"the answer is from model {str(name)[:60]!r}, not {model!r}")
        version = header.get("model_version")
        if version is not None and not (isinstance(version, str) and version.isdigit()):
            raise _Failure("protocol", f"the answer's model_version {str(version)[:20]!r} is not a version number")
        if getattr(raw, "dtype", None) != np.float32:
            raise _Failure("protocol", f"the answer's logits are {getattr(raw, 'dtype', type(raw).__name__)}, "
                                       "expected float32")

    async def _check_plan(self, model: str | None, timeout_s: float) -> None:
        """Use an answer only from a server that serves this plan; asked once per connection
        (``GET /v2``; a Triton model's configuration), so a restarted server is asked again."""
        if self.plan_hash is None:
            return
        key = f"/v2/models/{model}/config" if self.kind == dialect.TRITON and model else "/v2"
        if self._verified.get(key) == self._connects:
            return
        r = await asyncio.wait_for(self._client.get(key, extensions={"trace": self._on_trace}),
                                   max(timeout_s, 0.05))
        try:
            served = served_plan(r.json()) if r.status_code == 200 else None
        except ValueError:
            served = None
        if served is None and not self.options.allow_unverified_plan:
            raise _Failure("protocol", f"the server does not say which plan it serves ({key} answered "
                                       f"{r.status_code}); pass --allow-unverified-server to use it anyway")
        if served is not None and served != self.plan_hash:
            raise _Failure("protocol", f"the server now serves plan {served[:12]}, not this plan "
                                       f"({self.plan_hash[:12]})")
        self._verified[key] = self._connects

    async def _send(self, path: str, body: bytes, headers: dict[str, str], stats: dict[str, Any],
                    timeout_s: float, rid: str | None) -> Exchange:
        model = path.split("/")[3] if path.startswith("/v2/models/") and path.count("/") >= 4 else None
        content = self.shaper.stream(body, stats) if self.shaper is not None else unshaped_stream(body, stats)
        t = time.perf_counter()
        task = asyncio.ensure_future(self._bounded_post(path, content, headers))
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:  # the deadline: what of the body is still on this side of the link?
            stats["unacked"] = self._unacked_bytes()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise asyncio.TimeoutError
        resp, data = task.result()
        wall_s = time.perf_counter() - t
        if resp.status_code in (401, 403):
            raise _Failure("unauthorized", f"server answered {resp.status_code}: {_error_text(resp, data)}",
                           resp.status_code)
        if resp.status_code != 200:
            raise _Failure("server-error", f"server answered {resp.status_code}: {_error_text(resp, data)}",
                           resp.status_code)
        ex = Exchange(True, 0, len(body), 0.0, 0.0, status=200)
        if rid is None:  # a probe: only the server's receive time (ours says so) matters
            ex.network_s = wall_s
            try:
                ex.server = {"janus_receive_ms": float(json.loads(data)["receive_ms"])}
            except (ValueError, KeyError, TypeError):
                pass
            return ex
        try:
            hlen = parse_header_length(resp.headers.get(HEADER_LENGTH), len(data))
            header, outs = parse_response(data, hlen)
            raw = outs["logits"]
        except (WireError, KeyError) as exc:
            raise _Failure("protocol", f"unreadable server response: {exc}") from None
        if header.get("id") not in (None, rid):
            raise _Failure("protocol", f"response id {header.get('id')!r} does not match request {rid!r}")
        self._check_answer(header, raw, model)
        logits = np.asarray(raw, dtype=np.float32)
        await self._check_plan(model, timeout_s - (time.perf_counter() - t))
        want = [1, self.num_classes] if self.num_classes else None
        if logits.ndim != 2 or logits.shape[0] != 1 or (want and list(logits.shape) != want):
            raise _Failure("protocol", f"logits of shape {list(logits.shape)}, expected {want or '[1, classes]'}")
        if not np.isfinite(logits).all():
            raise _Failure("protocol", "the answer's logits are not all finite (NaN or infinity)")
        ex.logits = logits
        ex.server = {k: float(v) for k, v in (header.get("parameters") or {}).items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        timed = dialect.server_time_ms(outs) if self.kind == dialect.TRITON else None
        if timed is not None:  # Triton's fused tails answer the time they spent as an output
            ex.server["janus_server_ms"] = timed
        ex.network_s = max(wall_s - ex.server.get("janus_server_ms", 0.0) / 1e3, 0.0)
        return ex

    async def _on_trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: remember each new connection's socket."""
        if name == "connection.connect_tcp.complete":
            self._connects += 1
        if name == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                self._sockets.append(sock)

    def _unacked_bytes(self) -> int:
        """Bytes handed to this client's sockets that the server has not acknowledged yet (Linux
        ``SIOCOUTQ``: unsent + in flight; 0 elsewhere). A kernel socket takes a whole body at once,
        so on a real link "sent" says nothing about what crossed it; one request at a time, so the
        idle connections hold nothing."""
        import sys

        if not sys.platform.startswith("linux"):
            return 0
        import fcntl
        import struct
        import termios

        total, alive = 0, []
        for sock in self._sockets:
            if sock.fileno() < 0:
                continue
            alive.append(sock)
            try:
                total += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
            except OSError:
                pass
        self._sockets = alive
        return total

    def _link_record(self, stats: dict[str, Any], upload_s: float) -> dict[str, Any] | None:
        if self.shaper is None:
            return None
        t_a, t_b = stats.get("trace_t0"), stats.get("trace_t1")
        link: dict[str, Any] = {"trace_mbps": None, "trace_mean_mbps": None, "achieved_mbps": None}
        if t_a is not None:
            link["trace_mbps"] = round(self.shaper.trace.value_at(t_a), 4)
            if t_b is not None and t_b > t_a:
                link["trace_mean_mbps"] = round(self.shaper.mean_rate(t_a, t_b), 4)
        if upload_s > 0 and stats.get("sent"):
            link["achieved_mbps"] = round(stats["sent"] * 8 / upload_s / 1e6, 4)
        return link

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._client.aclose())
        finally:
            self._loop.close()


__all__ = ["DEFAULT_PROBE_BYTES", "Exchange", "PROBE_PATH", "Transport", "TransportError", "TransportOptions",
           "answer_limit", "classify", "served_plan"]
