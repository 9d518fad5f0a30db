"""Uplink shaping: replay a bandwidth trace on the sending side.

:class:`TraceShaper` paces an upload body so that it leaves the edge no faster than the trace
allows at the current time. It is a token bucket whose fill rate is the trace's bandwidth at the
current (looping) trace time: the bucket's cumulative credit is ``Trace.delivered_bits(t)`` (the
trace integrated from the shaper's start), a chunk may leave once the credit covers it, and idle
time earns at most ``burst_bytes`` of credit (default: one chunk, i.e. a link with no spare
buffer). Chunks are yielded by an async generator that httpx streams as the request body;
an outage (0 Mbit/s) holds the body until bandwidth returns (or the request times out).

Fidelity (achieved vs trace bandwidth, measured at the receiver) is reported in docs/runtime.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from janus_deploy import JanusError
from janus_deploy.sim.traces import MBPS, Trace

DEFAULT_CHUNK_BYTES = 8192
UNSHAPED_CHUNK_BYTES = 65536


class LinkError(JanusError):
    """A trace cannot be used to shape the uplink."""


class TraceShaper:
    """Token bucket pacing uploads to a bandwidth trace (Mbit/s samples, looping)."""

    def __init__(self, trace: Trace, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 burst_bytes: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if trace.unit != MBPS:
            raise LinkError(f"--trace needs a throughput trace in Mbit/s; {trace.name} is in {trace.unit}")
        if not any(v > 0 for v in trace.samples):
            raise LinkError(f"trace {trace.name} has no nonzero bandwidth sample: nothing could ever be sent")
        if chunk_bytes < 1:
            raise LinkError(f"chunk size must be >= 1 byte, got {chunk_bytes}")
        self.trace = trace
        self.chunk_bytes = int(chunk_bytes)
        self.burst_bits = 8.0 * (self.chunk_bytes if burst_bytes is None else max(int(burst_bytes), 0))
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
        return self.clock() - self.t0

    def rate_now(self) -> float:
        """The trace's bandwidth (Mbit/s) in force now."""
        return self.trace.value_at(self.now())

    def mean_rate(self, t_a: float, t_b: float) -> float:
        """Mean trace bandwidth between two trace times (what an ideal link would deliver)."""
        return self.trace.mean_rate(t_a, t_b)

    # ---------------------------------------------------------------- pacing
    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` from the bucket; returns the trace time at which they have left."""
        t = self.now()
        avail = self.trace.delivered_bits(t)
        self._used_bits = max(self._used_bits, avail - self.burst_bits)
        self._used_bits += nbytes * 8.0
        if self._used_bits <= avail:
            return t
        return t + self.trace.transfer_time(t, (self._used_bits - avail) / 8.0)

    async def stream(self, body: bytes, stats: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
        """Yield ``body`` in chunks, each once the trace lets it leave (see module docstring)."""
        mv = memoryview(body)
        stats = stats if stats is not None else {}
        stats.update(sent=0, t_first=time.perf_counter(), trace_t0=self.now())
        for off in range(0, len(mv), self.chunk_bytes):
            piece = mv[off: off + self.chunk_bytes]
            done_at = self.reserve(len(piece))
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
        stats["sent"] += len(piece)
        stats["t_last"] = time.perf_counter()
        yield bytes(piece)
        await asyncio.sleep(0)


__all__ = ["DEFAULT_CHUNK_BYTES", "LinkError", "TraceShaper", "unshaped_stream"]
