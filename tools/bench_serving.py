#!/usr/bin/env python
"""Serving benchmark: the built-in V2 server vs Triton (the bundled tritonserver, python-backend
repository) on the same plan, engines and requests, at 1 / 8 / 32 concurrent clients.

Bounded and loopback only: each point counts the answers completed in ``--duration`` seconds after
``--warmup`` seconds of load (keep the duration well above the latency: heavy tails at 32 clients);
clients are asyncio workers in this process, each sending precomputed fp16 bodies (the edge's
head already ran) round-robin over a mix of tails and checking every answer. Per point:
throughput, p50/p99 latency, server CPU seconds per request (the server's whole process tree:
uvicorn process, or tritonserver + its python stubs), server memory (PSS of the tree, so shared
pages count once) and, for Triton, the mean batch its dynamic batcher formed (inference count /
execution count of the segment models, from Triton's statistics).

    python tools/bench_serving.py                       # digits demo plan (k=2, 8 levels), 4 tails
    python tools/bench_serving.py --model vit_small --tails janus_L1_S2 --clients 1,8,32
    python tools/bench_serving.py --plan P --engines E --tails janus_L0_S1,janus_L3_S2 --json out.json

Not part of CI (minutes of CPU); docs/benchmarks.md has the table and the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _plan(args):
    from bench_plans import bench_plan

    def make():
        from janus_deploy.model.load import ModelSpec
        from janus_deploy.plan.export import ExportConfig

        if args.model == "digits":
            from janus_deploy.calibrate.digits import SMALL_MODEL_CHECKPOINT, SMALL_MODEL_NAME, SMALL_MODEL_OVERRIDES

            return (ModelSpec(SMALL_MODEL_NAME, dict(SMALL_MODEL_OVERRIDES), str(ROOT / SMALL_MODEL_CHECKPOINT)),
                    ExportConfig(k=2, levels=8))
        return ModelSpec(f"{args.model}_patch16_224"), ExportConfig(k=3, levels=3)

    return bench_plan(args.plan, args.engines, make, "janus-bench-serving-")


def _default_tails(manifest) -> list[str]:
    """Two levels (none, most merging) x the two first cloud splits: four tails."""
    splits = [s for s in manifest.candidates if 0 < s <= manifest.num_blocks][:2]
    return [f"janus_L{li}_S{s}" for li in (0, len(manifest.levels) - 1) for s in splits]


def _bodies(manifest, runner, tails):
    from janus_deploy.backends import run_segments
    from janus_deploy.images import normalize, synthetic_frames
    from janus_deploy.wire.codecs import encode_tokens
    from janus_deploy.wire.spec import tail_models
    from janus_deploy.wire.v2 import HEADER_LENGTH, encode_request

    specs = tail_models(manifest)
    frames = synthetic_frames(len(tails), manifest.model["img_size"], seed=7)
    out = []
    for i, name in enumerate(tails):
        spec = specs[name]
        f = frames[i][None]
        if spec.split == 0:
            tensors = {"frame": f}
        else:
            x = normalize(f, manifest.model["mean"], manifest.model["std"])
            tok, size = run_segments(runner, spec.level, 0, spec.first_segment, [x])
            tensors = encode_tokens(tok, size, "fp16")
        body, hlen = encode_request(tensors)
        out.append((name, body, {HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream"}))
    return out


def _start_builtin(plan_dir, engines, args):
    import httpx

    from janus_deploy.triton.server import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "janus_deploy.cli.main", "serve", str(plan_dir), "--engines", str(engines),
           "--port", str(port), "--threads", str(args.server_threads)]
    if args.concurrency:
        cmd += ["--concurrency", str(args.concurrency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"built-in server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("the built-in server did not start")


def _start_triton(manifest, engines, tails, args):
    from janus_deploy.triton.repository import ExportOptions, export_repository
    from janus_deploy.triton.server import TritonServer

    repo = Path(tempfile.mkdtemp(prefix="janus-bench-repo-")) / "repository"
    opts = ExportOptions(platform="python", tails=tuple(tails), instances=args.triton_instances,
                         threads=args.triton_threads, max_queue_delay_us=args.triton_delay_us,
                         preferred=tuple(int(x) for x in args.triton_preferred.split(",") if x),
                         max_batch=args.triton_max_batch, codecs=("fp16",), dynamic=not args.no_batching,
                         fuse=not args.triton_ensembles)
    export_repository(manifest, engines, repo, opts)
    srv = TritonServer(repo, http_port=0, **({} if args.triton_front else {"front": None}))
    t = time.perf_counter()
    srv.start(timeout=300)
    print(f"tritonserver ready in {time.perf_counter() - t:.1f} s ({srv.url})", file=sys.stderr)
    from janus_deploy.triton.repository import read_repository

    meta = read_repository(repo)
    srv.batched_models = set(meta["tails"] if not args.triton_ensembles else meta["segments"])
    return srv, repo


def _tree(pid: int):
    import psutil

    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def _cpu_s(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # noqa: BLE001 - a process that just ended
            pass
    return total


def _pss_mb(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            total += p.memory_full_info().pss
        except Exception:  # noqa: BLE001
            pass
    return total / 2**20


def _triton_counts(url: str, models: set[str]) -> tuple[int, int]:
    """(inference count, execution count) summed over ``models`` (the segment models, or the
    fused tails)."""
    import httpx

    stats = httpx.get(f"{url}/v2/models/stats", timeout=10, trust_env=False).json()
    inf = exe = 0
    for m in stats.get("model_stats", []):
        if m["name"] in models:
            inf += int(m.get("inference_count", 0))
            exe += int(m.get("execution_count", 0))
    return inf, exe


def _raw_request(host: str, port: int, name: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST /v2/models/{name}/infer HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _exchange(reader, writer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 keep-alive exchange on an open connection (Content-Length bodies only)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(hdrs.get("content-length", 0)))
    return status, hdrs, body


async def _load(url: str, bodies, clients: int, warmup_s: float, duration_s: float, classes: int):
    """``clients`` workers, each on its own keep-alive connection, sending back to back. A raw
    asyncio HTTP/1.1 client: a fraction of a millisecond of CPU per request, so the client does
    not eat the cores the servers are measured on."""
    from urllib.parse import urlparse

    from janus_deploy.wire.v2 import parse_response

    u = urlparse(url)
    host, port = u.hostname, u.port
    requests = [(name, _raw_request(host, port, name, body, h)) for name, body, h in bodies]
    lat: list[float] = []
    errors: list[str] = []
    t_measure = time.perf_counter() + warmup_s
    t_stop = t_measure + duration_s

    async def worker(cid: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = cid
        try:
            while time.perf_counter() < t_stop:
                name, req = requests[i % len(requests)]
                i += 1
                t = time.perf_counter()
                try:
                    status, hdrs, body = await _exchange(reader, writer, req)
                    err = None
                    if status != 200:
                        err = f"HTTP {status}: {body[:160]!r}"
                    else:
                        _, outs = parse_response(body, int(hdrs["inference-header-content-length"]))
                        if outs["logits"].shape != (1, classes) or not np.isfinite(outs["logits"]).all():
                            err = f"bad logits {outs['logits'].shape}"
                except Exception as exc:  # noqa: BLE001 - counted; reconnect
                    err = f"{type(exc).__name__}: {exc}"
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                t_end = time.perf_counter()
                if t_measure <= t_end <= t_stop:  # completions in the window (slow requests too)
                    lat.append((t_end - t) * 1e3)
                    if err:
                        errors.append(err)
        finally:
            writer.close()

    await asyncio.gather(*(worker(c) for c in range(clients)))
    return lat, errors


def _point(name, url, pid, bodies, clients, args, classes, triton=None):
    """One measurement; the server's CPU and counters are read at the window's edges."""
    import threading

    box: dict = {}

    def edges():
        time.sleep(args.warmup)
        box["cpu0"], box["t0"] = _cpu_s(pid), time.perf_counter()
        if triton:
            box["c0"] = _triton_counts(url, triton)
        time.sleep(args.duration)
        box["cpu1"], box["t1"] = _cpu_s(pid), time.perf_counter()
        if triton:
            box["c1"] = _triton_counts(url, triton)

    th = threading.Thread(target=edges, daemon=True)
    th.start()
    lat, errors = asyncio.run(_load(url, bodies, clients, args.warmup, args.duration, classes))
    th.join()
    n = len(lat)
    row = {"server": name, "clients": clients, "requests": n, "errors": len(errors),
           "first_error": errors[0] if errors else None,
           "throughput_rps": round(n / args.duration, 1),
           "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
           "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat else None,
           "server_cpu_ms_per_request": round((box["cpu1"] - box["cpu0"]) * 1e3 / max(n, 1), 2),
           "server_pss_mb": round(_pss_mb(pid), 0), "mean_batch": None}
    if triton:
        di, de = box["c1"][0] - box["c0"][0], box["c1"][1] - box["c0"][1]
        row["mean_batch"] = round(di / de, 2) if de else None
    print(json.dumps(row), file=sys.stderr)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="digits", help="digits (the demo's trained ViT) | vit_small | vit_tiny | ...")
    ap.add_argument("--plan")
    ap.add_argument("--engines")
    ap.add_argument("--tails", default="", help="comma-separated tail models (default: 4 of the plan)")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured per point")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each point is measured")
    ap.add_argument("--servers", default="builtin,triton")
    ap.add_argument("--server-threads", type=int, default=1, help="built-in: intra-op threads per session")
    ap.add_argument("--concurrency", type=int, default=None, help="built-in: inferences at once (default: CPUs)")
    ap.add_argument("--triton-instances", type=int, default=1)
    ap.add_argument("--triton-threads", type=int, default=1)
    ap.add_argument("--triton-delay-us", type=int, default=0)
    ap.add_argument("--triton-preferred", default="")
    ap.add_argument("--triton-max-batch", type=int, default=64)
    ap.add_argument("--no-batching", action="store_true", help="Triton without dynamic batching")
    ap.add_argument("--triton-front", action="store_true",
                    help="Triton behind its front (as serve --engine triton runs it; the front runs in this process, "
                         "so its CPU is not in the server's column); default: bare tritonserver, as the table was measured")
    ap.add_argument("--triton-ensembles", action="store_true",
                    help="Triton repository as ensembles of per-step models (export-triton --ensembles); "
                         "default: the fused tails, export-triton's default")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()

    from janus_deploy.backends import load_runner

    manifest, plan_dir, engines = _plan(args)
    made_plan = None if args.plan else plan_dir.parent  # exported here: removed at the end
    tails = [t for t in args.tails.split(",") if t] or _default_tails(manifest)
    bodies = _bodies(manifest, load_runner(manifest, engines, threads=1), tails)
    classes = manifest.model["num_classes"]
    servers = [s for s in args.servers.split(",") if s]
    procs, rows = {}, []
    try:
        if "builtin" in servers:
            p, url = _start_builtin(plan_dir, engines, args)
            procs["builtin"] = (p, url)
        if "triton" in servers:
            srv, _ = _start_triton(manifest, engines, tails, args)
            procs["triton"] = (srv, srv.url)
        for clients in [int(c) for c in args.clients.split(",")]:
            for name in servers:
                obj, url = procs[name]
                pid = obj.pid
                rows.append(_point(name, url, pid, bodies, clients, args, classes,
                                   triton=obj.batched_models if name == "triton" else None))
    finally:
        for name, (obj, _) in procs.items():
            if name == "triton":
                obj.stop()
                obj.cleanup()
                shutil.rmtree(obj.repository.parent, ignore_errors=True)  # the exported repository
            else:
                obj.terminate()
                try:
                    obj.wait(15)
                except subprocess.TimeoutExpired:
                    obj.kill()
    if made_plan is not None:
        shutil.rmtree(made_plan, ignore_errors=True)
    meta = {"plan": manifest.model["name"], "overrides": manifest.model.get("overrides"), "tails": tails,
            "duration_s": args.duration, "warmup_s": args.warmup, "cpus": os.cpu_count(),
            "builtin": {"threads": args.server_threads, "concurrency": args.concurrency or os.cpu_count()},
            "triton": {"instances": args.triton_instances, "threads": args.triton_threads,
                       "max_queue_delay_us": args.triton_delay_us, "preferred": args.triton_preferred,
                       "max_batch": args.triton_max_batch, "dynamic_batching": not args.no_batching,
                       "fuse": not args.triton_ensembles}}
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"| server | clients | req/s | p50 ms | p99 ms | server CPU ms/req | server PSS MB | mean batch | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['server']} | {r['clients']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | "
              f"{r['server_cpu_ms_per_request']} | {r['server_pss_mb']:.0f} | {r['mean_batch'] or '-'} | {r['errors']} |")
    by = {(r["server"], r["clients"]): r for r in rows}
    for c in sorted({r["clients"] for r in rows}):
        if ("builtin", c) in by and ("triton", c) in by and by[("builtin", c)]["throughput_rps"]:
            b, t = by[("builtin", c)], by[("triton", c)]
            print(f"{c} clients: Triton / built-in throughput {t['throughput_rps'] / b['throughput_rps']:.2f}x, "
                  f"p99 {t['p99_ms']} vs {b['p99_ms']} ms, p50 {t['p50_ms']} vs {b['p50_ms']} ms")


if __name__ == "__main__":
    main()
