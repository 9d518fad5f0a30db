#!/usr/bin/env python
"""What the Triton front (janus_deploy/triton/front.py) costs, and what it stops.

One tritonserver behind its front; the same fp16 requests sent, interleaved, to the front and
straight to tritonserver's port, so the ratio front / direct is measured within one run on one
server; per ``--isolation`` layout: ``auto`` (tritonserver in a network namespace of its own: the
direct client's sockets are made in that namespace, which needs root; the front's connections
are made there by janus-deploy's helper) and ``off`` (tritonserver on loopback; the direct client
sends the front's key). Each client is one process with one keep-alive connection per target
(http.client). Then four concurrent 1 GiB gzip bombs (about 1 MB each on
the wire) through the front: status, seconds to the answer, RSS growth of tritonserver's process
tree and of the front's process.

    PYTHONPATH=$PWD python tools/bench_triton_front.py                # digits plan, 200 rounds
    PYTHONPATH=$PWD python tools/bench_triton_front.py --rounds 500 --clients 1,4 --isolation auto,off

Not part of CI; docs/benchmarks.md has the figures and the command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
MiB = 1024 * 1024


def _bomb() -> tuple[bytes, int]:
    header = b'{"inputs":[{"name":"tokens","datatype":"FP32","shape":[1,5,192],"parameters":{"binary_data_size":3840}}]}'
    c = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(MiB)
    return b"".join([c.compress(header), *(c.compress(zeros) for _ in range(1024)), c.flush()]), len(header)


def _rss(pid: int, tree: bool) -> int:
    import psutil

    p = psutil.Process(pid)
    procs = [p, *p.children(recursive=True)] if tree else [p]
    return sum(q.memory_info().rss for q in procs)


def _ns_socket(pid: int):
    """A TCP socket made in process ``pid``'s network namespace (setns there and back: root)."""
    import ctypes
    import os
    import socket

    libc = ctypes.CDLL(None, use_errno=True)
    own, target = os.open("/proc/self/ns/net", os.O_RDONLY), os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(target, 0x40000000) != 0:
            sys.exit(f"cannot enter tritonserver's network namespace: {os.strerror(ctypes.get_errno())} (needs root)")
        try:
            return socket.socket()
        finally:
            libc.setns(own, 0x40000000)
    finally:
        os.close(own)
        os.close(target)


