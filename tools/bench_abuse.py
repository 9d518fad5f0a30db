"""Abuse benchmark of the edge and the V2 server, bounded and on loopback only (docs/benchmarks.md).

Against the demo's plan (the digits ViT of `janus-deploy demo`, built once under --work):

1. SLA violation ratio of 100 requests (SLA 100 ms) from the edge runtime, as the demo runs it
   (8x slowed edge), against a server that accepts connections and request bodies and never
   answers; with the circuit breaker on (default) and off, for comparison.
2. Worst health-check latency while 4 clients send 60 MB JSON bodies to `janus-deploy serve`
   (default limits: refused from their headers), then while they send JSON bodies just under the
   --max-json-mb limit (parsed), then, for comparison, 60 MB JSON bodies to a server started with
   --max-json-mb 64 (parsed: what the limit prevents).
3. Server RSS growth during and after 16 concurrent 60 MB binary bodies (each read in full, then
   refused: batch over --max-batch), default --max-inflight-mb 64.
4. Idle connections: a server with --max-connections LIMIT; idle connections are opened in steps
   up to 4x LIMIT and after each step a good inference request on a new connection must be
   answered within 1 s; the server's log is checked for connection-limit lines and tracebacks.
   Also the time until a connection that sends its headers one byte every 0.5 s is cut.

Servers run as `janus-deploy serve` subprocesses (their RSS and GIL are their own).

Usage: python tools/bench_abuse.py [--work runs/bench-abuse] [--limit 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- demo artefacts
def demo_artefacts(work: Path, requests: int) -> Path:
    """The demo's plan, engines, profiles, accuracy table and images (made once)."""
    demo = work / "demo"
    if (demo / "summary.json").is_file() and len(list((demo / "images").rglob("*.png"))) >= requests:
        return demo
    from janus_deploy.demo import run_demo

    print(f"building the demo's artefacts in {demo} (once) ...", flush=True)
    try:
        run_demo(demo, requests=requests, runs=5, say=lambda s: print("  " + s, flush=True))
    except Exception as exc:  # noqa: BLE001 - no shipped traces: a synthetic link
        if "traces were not found" not in str(exc):
            raise
        trace = work / "link.cooked"
        trace.write_text("".join(f"{i * 0.05:.2f} {20 if i % 20 < 15 else 2}\n" for i in range(400)))
        run_demo(demo, requests=requests, runs=5, trace=str(trace), say=lambda s: print("  " + s, flush=True))
    return demo


# ----------------------------------------------------------------------------- 1. never answers
class BlackHole:
    """Accepts connections and reads request bodies, never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self.bytes = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            self.bytes += len(data)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> "BlackHole":
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        async def close() -> None:
            self.server.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def sla_against_black_hole(demo: Path, n: int, sla_ms: float, breaker: bool) -> dict:
    from janus_deploy.backends.base import SlowedRunner
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.plan import Manifest
    from janus_deploy.runtime.edge import EdgeRuntime, frames_from_images
    from janus_deploy.schedule.controller import ControllerConfig

    manifest = Manifest.load(demo / "plan")
    local = OrtRunner(manifest, threads=1)
    local.preload()  # as `run --preload`: no cold session is blamed on the server
    runner = SlowedRunner(local, 8.0)  # the demo's edge
    ctrl = ControllerConfig() if breaker else ControllerConfig(breaker_failures=0)  # defaults otherwise
    device_only = f"@{manifest.num_blocks + 1}"
    with BlackHole() as hole:
        with EdgeRuntime(manifest, runner, demo / "edge-profile.json", demo / "cloud-profile.json",
                         server_url=hole.url, sla_ms=sla_ms, accuracy=demo / "accuracy.json", controller=ctrl) as rt:
            t0 = time.perf_counter()
            results = rt.run(frames_from_images(demo / "images", manifest.model["img_size"], limit=n))
            wall = time.perf_counter() - t0
            s = rt.summary()
            health = rt.controller.state()
    # which violations the sick server caused: requests that tried it (offloaded, fell back) vs
    # device-only requests whose own compute overran (this machine's load, times the 8x slowdown)
    tried = [r for r in results if r.fallback or not (r.record.decision.label if r.record.decision else "").endswith(device_only)]
    alone = [r for r in results if r not in tried]
    late = lambda rs: sum(r.total_ms > sla_ms for r in rs)  # noqa: E731
    edge_ms = sorted(r.total_ms for r in alone)
    return {"requests": s["requests"], "answered": s["answered"], "violation_ratio": s["violation_ratio"],
            "fallbacks": s["fallbacks"], "fallback_kinds": s["fallback_kinds"], "p99_ms": s["latency_ms_p99"],
            "max_ms": s["latency_ms_max"], "wall_s": wall, "uploads_reaching_server": hole.connections,
            "tried_server": len(tried), "late_tried_server": late(tried), "device_only": len(alone),
            "late_device_only": late(alone), "device_only_median_ms": edge_ms[len(edge_ms) // 2] if edge_ms else None,
            "controller": health}


# ----------------------------------------------------------------------------- servers
class Server:
    """`janus-deploy serve` in a subprocess (its own RSS, GIL and log)."""

    def __init__(self, demo: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        exe = Path(sys.executable).with_name("janus-deploy")
        cmd = [str(exe), "serve", str(demo / "plan"), "--engines", str(demo / "engines"), "--port", str(self.port),
               "--preload", "--threads", "1", *extra]
        self.log = log
        self.logf = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("the server did not start within 180 s")
        import psutil

        self.ps = psutil.Process(self.proc.pid)

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def meta(self) -> dict:
        import httpx

        return httpx.get(self.url + "/v2", timeout=10, trust_env=False).json()["janus"]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()
        return self.log.read_text()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.stop()


def raw_post(port: int, path: str, body: bytes, headers: dict[str, str], timeout: float = 120) -> int:
    """POST over a plain socket (no client-side copy of the body); the status, or 0 if the
    connection broke."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(head.encode())
            try:
                s.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused early; the answer is already there
            reply = s.recv(256)
        return int(reply.split()[1]) if reply.startswith(b"HTTP/1.1") else 0
    except OSError:
        return 0


