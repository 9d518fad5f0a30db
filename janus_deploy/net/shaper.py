"""Uplink shaping: replay a bandwidth trace on the sending side.

:class:`TraceShaper` paces an upload body so that it leaves the edge no faster than the trace
allows at the current time. It is a token bucket whose fill rate is the trace's bandwidth at the
current (looping) trace time: the bucket's cumulative credit is ``Trace.delivered_bits(t)`` (the
trace integrated from the shaper's start), a chunk is released once the credit covers it (i.e.
when the link would have finished carrying it), and idle time banks at most ``burst_bytes`` of
credit (default 0: an idle link does not save up capacity, so every chunk, the first included,
takes its transmission time). Within one body, a chunk that the HTTP stack asks for late (socket
write, event-loop overhead) may catch up on up to ``CATCHUP_CHUNKS`` chunks of credit, so the
body as a whole still takes the time the trace dictates instead of that plus the overheads.
Chunks are yielded by an async generator that httpx streams as the request body;
an outage (0 Mbit/s) holds the body until bandwidth returns (or the request times out).

Fidelity (achieved vs trace bandwidth, measured at the receiver) is reported in docs/runtime.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from janus_deploy import JanusError
from janus_deploy.net.traces import MBPS, Trace

DEFAULT_CHUNK_BYTES = None  # auto: about CHUNK_MS of the current trace bandwidth
CHUNK_MS = 2.0
MIN_CHUNK_BYTES = 4096
MAX_CHUNK_BYTES = 65536
CATCHUP_CHUNKS = 8
UNSHAPED_CHUNK_BYTES = 65536


class LinkError(JanusError):
    """A trace cannot be used to shape the uplink."""


class TraceShaper:
    """Token bucket pacing uploads to a bandwidth trace (Mbit/s samples, looping)."""

    def __init__(self, trace: Trace, *, chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
                 burst_bytes: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if trace.unit != MBPS:
            raise LinkError(f"--trace needs a throughput trace in Mbit/s; {trace.name} is in {trace.unit}")
        if not any(v > 0 for v in trace.samples):
            raise LinkError(f"trace {trace.name} has no nonzero bandwidth sample: nothing could ever be sent")
        if chunk_bytes is not None and chunk_bytes < 1:
            raise LinkError(f"chunk size must be >= 1 byte, got {chunk_bytes}")
        self.trace = trace
        self.chunk_bytes = None if chunk_bytes is None else int(chunk_bytes)
        self.burst_bits = 8.0 * max(int(burst_bytes or 0), 0)
        self.clock = clock
        self.t0: float | None = None
        self._used_bits = 0.0

    # ---------------------------------------------------------------- time
    def start(self, t0: float | None = None) -> None:
        """Set trace time 0 (default: now) and empty the bucket."""
        self.t0 = self.clock() if t0 is None else t0
        self._used_bits = 0.0

    def now(self) -> float:
        """Seconds into the trace (starts the trace on first use)."""
        if self.t0 is None:
            self.start()
        return self.clock() - (self.t0 or 0.0)  # set by start()

    def mean_rate(self, t_a: float, t_b: float) -> float:
        """Mean trace bandwidth between two trace times (what an ideal link would deliver)."""
        return self.trace.mean_rate(t_a, t_b)

    # ---------------------------------------------------------------- pacing
    def reserve(self, nbytes: int, *, within_body: bool = False) -> float:
        """Take ``nbytes`` from the bucket; returns the trace time at which they have left.

        ``within_body``: the bytes continue a body already being sent (late chunks may catch up).
        """
        t = self.now()
        avail = self.trace.delivered_bits(t)
        depth = max(self.burst_bits, 8.0 * CATCHUP_CHUNKS * self.chunk_size(t)) if within_body else self.burst_bits
        self._used_bits = max(self._used_bits, avail - depth)
        self._used_bits += nbytes * 8.0
        if self._used_bits <= avail:
            return t
        return t + self.trace.transfer_time(t, (self._used_bits - avail) / 8.0)

    def chunk_size(self, t: float | None = None) -> int:
        """Bytes per chunk: fixed, or about ``CHUNK_MS`` of the bandwidth at trace time ``t``
        (within [MIN_CHUNK_BYTES, MAX_CHUNK_BYTES]): fine-grained at low rates, few wake-ups at
        high rates."""
        if self.chunk_bytes is not None:
            return self.chunk_bytes
        rate = self.trace.value_at(self.now() if t is None else t)
        return int(min(max(rate * 1e6 / 8 * CHUNK_MS / 1e3, MIN_CHUNK_BYTES), MAX_CHUNK_BYTES))

    async def stream(self, body: bytes, stats: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
        """Yield ``body`` in chunks, each once the trace lets it leave (see module docstring)."""
        mv = memoryview(body)
        stats = stats if stats is not None else {}
        stats.update(sent=0, t_first=time.perf_counter(), trace_t0=self.now())
        off = 0
        while off < len(mv):
            piece = mv[off: off + self.chunk_size()]
            done_at = self.reserve(len(piece), within_body=off > 0)
            off += len(piece)
            delay = done_at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            stats["sent"] += len(piece)
            stats["t_last"] = time.perf_counter()
            stats["trace_t1"] = self.now()
            yield bytes(piece)


async def unshaped_stream(body: bytes, stats: dict[str, Any] | None = None,
                          chunk_bytes: int = UNSHAPED_CHUNK_BYTES) -> AsyncIterator[bytes]:
    """The body in chunks as fast as the socket takes them (same timing stats as the shaper)."""
    mv = memoryview(body)
    stats = stats if stats is not None else {}
    stats.update(sent=0, t_first=time.perf_counter())
    for off in range(0, len(mv), chunk_bytes):
        piece = mv[off: off + chunk_bytes]
        yield bytes(piece)
        # the consumer asks for the next chunk once this one is written to the transport
        stats["sent"] += len(piece)
        stats["t_last"] = time.perf_counter()
        await asyncio.sleep(0)


__all__ = ["DEFAULT_CHUNK_BYTES", "LinkError", "TraceShaper", "unshaped_stream"]
