#!/usr/bin/env python
"""What the Triton front (janus_deploy/triton/front.py) costs, and what it stops.

One tritonserver behind its front; the same fp16 requests sent, interleaved, to the front and
straight to tritonserver's loopback port (with the front's key), so the ratio front / direct is
measured within one run on one server. Then four concurrent 1 GiB gzip bombs (about 1 MB each on
the wire) through the front: status, seconds to the answer, RSS growth of tritonserver's process
tree and of the front's process.

    PYTHONPATH=$PWD python tools/bench_triton_front.py                # digits plan, 200 rounds
    PYTHONPATH=$PWD python tools/bench_triton_front.py --rounds 500 --clients 1,4

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


def _client_process(targets, bodies, rounds: int, seed: int, queue) -> None:
    """One client (its own process: the front shares no GIL with the clients, as in a deployment)."""
    import httpx

    out: dict[str, list[float]] = {k: [] for k in targets}
    errors: list[str] = []
    with httpx.Client(timeout=60, trust_env=False) as c:
        for i in range(rounds):
            for k in (("front", "direct") if (i + seed) % 2 == 0 else ("direct", "front")):
                url, extra = targets[k]
                name, body, h = bodies[(i + seed) % len(bodies)]
                t = time.perf_counter()
                r = c.post(f"{url}/v2/models/{name}/infer", content=body, headers={**h, **extra})
                out[k].append((time.perf_counter() - t) * 1e3)
                if r.status_code != 200:
                    errors.append(f"{k} {r.status_code} {r.text[:100]}")
    queue.put((out, errors))


def _latencies(srv, bodies, clients: int, rounds: int) -> dict[str, list[float]]:
    """Per target, the latency (ms) of each request; targets alternate request by request; each
    client in its own process."""
    import multiprocessing as mp

    from janus_deploy.triton.front import UPSTREAM_KEY_HEADER

    targets = {"front": (srv.url, {}), "direct": (srv.upstream_url, {UPSTREAM_KEY_HEADER: srv.upstream_key})}
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
    with TritonServer(repo, http_port=0) as srv:
        _latencies(srv, bodies, 1, 10)  # warm-up: every model loaded and run once
        print("| clients | requests per target | front p50 ms | direct p50 ms | p50 ratio | front p99 ms | direct p99 ms | mean ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for clients in (int(c) for c in args.clients.split(",")):
            lat = _latencies(srv, bodies, clients, args.rounds)
            f, d = sorted(lat["front"]), sorted(lat["direct"])
            p = lambda xs, q: xs[min(int(q * len(xs)), len(xs) - 1)]  # noqa: E731 - a one-line percentile
            print(f"| {clients} | {len(f)} | {p(f, 0.5):.2f} | {p(d, 0.5):.2f} | {p(f, 0.5) / p(d, 0.5):.2f} | "
                  f"{p(f, 0.99):.2f} | {p(d, 0.99):.2f} | {statistics.mean(f) / statistics.mean(d):.2f} |")
        if args.no_bomb:
            return
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
