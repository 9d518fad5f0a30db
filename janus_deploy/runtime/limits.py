"""What keeps the V2 server up under abuse: connection, header, idle and body-memory limits.

uvicorn's own settings do part of it and are used as they are:

* ``timeout_keep_alive``: a connection idle after a response is closed (``--keep-alive``);
* ``h11_max_incomplete_event_size``: request headers over :data:`MAX_HEADER_BYTES` get 400;
* ``limit_concurrency``: request tasks beyond the limit get 503 (a backstop: see below);
* ``backlog``: the listen queue.

uvicorn has no deadline for request headers (its keep-alive timer is armed only after a
response, and every byte received disarms it: headers sent one byte a second keep a connection
forever) and no cap on open sockets (``limit_concurrency`` answers 503 to *requests* but keeps
accepting connections until the process runs out of file descriptors, and asyncio then logs a
traceback per failed ``accept``). :func:`guarded_protocol` adds both to uvicorn's h11 protocol:

* **header deadline** (``--header-timeout``): a connection must complete a request's headers
  within this many seconds of opening or of its previous response, else it is closed;
* **connection cap** (``--max-connections``): past the cap, the connection idle longest (no
  request in progress) is closed to make room, so idle connections can never lock a client out;
  when every connection is busy the new one gets 503 and is closed. The first time the cap is
  hit the server logs one line, then at most one line a minute with counts.

:class:`BodyBudget` bounds the request bodies held in memory (``--max-inflight-mb``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from janus_deploy import JanusError

log = logging.getLogger("janus_deploy.runtime.server")

MiB = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024  # h11's default, set explicitly
FD_RESERVE = 128  # descriptors kept for everything but client connections
LOG_EVERY_S = 60.0
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_KEEP_ALIVE_S = 5
DEFAULT_MAX_INFLIGHT_MB = 64.0
DEFAULT_MAX_JSON_MB = 4.0  # parsed JSON takes 4-6x its size in memory while it is decoded


class LimitError(JanusError):
    """A server limit is set to a value that cannot work."""


@dataclass(frozen=True)
class ServerLimits:
    """Connection and memory limits of one server (see the module docstring and docs/runtime.md)."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    keep_alive_s: int = DEFAULT_KEEP_ALIVE_S
    max_inflight_mb: float = DEFAULT_MAX_INFLIGHT_MB

    def __post_init__(self) -> None:
        if int(self.max_connections) != self.max_connections or self.max_connections < 1:
            raise LimitError(f"--max-connections must be an integer >= 1, got {self.max_connections}")
        if not self.header_timeout_s > 0:
            raise LimitError(f"--header-timeout must be > 0 s, got {self.header_timeout_s}")
        if int(self.keep_alive_s) != self.keep_alive_s or self.keep_alive_s < 1:
            raise LimitError(f"--keep-alive must be a whole number of seconds >= 1, got {self.keep_alive_s}")
        if not self.max_inflight_mb > 0:
            raise LimitError(f"--max-inflight-mb must be > 0, got {self.max_inflight_mb}")

    @property
    def max_inflight(self) -> int:
        return int(self.max_inflight_mb * MiB)