def good_request(manifest) -> tuple[bytes, dict[str, str]]:
    from janus_deploy.wire import v2 as wire

    img = manifest.model["img_size"]
    body, hlen = wire.encode_request({"frame": np.zeros((1, img, img, 3), np.uint8)})
    return body, {wire.HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream"}


def json_body(nbytes: int, img: int) -> bytes:
    """A V2 JSON request for janus_L0_S0 of about ``nbytes``: a frame's values as JSON numbers
    (its declared batch is whatever those values make; the server must parse to find out)."""
    per_value = len("213,")
    n = nbytes // per_value
    batch = max(n // (img * img * 3), 1)
    values = ",".join(["213"] * n)
    return (f'{{"inputs":[{{"name":"frame","datatype":"UINT8","shape":[{batch},{img},{img},3],"data":[{values}]}}]}}'
            ).encode()


def health_during(server: Server, send, clients: int, duration_s: float) -> dict:
    """Health-check latency (GET /v2/health/live every 10 ms on a kept-alive connection) while
    ``clients`` threads call ``send()`` in a loop for ``duration_s`` (or until each returns None)."""
    import httpx

    stop, lat, statuses = threading.Event(), [], Counter()

    def sender() -> None:
        while not stop.is_set():
            st = send()
            if st is None:
                return
            statuses[st] += 1

    def checker() -> None:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
            while not stop.is_set():
                t = time.perf_counter()
                c.get("/v2/health/live")
                lat.append((time.perf_counter() - t) * 1e3)
                time.sleep(0.01)

    senders = [threading.Thread(target=sender) for _ in range(clients)]
    check = threading.Thread(target=checker)
    check.start()
    t0 = time.perf_counter()
    for t in senders:
        t.start()
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline and any(t.is_alive() for t in senders):
        time.sleep(0.05)
    stop.set()
    for t in senders:
        t.join()
    check.join()
    return {"checks": len(lat), "worst_ms": max(lat), "p99_ms": float(np.percentile(lat, 99)),
            "median_ms": statistics.median(lat), "statuses": dict(statuses), "seconds": time.perf_counter() - t0}


def memory_under_bodies(server: Server, manifest, clients: int, body_mb: int) -> dict:
    from janus_deploy.wire import v2 as wire

    img = manifest.model["img_size"]
    n = body_mb * MB // (img * img * 3)
    body, hlen = wire.encode_request({"frame": np.zeros((n, img, img, 3), np.uint8)})
    headers = {wire.HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream"}
    good, gh = good_request(manifest)
    for _ in range(5):
        assert raw_post(server.port, "/v2/models/janus_L0_S0/infer", good, gh) == 200
    time.sleep(0.5)
    base = statistics.median([server.rss() for _ in range(20)])
    peak, done = [base], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.rss())
            time.sleep(0.005)

    statuses: list[int] = []
    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=lambda: statuses.append(
        raw_post(server.port, "/v2/models/janus_L0_S0/infer", body, headers))) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    ok_after = raw_post(server.port, "/v2/models/janus_L0_S0/infer", good, gh)
    time.sleep(2.0)
    after = statistics.median([server.rss() for _ in range(20)])
    bodies = server.meta()["bodies"]
    return {"body_mb": len(body) / MB, "clients": clients, "statuses": dict(Counter(statuses)), "seconds": elapsed,
            "base_mb": base / MB, "peak_growth_mb": (peak[0] - base) / MB, "after_growth_mb": (after - base) / MB,
            "budget_peak_mb": bodies["peak_bytes"] / MB, "budget_limit_mb": bodies["limit_bytes"] / MB,
            "good_request_after": ok_after}


def idle_connections(server: Server, manifest, limit: int, steps: list[int]) -> list[dict]:
    import httpx

    good, gh = good_request(manifest)
    socks: list[socket.socket] = []
    rows = []
    for target in steps:
        while len(socks) < target:
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.3)
        t = time.perf_counter()
        try:
            with httpx.Client(base_url=server.url, timeout=1.0, trust_env=False) as c:
                st = c.post("/v2/models/janus_L0_S0/infer", content=good, headers=gh).status_code
        except httpx.HTTPError as exc:
            st = type(exc).__name__
        ms = (time.perf_counter() - t) * 1e3
        conn = server.meta()["connections"]
        rows.append({"idle_opened": target, "good_status": st, "good_ms": ms, "server_open": conn["open"],
                     "evicted_idle": conn["evicted_idle"], "refused_busy": conn["refused_busy"]})
    for s in socks:
        s.close()
    return rows


