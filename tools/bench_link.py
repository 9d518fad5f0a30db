"""Link fidelity of the kernel-shaped uplink (tbf on a veth, janus_deploy.testbed) next to the
user-space token bucket (janus_deploy.net.shaper), on the same veth pair: receiver-measured
throughput over the trace's rate at constant rates. Needs root.

    python tools/bench_link.py                        # 2, 20, 50, 100 Mbit/s, 150 712-byte bodies
    python tools/bench_link.py --rates 2 20 --bytes 47000 --repeat 10 --json

A receiver inside the namespace reads length-prefixed bodies and times each from its first byte
to its last (what the server's ``janus_receive_ms`` measures); the sender sends each body whole
(kernel: ``sendall``, the qdisc paces it) or paced by ``TraceShaper`` over an unshaped veth
(user space), one body at a time with 50 ms pauses. Ratio = bytes / receive time / trace rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PORT = 9000


def receiver(host: str, port: int) -> None:
    """Inside the namespace: per body, reply with the seconds from its first to its last byte."""
    srv = socket.create_server((host, port))
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                head = b""
                while len(head) < 8:
                    chunk = conn.recv(8 - len(head))
                    if not chunk:
                        break
                    if not head:
                        t_first = time.perf_counter()
                    head += chunk
                if len(head) < 8:
                    break
                (n,) = struct.unpack("!Q", head)
                left = n
                while left:
                    chunk = conn.recv(min(left, 1 << 20))
                    if not chunk:
                        return
                    left -= len(chunk)
                conn.sendall(struct.pack("!d", time.perf_counter() - t_first))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the receiver hung up")
        buf += chunk
    return buf


def kernel_runs(addr: tuple[str, int], nbytes: int, repeat: int) -> list[float]:
    out = []
    with socket.create_connection(addr) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = struct.pack("!Q", nbytes) + bytes(nbytes)
        for _ in range(repeat):
            s.sendall(body)
            out.append(struct.unpack("!d", _recv_exact(s, 8))[0])
            time.sleep(0.05)
    return out


def user_runs(addr: tuple[str, int], nbytes: int, repeat: int, mbps: float) -> list[float]:
    from janus_deploy.net.shaper import TraceShaper
    from janus_deploy.net.traces import Trace

    async def go() -> list[float]:
        reader, writer = await asyncio.open_connection(*addr)
        shaper = TraceShaper(Trace([mbps], 1.0, f"constant {mbps}"))
        shaper.start()
        times = []
        for _ in range(repeat):
            writer.write(struct.pack("!Q", nbytes))  # like HTTP headers: the receiver's clock starts here
            async for chunk in shaper.stream(bytes(nbytes)):
                writer.write(chunk)
                await writer.drain()
            times.append(struct.unpack("!d", await reader.readexactly(8))[0])
            await asyncio.sleep(0.05)
        writer.close()
        return times

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[2, 20, 50, 100], help="Mbit/s")
    ap.add_argument("--bytes", type=int, default=150712, help="body size (default: the 150 712-byte "
                    "frame body of docs/runtime.md's user-space table)")
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--receiver", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.receiver:
        host, port = a.receiver.rsplit(":", 1)
        receiver(host, int(port))
        return

    from janus_deploy.net.traces import Trace
    from janus_deploy.testbed.netns import KernelLink, Netns, check_privileges

    check_privileges()
    rows = []
    with Netns() as ns:
        recv = ns.popen([sys.executable, __file__, "--receiver", f"{ns.ns_ip}:{PORT}"], stdout=subprocess.PIPE,
                        text=True)
        assert recv.stdout is not None and recv.stdout.readline().startswith("listening")
        addr = (ns.ns_ip, PORT)
        for mbps in a.rates:
            link = KernelLink(ns.host_if, Trace([mbps], 1.0, f"constant {mbps}"))
            link.install()
            try:
                k = kernel_runs(addr, a.bytes, a.repeat)
            finally:
                link.remove()
            u = user_runs(addr, a.bytes, a.repeat, mbps)
            row = {"mbps": mbps, "bytes": a.bytes, "repeat": a.repeat}
            for name, times in (("kernel", k), ("user_space", u)):
                r = np.array([a.bytes * 8 / t / 1e6 / mbps for t in times])
                row[name] = {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}
            rows.append(row)
            if not a.json:
                print(f"{mbps:g} Mbit/s: kernel {row['kernel']['median']:.3f} ({row['kernel']['min']:.3f}-"
                      f"{row['kernel']['max']:.3f}), user space {row['user_space']['median']:.3f} "
                      f"({row['user_space']['min']:.3f}-{row['user_space']['max']:.3f})", flush=True)
    if a.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
