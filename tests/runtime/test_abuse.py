"""The V2 server under abuse: malformed JSON, oversized JSON, many big bodies at once, slow or
idle connections, more connections than the cap. It never crashes, answers briefly, and keeps
its memory and connections within the configured limits."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from janus_deploy.runtime.limits import BodyBudget, ServerLimits
from janus_deploy.runtime.server import BackgroundServer, create_app
from janus_deploy.wire import v2 as wire

MiB = 1024 * 1024


def tokens(manifest, level=0, split=3):
    x = manifest.level(level)["tokens"][split]
    return {"tokens": np.zeros((1, x, 192), np.float32), "size": np.ones((1, x, 1), np.float32)}


def binary(tensors):
    body, hlen = wire.encode_request(tensors)
    return body, {wire.HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def srv(plan, local):
    _, plan_dir, engines = plan
    app = create_app(plan_dir, engines, runner=local, threads=1, concurrency=2, max_body_mb=8, max_json_mb=1, max_batch=8,
                     body_timeout_s=2.0, limits=ServerLimits(max_inflight_mb=2))
    with BackgroundServer(app) as s:
        s.app = app
        yield s


@pytest.fixture(scope="module")
def client(srv):
    with httpx.Client(base_url=srv.url, timeout=30, trust_env=False) as c:
        yield c


def assert_short_4xx(r, status=400, fragment=""):
    assert r.status_code == status, (r.status_code, r.text[:300])
    msg = r.json()["error"]
    assert len(msg) < 300 and "Traceback" not in msg and "Error:" not in msg, msg
    assert fragment.lower() in msg.lower(), msg
    return msg


# ------------------------------------------------------------------------------ malformed JSON
def test_malformed_json_of_any_depth_or_size_is_a_short_400(srv, client, plan):
    url = "/v2/models/janus_L0_S3/infer"
    x = plan[0].level(0)["tokens"][3]
    cases = [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 40_000 + b"1" + b"}" * 40_000, "nested too deeply"),
        (b'{"inputs": [{"name": "tokens", "shape": [' + b"7" * 5000 + b"]}]}", "number too long"),
        (json.dumps({"inputs": [{"name": "tokens", "datatype": "FP32", "shape": [int("9" * 4000)], "data": []}]}).encode(),
         "dimension over"),
        (json.dumps({"inputs": [{"name": "tokens", "datatype": "FP32", "shape": [1, x, 192],
                                 "parameters": {"binary_data_size": int("9" * 4000)}}]}).encode(), "binary_data_size"),
        (json.dumps({"inputs": [{"name": "t" * 200_000, "datatype": "FP32", "shape": [1], "data": [1]}]}).encode(),
         "has no input"),
        (json.dumps({"inputs": [{"name": "tokens", "datatype": "F" * 200_000, "shape": [1], "data": [1]}]}).encode(),
         "unsupported datatype"),
        (json.dumps({"inputs": [{"name": "tokens", "datatype": "FP32", "shape": [1] * 5000, "data": [1]}]}).encode(),
         "dimensions"),
        (json.dumps({"inputs": [{"name": "tokens", "datatype": "FP32", "shape": [1, x, 192],
                                 "data": [[[1e400]]]}]}).encode(), "values"),
        (b'{"inputs": [{"name": "tokens", "datatype": "FP32", "shape": [1, 2], "data": ' + b"[" * 900 + b"1"
         + b"]" * 900 + b"}]}", "must have shape"),
        (b"\xff\xfe" + "{}".encode("utf-16-le") * 10, ""),
    ]
    for body, fragment in cases:
        assert_short_4xx(client.post(url, content=body), 400, fragment)
    # structure beyond what one uninterrupted parse may take (numbers aside): 413
    assert_short_4xx(client.post(url, content=b'{"a":' * 100_000 + b"1" + b"}" * 100_000), 413,
                     "characters of structure")
    # a fuzz of truncations and byte flips of a valid JSON request: every answer a short 4xx
    good, _ = wire.encode_request(tokens(plan[0]), binary=False)
    rng = random.Random(7)
    for _ in range(60):
        b = bytearray(good[: rng.randrange(1, len(good))] if rng.random() < 0.5 else good)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.choice(b'[]{}",:0e-9\\\x00\xff')
        r = client.post(url, content=bytes(b))
        assert 400 <= r.status_code < 500 and len(r.json()["error"]) < 300, (r.status_code, r.text[:200])
    meta = client.get("/v2").json()["janus"]["stats"]
    assert meta["server_errors"] == 0
    assert client.post(url, content=good).status_code == 200  # and it still answers right


def test_json_over_its_limit_is_refused_from_the_headers(srv, client, plan):
    limit = srv.app.state.janus.json_limit
    assert limit == 1 * MiB
    # headers alone announce 2 MB of JSON: the answer comes before any body byte is sent
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(b"POST /v2/models/janus_L0_S3/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (2 * MiB))
        reply = b""
        while not reply.endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "--max-json-mb" in reply and "binary tensor extension" in reply
    # a JSON header over the limit before binary tensors
    r = client.post("/v2/models/janus_L0_S3/infer", content=b"{}" + b" " * (limit + 10),
                    headers={wire.HEADER_LENGTH: str(limit + 12)})
    assert_short_4xx(r, 413, "--max-json-mb")
    # compressed JSON that inflates past the limit
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(b" " * (limit + 1))
    assert_short_4xx(client.post("/v2/models/janus_L0_S3/infer", content=bomb, headers={"Content-Encoding": "zstd"}),
                     413, "--max-json-mb")
    # JSON under the limit is parsed and answered
    body, _ = wire.encode_request(tokens(plan[0]), binary=False)
    assert len(body) < limit and client.post("/v2/models/janus_L0_S3/infer", content=body).status_code == 200


def test_refused_before_copy_a_tensor_the_model_cannot_take(srv, client, plan):
    """A well-formed binary body with a tensor of the wrong shape is refused from its header
    entry (the server does not copy a 6 MB tensor it would then reject)."""
    big = {"tokens": np.zeros((40, 197, 192), np.float32), "size": np.ones((40, 197, 1), np.float32)}
    body, h = binary(big)
    assert len(body) > 5 * MiB
    assert_short_4xx(client.post("/v2/models/janus_L0_S3/infer", content=body, headers=h), 400, "batch size 40")
    assert srv.app.state.janus_routes.budget.used == 0


# ------------------------------------------------------------------------------ body memory
def test_body_budget_unit():
    async def go():
        b = BodyBudget(100)
        assert await b.acquire(60) == 60
        order = []

        async def take(n, tag):
            await b.acquire(n)
            order.append(tag)

        t1 = asyncio.create_task(take(50, "a"))  # does not fit: waits
        t2 = asyncio.create_task(take(10, "b"))  # would fit, but waits its turn (first come, first served)
        await asyncio.sleep(0.01)
        assert order == [] and b.waiting == 2
        b.release(60)
        await asyncio.sleep(0.01)
        assert order == ["a", "b"] and b.used == 60
        # cancelling a waiter gives nothing away
        t3 = asyncio.create_task(take(80, "c"))
        await asyncio.sleep(0.01)
        t3.cancel()
        await asyncio.gather(t3, return_exceptions=True)
        assert b.used == 60 and b.waiting == 0
        # a body larger than the whole budget runs alone, once the others are gone
        t4 = asyncio.create_task(take(250, "big"))
        await asyncio.sleep(0.01)
        assert "big" not in order
        b.release(50)
        b.release(10)
        await asyncio.sleep(0.01)
        assert order[-1] == "big" and b.used == 250 and b.peak == 250
        # adjust never waits, may overdraw, and newcomers wait until it is back under the limit
        b.adjust(250, 0)
        held = b.adjust(0, 120)
        t5 = asyncio.create_task(take(1, "d"))
        await asyncio.sleep(0.01)
        assert "d" not in order
        b.release(held)
        await asyncio.sleep(0.01)
        assert order[-1] == "d"
        await asyncio.gather(t1, t2, t4, t5)

    asyncio.run(go())


def test_concurrent_bodies_stay_within_the_budget(srv, plan, local):
    """8 clients at once, each sending a 0.3 MB request, against a 2 MB in-flight budget: every
    answer right, never more than 2 MB of bodies held, some waited."""
    from janus_deploy.backends import run_segments
    from janus_deploy.images import normalize

    manifest = plan[0]
    frame = np.random.default_rng(1).integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)
    x = normalize(frame, manifest.model["mean"], manifest.model["std"])
    tok, size = run_segments(local, 1, 0, manifest.edge_segments(2), [x])
    ref = run_segments(local, 1, 0, len(manifest.level(1)["segments"]), [x])[0]
    tensors = {"tokens": np.repeat(tok, 2, 0), "size": np.repeat(size, 2, 0)}  # batch 2: ~0.3 MB
    body, h = binary(tensors)
    routes = srv.app.state.janus_routes
    routes.budget.peak = routes.budget.waited = 0
    errors: list[str] = []

    def worker():
        with httpx.Client(base_url=srv.url, timeout=60, trust_env=False) as c:
            for _ in range(3):
                try:
                    r = c.post("/v2/models/janus_L1_S2/infer", content=body, headers=h)
                    assert r.status_code == 200, r.text
                    _, outs = wire.parse_response(r.content, int(r.headers[wire.HEADER_LENGTH]))
                    np.testing.assert_allclose(outs["logits"], np.repeat(ref, 2, 0), atol=1e-4)
                except AssertionError as exc:
                    errors.append(str(exc)[:200])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:2]
    assert 0 < routes.budget.peak <= routes.budget.limit == 2 * MiB
    assert routes.budget.used == 0


def test_rss_bounded_under_many_big_bodies(plan, local):
    """16 clients send 12 MB bodies at once to a server with a 16 MB in-flight budget: the
    process's resident memory grows by about one body (not 16), and gives it back."""
    import psutil

    _, plan_dir, engines = plan
    app = create_app(plan_dir, engines, runner=local, threads=1, concurrency=2, max_body_mb=16,
                     limits=ServerLimits(max_inflight_mb=16))
    n = (12 * MiB) // (224 * 224 * 3)
    body, h = binary({"frame": np.zeros((n, 224, 224, 3), np.uint8)})  # batch n > 64: read, then refused
    proc = psutil.Process()
    with BackgroundServer(app) as s:
        with httpx.Client(base_url=s.url, trust_env=False) as c:
            assert c.post("/v2/models/janus_L0_S0/infer", content=body, headers=h).status_code == 400  # warm
        base, peak, done = proc.memory_info().rss, [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.005)

        codes: list[int] = []
        request = (f"POST /v2/models/janus_L0_S0/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                   f"{wire.HEADER_LENGTH}: {h[wire.HEADER_LENGTH]}\r\nConnection: close\r\n\r\n").encode()

        def send():  # a raw socket: the client side keeps no copy of the body (httpx would, per client)
            with socket.create_connection(("127.0.0.1", s.port), timeout=60) as sock:
                sock.sendall(request)
                sock.sendall(body)
                codes.append(int(sock.recv(64).split()[1]))

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=send) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        sampler.join()
        time.sleep(0.5)
        after = proc.memory_info().rss
        budget = app.state.janus_routes.budget
    assert codes == [400] * 16
    assert budget.peak <= 16 * MiB and budget.waited > 0
    growth = (peak[0] - base) / MiB
    print(f"rss growth {growth:.1f} MB, after {(after - base) / MiB:.1f} MB, budget peak {budget.peak / MiB:.1f} MB")
    assert growth < 32, f"resident memory grew {growth:.0f} MB"  # one 12 MB body at a time, plus overhead
    # and nothing stays: a refused body is not kept alive by its exception (it was, until a GC pass)
    assert (after - base) / MiB < 8, f"{(after - base) / MiB:.0f} MB stayed"


