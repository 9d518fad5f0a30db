"""The V2 routes one by one (runtime/server.py's V2Endpoints): the probe, model readiness and
metadata by version, the in-flight budget's 503, the timing parameters and the catch-all 500 —
the routes that test_server.py and test_abuse.py do not call directly."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from janus_deploy.runtime.limits import ServerLimits
from janus_deploy.runtime.server import BackgroundServer, V2Endpoints, create_app
from janus_deploy.wire import v2 as wire
from janus_deploy.wire.v2 import WireError

MiB = 1024 * 1024
TIMINGS = ("janus_receive_ms", "janus_parse_ms", "janus_queue_ms", "janus_decode_ms", "janus_compute_ms", "janus_server_ms")


def tokens(manifest, level=0, split=3):
    x = manifest.level(level)["tokens"][split]
    return {"tokens": np.zeros((1, x, 192), np.float32), "size": np.ones((1, x, 1), np.float32)}


@pytest.fixture(scope="module")
def srv(plan, local):
    _, plan_dir, engines = plan
    app = create_app(plan_dir, engines, runner=local, threads=1, concurrency=2, max_body_mb=1, body_timeout_s=1.0,
                     token="tok", limits=ServerLimits(max_inflight_mb=0.1))
    with BackgroundServer(app) as s:
        s.app = app
        yield s


@pytest.fixture(scope="module")
def client(srv):
    with httpx.Client(base_url=srv.url, timeout=30, trust_env=False, headers={"Authorization": "Bearer tok"}) as c:
        yield c


def test_probe_counts_the_body_and_keeps_the_limits(srv, client):
    r = client.post("/janus/probe", content=b"x" * 5000)
    assert r.status_code == 200 and r.json()["bytes"] == 5000 and r.json()["receive_ms"] >= 0
    # chunked (no Content-Length): counted as it streams, refused past --max-body-mb
    r = client.post("/janus/probe", content=iter([b"y" * 4096] * 3))
    assert r.status_code == 200 and r.json()["bytes"] == 3 * 4096
    r = client.post("/janus/probe", content=iter([b"y" * (256 * 1024)] * 5))
    assert r.status_code == 413 and "probe body" in r.json()["error"] and "request body" not in r.json()["error"]
    r = client.post("/janus/probe", content=b"x" * (MiB + 10))
    assert r.status_code == 413 and "max-body-mb" in r.json()["error"]
    r = httpx.post(f"{srv.url}/janus/probe", content=b"x" * 10, trust_env=False)
    assert r.status_code == 401 and "unauthorized" in r.json()["error"]


def test_model_metadata_and_readiness_by_version(client):
    assert client.get("/v2/models/janus_L1_S3/versions/1/ready").json() == {"name": "janus_L1_S3", "ready": True}
    meta = client.get("/v2/models/janus_L1_S3/versions/1").json()
    assert meta["name"] == "janus_L1_S3" and [i["name"] for i in meta["inputs"]][:2] == ["tokens", "size"]
    for path in ("/v2/models/janus_L1_S3/versions/7/ready", "/v2/models/janus_L1_S3/versions/7"):
        r = client.get(path)
        assert r.status_code == 404 and "no version '7'" in r.json()["error"]
    for path in ("/v2/models/nope/ready", "/v2/models/nope"):
        r = client.get(path)
        assert r.status_code == 404 and "unknown model 'nope'" in r.json()["error"]


def test_answer_carries_the_server_timings(srv, client):
    body, hlen = wire.encode_request(tokens(srv.app.state.janus.manifest), binary_output=False)
    r = client.post("/v2/models/janus_L0_S3/infer", content=body, headers={wire.HEADER_LENGTH: str(hlen)})
    assert r.status_code == 200, r.text
    params = r.json()["parameters"]
    assert set(TIMINGS) <= set(params) and all(params[k] >= 0 for k in TIMINGS)
    # the server's time holds the parse, the decode and the compute (each rounded to 1 µs)
    parts = params["janus_parse_ms"] + params["janus_decode_ms"] + params["janus_compute_ms"] + params["janus_queue_ms"]
    assert params["janus_compute_ms"] > 0 and parts <= params["janus_server_ms"] + 0.01


class SlowRunner:
    """The local runner, each segment 1.5 s slower (holds a request's tensors in the budget)."""

    def __init__(self, runner):
        self.runner = runner

    def run_segment(self, level, seg, inputs):
        time.sleep(1.5)
        return self.runner.run_segment(level, seg, inputs)

    def __getattr__(self, name):
        return getattr(self.runner, name)


def test_a_full_body_budget_answers_503_with_retry_after(plan, local):
    """A request being answered holds its decoded tensors (150 KB) in a 0.1 MB in-flight budget:
    the next body waits the body timeout (0.5 s) for its share and gets 503 with Retry-After, and
    the first is still answered."""
    import threading

    _, plan_dir, engines = plan
    app = create_app(plan_dir, engines, runner=SlowRunner(local), concurrency=2, body_timeout_s=0.5,
                     limits=ServerLimits(max_inflight_mb=0.1))
    body, hlen = wire.encode_request(tokens(plan[0], 0, 12))
    h = {wire.HEADER_LENGTH: str(hlen)}
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30, trust_env=False) as c:
        first: list = []
        t = threading.Thread(target=lambda: first.append(c.post("/v2/models/janus_L0_S12/infer", content=body, headers=h)))
        t.start()
        deadline = time.monotonic() + 10
        while app.state.janus_routes.budget.used == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.perf_counter()
        r = c.post("/v2/models/janus_L0_S12/infer", content=body, headers=h)
        waited = time.perf_counter() - t0
        t.join()
        assert r.status_code == 503 and "server busy" in r.json()["error"] and r.headers["retry-after"] == "1"
        assert 0.4 < waited < 1.4, waited
        assert first[0].status_code == 200, first[0].text
        stats = c.get("/v2").json()["janus"]["stats"]
        assert stats["busy"] == 1 and stats["ok"] == 1
        assert app.state.janus_routes.budget.used == 0


def test_an_unexpected_error_is_one_500_line_and_the_server_keeps_serving(srv, client, monkeypatch):
    plane = srv.app.state.janus

    def boom(name):
        raise RuntimeError("a bug in the data plane")

    before = client.get("/v2").json()["janus"]["stats"]["server_errors"]
    monkeypatch.setattr(plane, "lookup", boom)
    r = client.get("/v2/models/janus_L0_S3")
    assert r.status_code == 500 and r.json() == {"error": "internal server error (the server's log has the details)"}
    monkeypatch.undo()
    assert client.get("/v2/models/janus_L0_S3").status_code == 200
    assert client.get("/v2").json()["janus"]["stats"]["server_errors"] == before + 1


def test_endpoints_lookup_without_http(plan, local):
    """The endpoints object is usable without an app: lookup refuses other versions as a 404."""
    from janus_deploy.runtime.dataplane import DataPlane

    e = V2Endpoints(DataPlane(plan[0], local), token=None, concurrency=1, limits=ServerLimits(), body_timeout_s=1.0)
    assert e.lookup("janus_L0_S3", "1").name == "janus_L0_S3"
    with pytest.raises(WireError) as exc:
        e.lookup("janus_L0_S3", "2")
    assert exc.value.status == 404
    r = e.error(400, "x" * 1000)
    assert r.status_code == 400 and len(r.body) < 450 and e.stats["client_errors"] == 1