def _client_process(targets, bodies, rounds: int, seed: int, queue) -> None:
    """One client (its own process: the front shares no GIL with the clients, as in a deployment)."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def __init__(self, url: str, ns_pid: int | None) -> None:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            super().__init__(host, int(port), timeout=60)
            self.ns_pid = ns_pid

        def connect(self) -> None:
            if self.ns_pid is None:
                return super().connect()
            self.sock = _ns_socket(self.ns_pid)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client's own connect
            self.sock.settimeout(self.timeout)
            self.sock.connect((self.host, self.port))

    conns = {k: Conn(url, ns_pid) for k, (url, _, ns_pid) in targets.items()}
    out: dict[str, list[float]] = {k: [] for k in targets}
    errors: list[str] = []
    for i in range(rounds):
        for k in (("front", "direct") if (i + seed) % 2 == 0 else ("direct", "front")):
            _, extra, _ = targets[k]
            name, body, h = bodies[(i + seed) % len(bodies)]
            t = time.perf_counter()
            conns[k].request("POST", f"/v2/models/{name}/infer", body=body, headers={**h, **extra})
            r = conns[k].getresponse()
            content = r.read()
            out[k].append((time.perf_counter() - t) * 1e3)
            if r.status != 200:
                errors.append(f"{k} {r.status} {content[:100]!r}")
    queue.put((out, errors))


def _latencies(srv, bodies, clients: int, rounds: int) -> dict[str, list[float]]:
    """Per target, the latency (ms) of each request; targets alternate request by request; each
    client in its own process."""
    import multiprocessing as mp

    from janus_deploy.triton.front import UPSTREAM_KEY_HEADER

    key = {UPSTREAM_KEY_HEADER: srv.upstream_key} if srv.upstream_key else {}
    targets = {"front": (srv.url, {}, None), "direct": (srv.upstream_url, key, srv.pid if srv.isolated else None)}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_client_process, args=(targets, bodies, rounds, s, queue)) for s in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    out: dict[str, list[float]] = {k: [] for k in targets}
    errors = [e for _, errs in results for e in errs]
    if errors:
        sys.exit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    for lat, _ in results:
        for k, v in lat.items():
            out[k] += v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200, help="requests per client and target")
    ap.add_argument("--clients", default="1,4", help="concurrent clients, comma-separated")
    ap.add_argument("--no-bomb", action="store_true", help="skip the gzip bombs")
    ap.add_argument("--isolation", default="auto", help="tritonserver layouts (TritonServer's isolation), comma-separated: "
                                                         "auto, off")
    args = ap.parse_args()

    from bench_serving import _bodies, _default_tails

    from janus_deploy.backends import load_runner
    from janus_deploy.triton.repository import ExportOptions, export_repository
    from janus_deploy.triton.server import TritonServer

    class A:
        plan = engines = None
        model = "digits"

    from bench_serving import _plan

    manifest, plan_dir, engines = _plan(A)
    tails = _default_tails(manifest)
    bodies = _bodies(manifest, load_runner(manifest, engines, threads=1), tails)
    repo = Path(tempfile.mkdtemp(prefix="janus-bench-front-")) / "repository"
    export_repository(manifest, engines, repo, ExportOptions(platform="python", tails=tuple(tails), codecs=("fp16",)))
    print("| layout | clients | requests per target | front p50 ms | direct p50 ms | p50 ratio | front p99 ms | "
          "direct p99 ms | mean ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in args.isolation.split(","):
        with TritonServer(repo, http_port=0, isolation=mode) as srv:
            if mode == "auto" and not srv.isolated:
                sys.exit(f"--isolation auto: tritonserver is not isolated here ({srv.isolation_note})")
            layout = "namespace" if srv.isolated else "loopback + key"
            _latencies(srv, bodies, 1, 10)  # warm-up: every model loaded and run once
            for clients in (int(c) for c in args.clients.split(",")):
                lat = _latencies(srv, bodies, clients, args.rounds)
                f, d = sorted(lat["front"]), sorted(lat["direct"])
                p = lambda xs, q: xs[min(int(q * len(xs)), len(xs) - 1)]  # noqa: E731 - a one-line percentile
                print(f"| {layout} | {clients} | {len(f)} | {p(f, 0.5):.2f} | {p(d, 0.5):.2f} | {p(f, 0.5) / p(d, 0.5):.2f} | "
                      f"{p(f, 0.99):.2f} | {p(d, 0.99):.2f} | {statistics.mean(f) / statistics.mean(d):.2f} |", flush=True)
    if args.no_bomb:
        return
    with TritonServer(repo, http_port=0, isolation=args.isolation.split(",")[0]) as srv:
        import httpx

        from janus_deploy.wire.v2 import HEADER_LENGTH

        body, hlen = _bomb()
        t_before, f_before = _rss(srv.pid, True), _rss(__import__("os").getpid(), False)
        results: list[tuple[int, float]] = []

        def send() -> None:
            t = time.perf_counter()
            r = httpx.post(f"{srv.url}/v2/models/{tails[0]}/infer", content=body, timeout=120, trust_env=False,
                           headers={"Content-Encoding": "gzip", HEADER_LENGTH: str(hlen)})
            results.append((r.status_code, time.perf_counter() - t))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_after, f_after = _rss(srv.pid, True), _rss(__import__("os").getpid(), False)
        print(f"\n4 concurrent gzip bombs ({len(body)} bytes each, 1 GiB inflated): statuses "
              f"{sorted(s for s, _ in results)}, slowest answer {max(t for _, t in results):.2f} s; RSS growth: "
              f"tritonserver tree {(t_after - t_before) / MiB:+.1f} MB, front process {(f_after - f_before) / MiB:+.1f} MB")
        if any(s != 413 for s, _ in results):
            sys.exit("a bomb was not refused")


if __name__ == "__main__":
    main()