# ------------------------------------------------------------------------------ connections
@pytest.fixture
def tight(plan, local):
    _, plan_dir, engines = plan
    app = create_app(plan_dir, engines, runner=local, threads=1, concurrency=2, body_timeout_s=1.0,
                     limits=ServerLimits(max_connections=20, header_timeout_s=1.0, keep_alive_s=1))
    with BackgroundServer(app) as s:
        s.app = app
        yield s


def closed_after(sock: socket.socket, limit_s: float) -> float | None:
    """Seconds until the server closes ``sock`` (None if still open after ``limit_s``)."""
    t0 = time.monotonic()
    sock.settimeout(limit_s)
    try:
        while sock.recv(4096):
            pass
    except (socket.timeout, TimeoutError):
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - t0


def test_slow_headers_and_idle_connections_are_cut(tight):
    guard = tight.app.state.janus_guard
    # headers sent one byte every 0.2 s: cut at the 1 s header deadline, not kept forever
    slow = socket.create_connection(("127.0.0.1", tight.port))
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
    t0, cut = time.monotonic(), None
    for byte in request:
        try:
            slow.sendall(bytes([byte]))
        except OSError:
            cut = time.monotonic() - t0
            break
        time.sleep(0.2)
        if time.monotonic() - t0 > 4:
            break
    if cut is None:
        cut = closed_after(slow, 3)
        cut = None if cut is None else time.monotonic() - t0
    slow.close()
    assert cut is not None and 0.9 < cut < 2.5, cut
    # a connection that never sends anything: cut at the same deadline
    idle = socket.create_connection(("127.0.0.1", tight.port))
    t = closed_after(idle, 3)
    idle.close()
    assert t is not None and 0.8 < t < 2.0, t
    # after a response, the keep-alive timeout (uvicorn's) closes an idle connection
    ka = socket.create_connection(("127.0.0.1", tight.port))
    ka.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ka.recv(4096).startswith(b"HTTP/1.1 200")
    t = closed_after(ka, 3)
    ka.close()
    assert t is not None and t < 2.0, t
    assert guard.stats["header_timeouts"] >= 2


