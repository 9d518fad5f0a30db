"""RTT in user space on the reply path: a TCP relay that holds the server's bytes for one RTT.

Where the kernel has no ``netem`` (this project's machines), the testbed runs this relay inside
its namespace: the edge connects to ``--listen`` (over the shaped veth), the relay connects to the
server on ``--target`` and forwards the request bytes at once; every chunk of the answer is held
until ``arrival + RTT(arrival)`` (never reordered), with RTT the ping trace's sample in force
(``--interval`` seconds per sample, looping; the first sample until the run starts). So a request
pays upload + server time + one RTT, which is what the simulator charges. What it cannot do is
delay TCP's ACKs: the uplink's congestion control sees the queue in the ``tbf`` but not the RTT,
so slow start costs less than on a real cellular path (``docs/testbed.md``).

Control on stdin, one line each: ``start T0`` puts trace time 0 at ``time.monotonic() == T0``
(the clock every process of this machine shares); ``hold MS`` holds the RTT at MS until the next
``start`` (the testbed's calibration runs at 0); EOF ends the relay. Prints
``listening HOST:PORT`` on stdout once it accepts connections.

``python -m janus_deploy.testbed.delay --listen 10.213.0.2:8080 --target 127.0.0.1:8000
--rtt-file rtt.json --interval 1.0`` (``rtt.json``: a JSON list of RTT samples in ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from collections.abc import Sequence

READ_BYTES = 65536


class ReplyDelay:
    """The relay (module docstring); ``samples`` in ms, ``interval_s`` per sample."""

    def __init__(self, samples: Sequence[float], interval_s: float, target: tuple[str, int]) -> None:
        if not samples or interval_s <= 0:
            raise ValueError("the RTT trace needs samples and an interval > 0")
        self.samples = [max(float(v), 0.0) / 1e3 for v in samples]
        self.interval_s, self.target = float(interval_s), target
        self.t0: float | None = None
        self.hold: float | None = None
        self.connections = 0

    def command(self, line: str) -> None:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "start":
            self.hold, self.t0 = None, float(parts[1])
        elif len(parts) == 2 and parts[0] == "hold":
            self.hold, self.t0 = max(float(parts[1]), 0.0) / 1e3, None

    def rtt_s(self, now: float) -> float:
        if self.hold is not None:
            return self.hold
        if self.t0 is None or now < self.t0:
            return self.samples[0]
        return self.samples[int((now - self.t0) / self.interval_s) % len(self.samples)]

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        up = asyncio.create_task(self._forward(client_r, server_w))
        down = asyncio.create_task(self._delayed(server_r, client_w))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up.done():  # the edge hung up (or cancelled): close the server side, let the answer drain
            server_w.close()
            try:
                await asyncio.wait_for(down, 30.0)
            except (asyncio.TimeoutError, OSError):
                down.cancel()
        else:
            up.cancel()
        for w in (client_w, server_w):
            w.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(READ_BYTES):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass

    async def _delayed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        last = 0.0
        try:
            while data := await reader.read(READ_BYTES):
                now = loop.time()  # time.monotonic()
                last = max(last, now + self.rtt_s(now))
                queue.put_nowait((last, data))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            queue.put_nowait(None)
            try:
                await sender
            except OSError:
                pass


async def _serve(relay: ReplyDelay, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def control() -> None:  # stdin lines, in a thread
        for line in sys.stdin:
            loop.call_soon_threadsafe(relay.command, line)
        loop.call_soon_threadsafe(done.set)

    server = await asyncio.start_server(relay.handle, host, port)
    sock = server.sockets[0].getsockname()
    print(f"listening {sock[0]}:{sock[1]}", flush=True)
    threading.Thread(target=control, daemon=True).start()
    async with server:
        await done.wait()


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m janus_deploy.testbed.delay", description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, type=_hostport)
    ap.add_argument("--target", required=True, type=_hostport)
    ap.add_argument("--rtt-file", required=True, help="JSON list of RTT samples (ms)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds per RTT sample")
    a = ap.parse_args(argv)
    with open(a.rtt_file) as f:
        samples = json.load(f)
    relay = ReplyDelay(samples, a.interval, a.target)
    try:
        asyncio.run(_serve(relay, *a.listen))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