def slow_headers(server: Server, interval_s: float = 0.5, limit_s: float = 30.0) -> float | None:
    """Seconds until a connection sending its headers one byte every ``interval_s`` is cut."""
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        for byte in request:
            try:
                s.sendall(bytes([byte]))
                s.settimeout(interval_s)
                if s.recv(1) == b"":
                    return time.monotonic() - t0
            except (socket.timeout, TimeoutError):
                pass
            except OSError:
                return time.monotonic() - t0
            if time.monotonic() - t0 > limit_s:
                return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-abuse")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--sla", type=float, default=100.0, help="SLA of section 1 (ms)")
    ap.add_argument("--limit", type=int, default=1000, help="--max-connections of the idle-connection server")
    ap.add_argument("--quick", action="store_true", help="shorter phases (smoke run)")
    ap.add_argument("--only", default="1234", help="which sections to run (digits)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    demo = demo_artefacts(args.work, args.requests)
    from janus_deploy.plan import Manifest
    from janus_deploy.runtime.limits import DEFAULT_MAX_JSON_MB

    manifest = Manifest.load(demo / "plan")
    img = manifest.model["img_size"]
    dur = 4.0 if args.quick else 10.0
    results: dict = {"plan": str(demo / "plan"), "model": manifest.model["name"], "cpus": os.cpu_count()}

    if "1" in args.only:
        print(f"1. edge vs a server that never answers: {args.requests} requests, SLA {args.sla:g} ms, demo plan",
              flush=True)
        for breaker in (True, False):
            r = sla_against_black_hole(demo, args.requests, args.sla, breaker)
            results[f"sla_breaker_{'on' if breaker else 'off'}"] = r
            print(f"   breaker {'on ' if breaker else 'off'}: SLA violations {100 * r['violation_ratio']:.1f} % "
                  f"(target <= 5 % with the breaker): {r['late_tried_server']} of {r['tried_server']} requests that "
                  f"tried the server, {r['late_device_only']} of {r['device_only']} device-only ones (median "
                  f"{r['device_only_median_ms']} ms); fallbacks {r['fallbacks']} {r['fallback_kinds']}, "
                  f"p99 {r['p99_ms']:.0f} ms, connections to the server {r['uploads_reaching_server']}",
                  flush=True)

    if "2" in args.only:
        print("2. health-check latency while 4 clients send JSON bodies (`serve`, default limits)", flush=True)
        big = json_body(60 * MB, img)
        near = json_body(int(DEFAULT_MAX_JSON_MB * MiB) - 4096, img)
        with Server(demo, args.work / "server-json.log") as srv:
            for name, body in (("60 MB JSON", big), (f"{len(near) / MB:.1f} MB JSON (at --max-json-mb)", near)):
                r = health_during(srv, lambda b=body: raw_post(srv.port, "/v2/models/janus_L0_S0/infer", b,
                                                               {"Content-Type": "application/json"}), 4, dur)
                results[f"health_{name.split()[0]}"] = r
                print(f"   {name}: worst health check {r['worst_ms']:.0f} ms (target <= 250), p99 {r['p99_ms']:.0f} ms, "
                      f"median {r['median_ms']:.1f} ms over {r['checks']} checks; answers {r['statuses']}", flush=True)
        with Server(demo, args.work / "server-json-unlimited.log", "--max-json-mb", "64") as srv:
            sent = Counter()

            def once(b=big):
                if sent[threading.get_ident()]:
                    return None
                sent[threading.get_ident()] += 1
                return raw_post(srv.port, "/v2/models/janus_L0_S0/infer", b, {"Content-Type": "application/json"})

            r = health_during(srv, once, 4, 120.0)
            results["health_unlimited"] = r
            print(f"   for comparison, --max-json-mb 64 (60 MB JSON parsed, one body per client): worst health check "
                  f"{r['worst_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms; answers {r['statuses']} in {r['seconds']:.1f} s",
                  flush=True)

    if "3" in args.only:
        print("3. server RSS while 16 clients send 60 MB binary bodies at once (`serve`, default limits)", flush=True)
        with Server(demo, args.work / "server-memory.log") as srv:
            r = memory_under_bodies(srv, manifest, 16, 60)
        results["memory"] = r
        print(f"   RSS growth: peak {r['peak_growth_mb']:.0f} MB (target <= 150), after {r['after_growth_mb']:.1f} MB "
              f"(target <= 20); bodies held at once: peak {r['budget_peak_mb']:.0f} MB of {r['budget_limit_mb']:.0f}; "
              f"answers {r['statuses']} in {r['seconds']:.1f} s; a good request after: {r['good_request_after']}",
              flush=True)

    if "4" in args.only:
        lim = args.limit
        steps = [lim // 4, lim // 2, lim - 1, lim, 2 * lim] + ([] if args.quick else [4 * lim])
        print(f"4. idle connections against `serve --max-connections {lim}`; a good request after each step "
              "(1 s timeout)", flush=True)
        with Server(demo, args.work / "server-connections.log", "--max-connections", str(lim)) as srv:
            slow = {"cut": slow_headers(srv)}  # alone: at the cap it would be the idle one closed first
            rows = idle_connections(srv, manifest, lim, steps)
            log = srv.stop()
        held = [r["idle_opened"] for r in rows if r["good_status"] == 200 and r["good_ms"] <= 1000]
        lines = [ln for ln in log.splitlines() if "connection limit" in ln]
        results["connections"] = {"rows": rows, "held_up_to": max(held) if held else 0, "limit_log_lines": len(lines),
                                  "tracebacks": log.count("Traceback"), "log_bytes": len(log.encode()),
                                  "slow_header_cut_s": slow.get("cut")}
        for r in rows:
            print(f"   {r['idle_opened']:5d} idle opened: good request {r['good_status']} in {r['good_ms']:.0f} ms; "
                  f"server holds {r['server_open']} connections, closed {r['evicted_idle']} idle so far", flush=True)
        c = results["connections"]
        print(f"   a good request was answered within 1 s up to {c['held_up_to']} idle connections (limit {lim}); "
              f"server log: {c['limit_log_lines']} connection-limit line(s), {c['tracebacks']} tracebacks, "
              f"{c['log_bytes']} bytes", flush=True)
        for ln in lines:
            print(f"     | {ln.strip()}")
        print("   headers sent one byte every 0.5 s: connection cut after "
              + (f"{c['slow_header_cut_s']:.1f} s (--header-timeout 10)" if c["slow_header_cut_s"] else "never (30 s)"))
    (args.work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"results: {args.work / 'results.json'}")


if __name__ == "__main__":
    main()