def fd_capacity() -> int:
    """Connections this process can hold: raises the soft descriptor limit to the hard one (as
    servers do) and returns it less :data:`FD_RESERVE`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft - FD_RESERVE, 1)


# ------------------------------------------------------------------------------- body memory
class BodyBudget:
    """A semaphore on bytes: bodies wait (first come, first served) until their bytes fit in
    ``limit``; a body larger than ``limit`` is admitted alone. :meth:`adjust` re-sizes a
    reservation to what the request really keeps (decoded tensors) without waiting, which may
    overdraw the budget; new bodies then wait until it is back under the limit. Event-loop
    only (not thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0
        self.peak = 0
        self.waited = 0  # bodies that had to wait
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for _, f in self._waiters if not f.done())

    def _fits(self, n: int) -> bool:
        return self.used == 0 or self.used + n <= self.limit

    def _take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    async def acquire(self, n: int) -> int:
        """Reserve ``n`` bytes (waits; cancellation-safe); returns the amount to release."""
        n = max(int(n), 0)
        if not self._waiters and self._fits(n):
            self._take(n)
            return n
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        self.waited += 1
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():  # granted just as we were cancelled
                self.release(n)
            else:
                fut.cancel()
                self._wake()
            raise
        return n

    def adjust(self, held: int, n: int) -> int:
        """Change a reservation of ``held`` bytes to ``n`` (never waits); returns ``n``."""
        n = max(int(n), 0)
        self.used += n - held
        self.peak = max(self.peak, self.used)
        if n < held:
            self._wake()
        return n

    def release(self, n: int) -> None:
        self.used -= n
        self._wake()

    def ticket(self) -> Ticket:
        return Ticket(self)

    def _wake(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if not self._fits(n):
                break
            self._waiters.popleft()
            self._take(n)
            fut.set_result(None)


class Ticket:
    """One request's reservation in a :class:`BodyBudget` (release it in a ``finally``)."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.n = 0

    async def acquire(self, n: int) -> None:
        self.n = await self.budget.acquire(n)

    def resize(self, n: int) -> None:
        self.n = self.budget.adjust(self.n, n)

    def release(self) -> None:
        n, self.n = self.n, 0
        if n:
            self.budget.release(n)


# ------------------------------------------------------------------------------- connections
class ConnectionGuard:
    """Open connections of one server: which are idle (no request in progress), the cap, the
    counters and the rate-limited log line."""

    def __init__(self, limits: ServerLimits, capacity: int | None = None) -> None:
        cap = fd_capacity() if capacity is None else capacity
        self.max_connections = min(int(limits.max_connections), cap)
        if self.max_connections < limits.max_connections:
            log.warning("--max-connections %d is over what this process's file-descriptor limit allows; "
                        "using %d", limits.max_connections, self.max_connections)
        self.header_timeout_s = float(limits.header_timeout_s)
        self.open = 0
        self.closing = 0  # evicted, not yet gone
        self.peak = 0
        self.idle: OrderedDict[Any, None] = OrderedDict()
        self.stats = {"evicted_idle": 0, "refused_busy": 0, "header_timeouts": 0, "limit_log_lines": 0}
        self._logged_at: float | None = None
        self._since_log = {"evicted_idle": 0, "refused_busy": 0}

    def opened(self, proto: Any) -> bool:
        """A connection arrived; False when it must be refused (every other one is busy)."""
        self.open += 1
        self.peak = max(self.peak, self.open - self.closing)
        self.idle[proto] = None
        if self.open - self.closing <= self.max_connections:
            return True
        victim = next((p for p in self.idle if p is not proto), None)
        if victim is not None:
            self.idle.pop(victim)
            victim._janus_evicted = True
            self.closing += 1
            victim.transport.close()
            self._count("evicted_idle")
            return True
        self.idle.pop(proto)
        proto._janus_evicted = True
        self.closing += 1
        self._count("refused_busy")
        return False

    def busy(self, proto: Any) -> None:
        self.idle.pop(proto, None)

    def idle_again(self, proto: Any) -> None:
        self.idle[proto] = None
        self.idle.move_to_end(proto)

    def closed(self, proto: Any) -> None:
        self.open -= 1
        if getattr(proto, "_janus_evicted", False):
            self.closing -= 1
        self.idle.pop(proto, None)

    def _count(self, what: str) -> None:
        self.stats[what] += 1
        self._since_log[what] += 1
        now = time.monotonic()
        if self._logged_at is None:
            log.warning("connection limit reached: %d connections open (--max-connections %d); from now on the "
                        "connection idle longest is closed for each new one (503 when none is idle)",
                        self.open - self.closing, self.max_connections)
        elif now - self._logged_at >= LOG_EVERY_S:
            log.warning("connection limit (%d): %d idle connections closed, %d refused in the last %.0f s",
                        self.max_connections, self._since_log["evicted_idle"], self._since_log["refused_busy"],
                        now - self._logged_at)
        else:
            return
        self.stats["limit_log_lines"] += 1
        self._logged_at = now
        self._since_log = {"evicted_idle": 0, "refused_busy": 0}

    def as_dict(self) -> dict[str, int]:
        return {"open": self.open - self.closing, "peak": self.peak, "idle": len(self.idle),
                "max_connections": self.max_connections, **self.stats}


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
         b"retry-after: 1\r\ncontent-length: 64\r\n\r\n"
         + b'{"error": "server busy: every connection is in use; retry"}'.ljust(64))


def guarded_protocol(guard: ConnectionGuard) -> type:
    """uvicorn's h11 protocol with the header deadline and the connection cap of ``guard``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._janus_timer: asyncio.TimerHandle | None = None
            self._janus_evicted = False
            if not guard.opened(self):
                transport.write(_BUSY)
                transport.close()
                return
            self._janus_arm()

        def _janus_arm(self) -> None:
            self._janus_disarm()
            self._janus_timer = self.loop.call_later(guard.header_timeout_s, self._janus_header_deadline)

        def _janus_disarm(self) -> None:
            if self._janus_timer is not None:
                self._janus_timer.cancel()
                self._janus_timer = None

        def _janus_header_deadline(self) -> None:
            self._janus_timer = None
            if not self.transport.is_closing():
                guard.stats["header_timeouts"] += 1
                self.transport.close()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers are complete
                self._janus_disarm()
                guard.busy(self)

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():
                guard.idle_again(self)
                self._janus_arm()  # the next request's headers are due within the deadline too
            super().on_response_complete()  # may start a pipelined request (handle_events)

        def connection_lost(self, exc) -> None:
            self._janus_disarm()
            guard.closed(self)
            super().connection_lost(exc)

    return GuardedH11


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio logs a traceback each time ``accept`` fails for lack of descriptors (once a
    second while it lasts); log one line a minute instead (the connection cap should keep the
    server below the limit, but other descriptors count too)."""
    previous = loop.get_exception_handler()
    state: dict[str, Any] = {"at": None, "count": 0}

    def handler(lp, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            state["count"] += 1
            now = time.monotonic()
            if state["at"] is None or now - state["at"] >= LOG_EVERY_S:
                log.warning("cannot accept connections: %s (%d times); lower --max-connections or raise the "
                            "process's file-descriptor limit", context.get("exception"), state["count"])
                state["at"], state["count"] = now, 0
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)


MMAP_THRESHOLD = 1 << 20


def return_large_frees() -> bool:
    """glibc only: allocations of 1 MiB or more are memory-mapped and given back to the system
    when freed. glibc's default threshold grows with the largest block freed (up to 32 MiB), after
    which a 12 MB body freed stays in the heap as resident memory; a server that reads bodies of
    any size should not keep its largest one. False where it does not apply."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, MMAP_THRESHOLD))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def uvicorn_config(app: Any, limits: ServerLimits, guard: ConnectionGuard, **kwargs: Any):
    """A uvicorn ``Config`` with the limits applied (kwargs: host, port, log_level, ...)."""
    import uvicorn

    return_large_frees()

    return uvicorn.Config(
        app, http=guarded_protocol(guard), timeout_keep_alive=int(limits.keep_alive_s),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        # a backstop on request tasks (a client that hung up leaves its task running until the
        # inference ends); the guard keeps connections at max_connections, below this
        limit_concurrency=guard.max_connections + 64,
        backlog=min(2048, max(guard.max_connections, 128)),
        **kwargs)


__all__ = ["BodyBudget", "ConnectionGuard", "Ticket", "return_large_frees", "LimitError", "MAX_HEADER_BYTES", "ServerLimits", "fd_capacity",
           "guarded_protocol", "quiet_accept_errors", "uvicorn_config"]


@dataclass(frozen=True)
class BodyLimits:
    """The request-body rules of the V2 server, apart from any web framework (so they are tested
    without one): a body over ``max_body`` bytes (``--max-body-mb``, also after decompression)
    is 413; so is JSON over :attr:`json_limit` (``--max-json-mb``: a JSON-only body, or the JSON
    header before binary tensors), refused from the headers alone where they announce it."""

    max_body: int
    max_json: int

    @property
    def json_limit(self) -> int:
        """JSON is parsed holding Python's GIL: its size bounds how long one request can stall
        every other thread of the server (docs/runtime.md)."""
        return min(self.max_json, self.max_body)

    def json_too_large(self, nbytes: int | str):
        from janus_deploy.wire.v2 import HEADER_LENGTH, WireError

        return WireError(f"the request's JSON ({nbytes} bytes) is over the server's --max-json-mb limit "
                         f"({self.json_limit} bytes); send tensors with the binary tensor extension "
                         f"({HEADER_LENGTH})", 413)

    def body_too_large(self, nbytes: int | None = None):
        from janus_deploy.wire.v2 import WireError

        what = f"request body of {nbytes} bytes" if nbytes is not None else "request body"
        return WireError(f"{what} is over the server's --max-body-mb limit ({self.max_body} bytes)", 413)

    def declared(self, content_length: str | None, content_encoding: str | None, header_length: str | None,
                 json_only: bool) -> int | None:
        """The body's length from its headers (None: chunked), refusing from the headers alone
        what could not be served: a body over ``max_body``, an uncompressed ``json_only`` body or
        a JSON header (``header_length``) over :attr:`json_limit`. Every length is parsed
        bounded (WireError 400 for a malformed one, never Python's int-size limit)."""
        from janus_deploy.wire.v2 import MAX_LENGTH_DIGITS, WireError, header_length_value, short

        declared = None
        if content_length is not None:
            text = content_length.strip()
            if not (text.isdigit() and text.isascii() and len(text) <= MAX_LENGTH_DIGITS):
                raise WireError(f"Content-Length must be an integer, got {short(content_length)}")
            declared = int(text)
            if declared > self.max_body:
                raise self.body_too_large(declared)
            identity = (content_encoding or "identity").strip().lower() in ("", "identity")
            if json_only and identity and declared > self.json_limit:
                raise self.json_too_large(declared)
        if header_length is not None and (n := header_length_value(header_length)) > self.json_limit:
            raise self.json_too_large(n)
        return declared

    def check_streamed(self, nbytes: int) -> None:
        """A chunked body that has reached ``nbytes`` so far."""
        if nbytes > self.max_body:
            raise self.body_too_large()
