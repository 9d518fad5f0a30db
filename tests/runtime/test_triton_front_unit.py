"""The Triton front (triton/front.py) against a stand-in upstream, so it is tested where the
bundled tritonserver cannot run: what reaches the upstream, what is refused before it."""

from __future__ import annotations

import zlib

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from janus_deploy.runtime.server import BackgroundServer
from janus_deploy.triton.front import UPSTREAM_KEY_HEADER, FrontOptions, create_front
from janus_deploy.triton.server import free_port
from janus_deploy.wire.v2 import HEADER_LENGTH

MiB = 1024 * 1024
pytest.importorskip("aiohttp", reason="the front's client ([triton] extra)")


@pytest.fixture(scope="module")
def upstream():
    seen: list[dict] = []
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def echo(path: str, request: Request):
        body = await request.body()
        seen.append({"path": "/" + path, "query": request.url.query, "headers": dict(request.headers), "body": body})
        return Response(b"answer:" + body[:16], media_type="application/octet-stream", headers={HEADER_LENGTH: "7"})

    with BackgroundServer(app) as srv:
        srv.seen = seen
        yield srv


@pytest.fixture(scope="module")
def front(upstream):
    app = create_front(upstream.url, "key123", FrontOptions(token="t0k", max_body_mb=1, max_json_mb=0.25))
    with BackgroundServer(app) as srv:
        yield srv


AUTH = {"Authorization": "Bearer t0k"}


def post(front, body, headers):
    return httpx.post(f"{front.url}/v2/models/m/infer?x=1", content=body, headers={**AUTH, **headers}, trust_env=False)


def test_a_compressed_body_reaches_triton_inflated_with_the_key_and_without_the_token(front, upstream):
    upstream.seen.clear()
    r = post(front, zlib.compress(b"hello world" * 10, wbits=31), {"Content-Encoding": "gzip", HEADER_LENGTH: "5"})
    assert r.status_code == 200 and r.content == b"answer:hello worldhello" and r.headers[HEADER_LENGTH] == "7"
    got = upstream.seen[-1]
    assert got["path"] == "/v2/models/m/infer" and got["query"] == "x=1" and got["body"] == b"hello world" * 10
    h = got["headers"]
    assert h[UPSTREAM_KEY_HEADER] == "key123" and h[HEADER_LENGTH.lower()] == "5"
    assert "authorization" not in h and "content-encoding" not in h


def test_bombs_and_oversized_bodies_never_reach_triton(front, upstream):
    upstream.seen.clear()
    bomb = zlib.compress(bytes(64 * MiB), level=9, wbits=31)  # 64 MB of zeros in ~64 KB
    r = post(front, bomb, {"Content-Encoding": "gzip", HEADER_LENGTH: "5"})
    assert r.status_code == 413 and "max-body-mb" in r.json()["error"]
    r = post(front, bomb, {"Content-Encoding": "gzip"})  # a JSON body: the JSON limit
    assert r.status_code == 413 and "max-json-mb" in r.json()["error"]
    r = post(front, bytes(2 * MiB), {HEADER_LENGTH: "5"})
    assert r.status_code == 413
    r = post(front, iter([bytes(256 * 1024)] * 6), {HEADER_LENGTH: "5"})  # chunked, past the limit
    assert r.status_code == 413
    r = post(front, b"{" * (300 * 1024), {})
    assert r.status_code == 413 and "max-json-mb" in r.json()["error"]
    r = post(front, b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip", HEADER_LENGTH: "5"})
    assert r.status_code == 400 and "gzip" in r.json()["error"]
    r = post(front, b"x", {"Content-Encoding": "br", HEADER_LENGTH: "1"})
    assert r.status_code == 415
    r = httpx.post(f"{front.url}/v2/models/m/infer", content=b"x", trust_env=False)
    assert r.status_code == 401 and "unauthorized" in r.json()["error"]
    assert upstream.seen == []
    assert httpx.get(f"{front.url}/v2/health/ready", trust_env=False).status_code == 200  # open, forwarded


def test_an_unreachable_triton_is_a_502():
    app = create_front(f"http://127.0.0.1:{free_port()}", "k", FrontOptions())
    with BackgroundServer(app) as srv:
        r = httpx.get(f"{srv.url}/v2", trust_env=False)
    assert r.status_code == 502 and "Triton did not answer" in r.json()["error"]