def test_connection_cap_evicts_idle_and_logs_one_line(tight, caplog):
    guard = tight.app.state.janus_guard
    caplog.set_level(logging.WARNING, logger="janus_deploy.runtime.server")
    idle = [socket.create_connection(("127.0.0.1", tight.port)) for _ in range(60)]  # 3x the cap
    time.sleep(0.2)
    assert guard.open - guard.closing <= 20 and guard.peak <= 21
    t0 = time.monotonic()
    with httpx.Client(base_url=tight.url, timeout=1.0, trust_env=False) as c:
        assert c.get("/v2/health/live").status_code == 200  # a good request still gets through
        body, h = binary(tokens(tight.app.state.janus.manifest))
        assert c.post("/v2/models/janus_L0_S3/infer", content=body, headers=h).status_code == 200
    assert time.monotonic() - t0 < 1.0
    lines = [r for r in caplog.records if "connection limit" in r.getMessage()]
    assert len(lines) == 1 and guard.stats["evicted_idle"] >= 40
    assert not [r for r in caplog.records if r.exc_info]  # no tracebacks
    for s in idle:
        s.close()


def test_when_every_connection_is_busy_a_new_one_gets_503(tight):
    """20 connections each in the middle of a request (headers sent, body pending): the 21st
    is answered 503 and closed; once their bodies time out (408) the server serves again."""
    head = (b"POST /v2/models/janus_L0_S3/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Inference-Header-Content-Length: 10\r\n\r\n")
    busy = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", tight.port))
        s.sendall(head + b"{")
        busy.append(s)
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", tight.port), timeout=3)
    reply = extra.recv(4096)
    extra.close()
    assert reply.startswith(b"HTTP/1.1 503") and b"server busy" in reply
    for s in busy:
        s.settimeout(3)
        assert s.recv(4096).startswith(b"HTTP/1.1 408")  # body timeout: 1 s
        s.close()
    with httpx.Client(base_url=tight.url, timeout=2, trust_env=False) as c:
        assert c.get("/v2/health/live").status_code == 200
    assert tight.app.state.janus_guard.stats["refused_busy"] >= 1


