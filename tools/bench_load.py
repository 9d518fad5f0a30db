#!/usr/bin/env python
"""Load test: N concurrent edge clients against one `janus-deploy serve` for a fixed time.

Not part of CI. Reports requests, errors, throughput and p50/p95/p99 latency.

    python tools/bench_load.py                          # exports vit_tiny (k=3, 3 levels) to a tmp dir
    python tools/bench_load.py --plan P --engines E --clients 16 --duration 30
    python tools/bench_load.py --server http://host:8000 --plan P --engines E

Modes:

* ``payload`` (default): each client is an edge whose head has already run: it sends
  precomputed request bodies (fp16 tokens / uint8 frames) round-robin over every tail model
  ``janus_L*_S*`` of the plan and checks the logits that come back. This loads the *server*.
* ``edge``: each client is a full :class:`janus_deploy.runtime.edge.EdgeRuntime` (local head
  compute, scheduler, fallbacks) with synthetic linear profiles; on one machine the clients'
  own compute competes with the server's.

The server is started as a subprocess (``janus-deploy serve``) unless ``--server`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plan(args):
    from bench_plans import bench_plan

    def make():
        from janus_deploy.model.load import ModelSpec
        from janus_deploy.plan.export import ExportConfig

        return ModelSpec("vit_tiny_patch16_224"), ExportConfig(k=3, levels=3)

    return bench_plan(args.plan, args.engines, make, "janus-bench-")


def _start_server(plan_dir: Path, engines: Path, args) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "janus_deploy.cli.main", "serve", str(plan_dir), "--engines", str(engines),
           "--port", str(port), "--threads", str(args.server_threads)]
    if args.concurrency:
        cmd += ["--concurrency", str(args.concurrency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("server did not start")


def _bodies(manifest, runner, codec: str):
    """Request bodies for every tail model (fp16 tokens or the uint8 frame)."""
    from janus_deploy.backends import run_segments
    from janus_deploy.images import normalize, synthetic_frames
    from janus_deploy.wire.codecs import compress, encode_tokens, get_codec
    from janus_deploy.wire.v2 import HEADER_LENGTH, encode_request

    c = get_codec(codec)
    frames = synthetic_frames(2, manifest.model["img_size"], seed=5)
    out = []
    for li, lv in enumerate(manifest.levels):
        for s in manifest.candidates:
            if s > manifest.num_blocks:
                continue
            f = frames[(li + s) % 2][None]
            if s == 0:
                tensors = {"frame": f}
            else:
                x = normalize(f, manifest.model["mean"], manifest.model["std"])
                tok, size = run_segments(runner, li, 0, manifest.edge_segments(s), [x])
                tensors = encode_tokens(tok, size, c)
            body, hlen = encode_request(tensors)
            headers = {HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream"}
            if c.compress:
                body = compress(body, c)
                headers["Content-Encoding"] = c.compress
            out.append((f"janus_L{li}_S{s}", body, headers))
    return out


def _payload_client(cid: int, url: str, bodies, stop_at: float, results: list, token: str | None):
    import httpx

    from janus_deploy.wire.v2 import HEADER_LENGTH, parse_response

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    i = cid
    with httpx.Client(base_url=url, timeout=60, trust_env=False, headers=headers) as c:
        while time.monotonic() < stop_at:
            name, body, h = bodies[i % len(bodies)]
            i += 1
            t = time.perf_counter()
            try:
                r = c.post(f"/v2/models/{name}/infer", content=body, headers=h)
                ok = r.status_code == 200
                if ok:
                    _, outs = parse_response(r.content, int(r.headers[HEADER_LENGTH]))
                    ok = outs["logits"].shape[0] == 1
                err = None if ok else f"HTTP {r.status_code}: {r.text[:120]}"
            except Exception as exc:  # noqa: BLE001 - counted as an error
                err = f"{type(exc).__name__}: {exc}"
            results.append(((time.perf_counter() - t) * 1e3, err, name))


def _warm(url: str, bodies, token: str | None) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=120, trust_env=False, headers=headers) as c:
        for name, body, h in bodies:
            r = c.post(f"/v2/models/{name}/infer", content=body, headers=h)
            if r.status_code != 200:
                sys.exit(f"warm-up request to {name} failed: {r.status_code} {r.text[:200]}")


def _edge_client(cid: int, url: str, manifest, engines, stop_at: float, results: list, args):
    from janus_deploy.images import synthetic_frames
    from janus_deploy.profile.table import profile_from_linear
    from janus_deploy.runtime.edge import EdgeRuntime
    from janus_deploy.runtime.transport import TransportOptions

    mi = {k: manifest.model[k] for k in ("name", "num_blocks", "embed_dim", "num_tokens", "num_prefix_tokens", "img_size")}
    levels = [(lv["policy"], lv["alpha"]) for lv in manifest.levels]
    edge = profile_from_linear(mi, manifest.candidates, levels, 2.0, 0.05, plan_hash=manifest.hash)
    cloud = profile_from_linear(mi, manifest.candidates, levels, 0.2, 0.005, plan_hash=manifest.hash)
    frames = synthetic_frames(4, manifest.model["img_size"], seed=cid)
    with EdgeRuntime(manifest, engines, edge, cloud, server_url=url, sla_ms=args.sla, threads=1,
                     codec="fp16", transport=TransportOptions(token=args.token)) as rt:
        i = 0
        while time.monotonic() < stop_at:
            res = rt.infer(frames[i % 4])
            i += 1
            d = res.record.decision
            err = res.error or (f"fallback: {res.fallback.reason}" if res.fallback else None)
            results.append((res.total_ms, err, (d.model if d is not None else None) or "device-only"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan")
    ap.add_argument("--engines")
    ap.add_argument("--server", help="URL of a running server (default: start one)")
    ap.add_argument("--token")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--mode", choices=("payload", "edge"), default="payload")
    ap.add_argument("--codec", default="fp16")
    ap.add_argument("--sla", type=float, default=1000.0, help="edge mode: SLA in ms")
    ap.add_argument("--server-threads", type=int, default=1, help="intra-op threads per server session")
    ap.add_argument("--concurrency", type=int, default=None, help="server: inferences at once")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    from bench_clients import exit_if_failed, start_clients

    from janus_deploy.backends import load_runner

    manifest, plan_dir, engines = _plan(args)
    proc = None
    url = args.server
    if url is None:
        proc, url = _start_server(plan_dir, engines, args)
    try:
        results: list = []
        runner = load_runner(manifest, engines, threads=1)
        if args.mode == "payload":
            bodies = _bodies(manifest, runner, args.codec)
            target, extra = _payload_client, (bodies,)
        else:
            target, extra = _edge_client, (manifest, runner)
        # warm the server's sessions once so the timed window measures steady state
        if args.mode == "payload":
            _warm(url, bodies, args.token)
        t0 = time.monotonic()
        stop_at = t0 + args.duration
        arg_tuples = [(cid, url, *extra, stop_at, results) + ((args.token,) if args.mode == "payload" else (args,))
                      for cid in range(args.clients)]
        threads, crashes = start_clients(target, arg_tuples)
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        import httpx

        try:
            hdr = {"Authorization": f"Bearer {args.token}"} if args.token else {}
            server_meta = httpx.get(f"{url}/v2", timeout=5, trust_env=False, headers=hdr).json().get("janus", {})
        except Exception:  # noqa: BLE001
            server_meta = {}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    lat = np.array([r[0] for r in results])
    ok = np.array([r[1] is None for r in results])
    errors = [r[1] for r in results if r[1] is not None]
    report = {
        "mode": args.mode, "clients": args.clients, "duration_s": round(wall, 2), "codec": args.codec,
        "cpu_count": os.cpu_count(), "requests": len(results), "errors": len(errors),
        "error_examples": sorted(set(errors))[:5], "client_crashes": crashes[:5],
        "offloaded": sum(1 for r in results if r[1] is None and r[2] != "device-only"),
        "throughput_rps": round(len(results) / wall, 2),
        "latency_ms": {k: round(float(np.percentile(lat[ok], q)), 1) if ok.any() else None
                       for k, q in (("p50", 50), ("p95", 95), ("p99", 99))},
        "latency_ms_mean": round(float(lat[ok].mean()), 1) if ok.any() else None,
        "server": {k: server_meta.get(k) for k in ("loaded_sessions", "loads", "evictions", "stats")},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    exit_if_failed(len(results), len(errors), crashes,
                   offloaded=report["offloaded"] if args.mode == "edge" else None)


if __name__ == "__main__":
    main()
