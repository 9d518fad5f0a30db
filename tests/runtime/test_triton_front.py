"""The front janus-deploy puts between clients and the bundled tritonserver (triton/front.py):
a gzip bomb is refused quickly with memory bounded, and the token never reaches a command line
(issue 21 items 1 and 4)."""

from __future__ import annotations

import threading
import time
import zlib

import httpx
import numpy as np
import pytest
from test_triton import _bundle_or_skip, repo, small  # noqa: F401 - module fixtures reused

from janus_deploy.triton.front import UPSTREAM_KEY_HEADER, FrontOptions
from janus_deploy.triton.server import TritonServer
from janus_deploy.wire import v2 as wire
from janus_deploy.wire.codecs import encode_tokens

MiB = 1024 * 1024
BOMB_INFLATED = 1024 * MiB  # what the 1 MB request inflated to


@pytest.fixture(scope="module")
def bomb():
    """A binary V2 request header announcing a small JSON header, then 1 GiB of zeros, gzip'd
    (about 1 MB on the wire)."""
    header = b'{"inputs":[{"name":"tokens","datatype":"FP32","shape":[1,5,192],"parameters":{"binary_data_size":3840}}]}'
    c = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [c.compress(header)]
    zeros = bytes(MiB)
    parts += [c.compress(zeros) for _ in range(BOMB_INFLATED // MiB)]
    parts.append(c.flush())
    return b"".join(parts), len(header)


def tree_rss(pid: int) -> int:
    import psutil

    p = psutil.Process(pid)
    total = 0
    for q in [p, *p.children(recursive=True)]:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def self_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


@pytest.fixture(scope="module")
def fronted(repo):  # noqa: F811 - the fixture of test_triton
    _bundle_or_skip()
    srv = TritonServer(repo.path, http_port=0, token="tok-9f3c1e", front=FrontOptions(max_body_mb=16, max_json_mb=1))
    srv.start(timeout=180)
    yield srv
    srv.stop()
    srv.cleanup()


def post_bomb(url: str, body: bytes, hlen: int, token: str | None = "tok-9f3c1e") -> httpx.Response:
    h = {"Content-Encoding": "gzip", wire.HEADER_LENGTH: str(hlen), "Content-Type": "application/octet-stream"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/v2/models/janus_L0_S1/infer", content=body, headers=h, timeout=60, trust_env=False)


def test_a_gzip_bomb_is_413_quickly_and_memory_stays_bounded(fronted, bomb):
    body, hlen = bomb
    assert len(body) < 2 * MiB
    triton_before, front_before = tree_rss(fronted.pid), self_rss()
    t = time.perf_counter()
    r = post_bomb(fronted.url, body, hlen)
    took = time.perf_counter() - t
    assert r.status_code == 413 and "max-body-mb" in r.json()["error"], r.text[:300]
    assert took < 5.0, took
    # four at once (the issue: 4.29 GB on a bare tritonserver): every one refused
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(post_bomb(fronted.url, body, hlen).status_code)) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert codes == [413] * 4
    # tritonserver never saw the bomb; the front inflated at most --max-body-mb (16 MB) per body
    assert tree_rss(fronted.pid) - triton_before < 50 * MiB
    assert self_rss() - front_before < 150 * MiB
    # without the token the bomb is not even read
    assert post_bomb(fronted.url, body, hlen, token=None).status_code == 401


def test_the_token_is_in_no_command_line_and_triton_hides_behind_the_front(fronted):
    import psutil

    procs = [psutil.Process(fronted.pid), *psutil.Process(fronted.pid).children(recursive=True)]
    assert len(procs) >= 2  # tritonserver and its python-backend stubs
    for p in procs:
        cmdline = open(f"/proc/{p.pid}/cmdline", "rb").read()
        assert b"tok-9f3c1e" not in cmdline, p.pid
    cmd = open(f"/proc/{fronted.pid}/cmdline", "rb").read().split(b"\0")
    assert b"--http-address=127.0.0.1" in cmd and b"--grpc-address=127.0.0.1" in cmd
    # tritonserver's own port answers only the front's key (not the user's token)
    meta = "/v2/models/janus_L0_S1"
    assert httpx.get(fronted.upstream_url + meta, trust_env=False).status_code == 403
    assert httpx.get(fronted.upstream_url + meta, headers={"Authorization": "Bearer tok-9f3c1e"},
                     trust_env=False).status_code == 403
    assert httpx.get(fronted.upstream_url + meta, headers={UPSTREAM_KEY_HEADER: fronted.upstream_key},
                     trust_env=False).status_code == 200
    # clients: the token at the front; health stays open
    assert httpx.get(fronted.url + "/v2/health/ready", trust_env=False).status_code == 200
    r = httpx.get(fronted.url + meta, trust_env=False)
    assert r.status_code == 401 and "unauthorized" in r.json()["error"]
    r = httpx.get(fronted.url + meta, headers={"Authorization": "Bearer tok-9f3c1e"}, trust_env=False)
    assert r.status_code == 200 and r.json()["name"] == "janus_L0_S1"


def test_through_the_front_answers_match_and_limits_hold(fronted, small):  # noqa: F811
    manifest = small[0]
    x = manifest.level(0)["tokens"][1]
    rng = np.random.default_rng(3)
    tensors = encode_tokens(rng.standard_normal((1, x, manifest.model["embed_dim"])).astype(np.float32),
                            np.ones((1, x, 1), np.float32), "fp16")  # the repository's codec
    body, hlen = wire.encode_request(tensors)
    auth = {"Authorization": "Bearer tok-9f3c1e"}
    plain = httpx.post(f"{fronted.url}/v2/models/janus_L0_S1/infer", content=body, trust_env=False, timeout=60,
                       headers={**auth, wire.HEADER_LENGTH: str(hlen)})
    gz = httpx.post(f"{fronted.url}/v2/models/janus_L0_S1/infer", content=zlib.compress(body, wbits=31), trust_env=False,
                    timeout=60, headers={**auth, wire.HEADER_LENGTH: str(hlen), "Content-Encoding": "gzip"})
    direct = httpx.post(f"{fronted.upstream_url}/v2/models/janus_L0_S1/infer", content=body, trust_env=False, timeout=60,
                        headers={UPSTREAM_KEY_HEADER: fronted.upstream_key, wire.HEADER_LENGTH: str(hlen)})
    outs = []
    for r in (plain, gz, direct):
        assert r.status_code == 200, r.text[:300]
        outs.append(wire.parse_response(r.content, int(r.headers[wire.HEADER_LENGTH]))[1]["logits"])
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[1], outs[2])
    # the built-in server's body rules: a body over --max-body-mb from its headers, JSON over --max-json-mb
    r = httpx.post(f"{fronted.url}/v2/models/janus_L0_S1/infer", content=bytes(17 * MiB), trust_env=False, timeout=60,
                   headers={**auth, wire.HEADER_LENGTH: "10"})
    assert r.status_code == 413 and "max-body-mb" in r.json()["error"]
    r = httpx.post(f"{fronted.url}/v2/models/janus_L0_S1/infer", content=b"[" * (2 * MiB), trust_env=False, timeout=60,
                   headers=auth)
    assert r.status_code == 413 and "max-json-mb" in r.json()["error"]
    r = httpx.post(f"{fronted.url}/v2/models/janus_L0_S1/infer", content=zlib.compress(b" " * (2 * MiB), wbits=31),
                   trust_env=False, timeout=60, headers={**auth, "Content-Encoding": "gzip"})
    assert r.status_code == 413 and "max-json-mb" in r.json()["error"]
    r = httpx.post(f"{fronted.url}/v2/models/janus_L0_S1/infer", content=b"\x1f\x8bjunk", trust_env=False, timeout=60,
                   headers={**auth, "Content-Encoding": "gzip", wire.HEADER_LENGTH: "3"})
    assert r.status_code == 400 and "gzip" in r.json()["error"]


def test_bare_tritonserver_keeps_the_old_layout(repo):  # noqa: F811
    cmd = TritonServer(repo.path, http_port=0, token="s3cret", front=None).command()
    assert any("authorization=Bearer s3cret" in c for c in cmd)  # the documented cost of front=None
    srv = TritonServer(repo.path, http_port=0, token="s3cret")
    cmd = srv.command()
    assert not any("s3cret" in c for c in cmd) and any(srv.upstream_key in c for c in cmd)
    assert f"--http-port={srv.triton_http_port}" in cmd and srv.triton_http_port != srv.http_port