def test_serve_cli_takes_the_token_from_a_file_and_passes_the_limits(plan, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import janus_deploy.runtime.server as server_module
    from janus_deploy.cli.main import app as cli

    _, plan_dir, engines = plan
    seen: dict = {}
    monkeypatch.setattr(server_module, "serve", lambda *a, **kw: seen.update(kw))
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["serve", str(plan_dir), "--engines", str(engines), "--port", str(port)]
    r = CliRunner().invoke(cli, [*args, "--token-file", str(token), "--max-connections", "50", "--header-timeout", "3",
                                 "--keep-alive", "2", "--max-inflight-mb", "8", "--max-json-mb", "0.5"])
    assert r.exit_code == 0, r.output
    assert seen["token"] == "s3cret" and seen["max_json_mb"] == 0.5
    assert seen["limits"] == ServerLimits(max_connections=50, header_timeout_s=3.0, keep_alive_s=2, max_inflight_mb=8.0)
    r = CliRunner().invoke(cli, [*args, "--token-file", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "cannot read --token-file" in r.output
    r = CliRunner().invoke(cli, [*args, "--max-connections", "0"])
    assert r.exit_code == 2 and "--max-connections must be an integer >= 1" in r.output


def test_a_header_length_of_thousands_of_digits_is_a_short_400(srv, client, plan):
    """Issue 21 item 5: a 5000-digit Inference-Header-Content-Length was Python's int-size error
    (500); a length header is parsed bounded, so every odd value is a short 400."""
    url = "/v2/models/janus_L0_S3/infer"
    body, hlen = wire.encode_request(tokens(plan[0]))
    before = client.get("/v2").json()["janus"]["stats"]["server_errors"]
    for value, fragment in (("9" * 5000, "digits"), ("1" * 19, "digits"), ("-5", "integer"), ("abc", "integer")):
        assert_short_4xx(client.post(url, content=body, headers={wire.HEADER_LENGTH: value}), 400, fragment)
    assert client.get("/v2").json()["janus"]["stats"]["server_errors"] == before
    ok = client.post(url, content=body, headers={wire.HEADER_LENGTH: str(hlen)})
    assert ok.status_code == 200, ok.text[:200]


def test_header_length_value_is_bounded():
    assert wire.header_length_value(" 123 ") == 123
    for bad in ("9" * 5000, "", "1e3", "-1", "+1", "١"):
        with pytest.raises(wire.WireError):
            wire.header_length_value(bad)
