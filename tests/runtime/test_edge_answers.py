"""The edge uses only answers it asked for (issue 21 items 2, 3, 5a): a fake server in front of
the real one renames the model, hides or changes the plan hash, restarts with another plan
mid-run, streams a 4 GiB answer, or answers GET /v2 with junk."""

from __future__ import annotations

import json
import resource
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from linear_profiles import profiles

from janus_deploy.images import synthetic_frames
from janus_deploy.runtime.edge import EdgeRuntime
from janus_deploy.runtime.server import BackgroundServer, create_app
from janus_deploy.runtime.transport import TransportOptions
from janus_deploy.wire.v2 import HEADER_LENGTH


@pytest.fixture(scope="module")
def real(plan, local):
    _, plan_dir, engines = plan
    with BackgroundServer(create_app(plan_dir, engines, threads=1, runner=local)) as srv:
        yield srv


class Fake:
    """A V2 server that forwards to ``real`` and tampers as told (``mode``)."""

    def __init__(self, real_url: str, mode: str = "pass") -> None:
        self.real, self.mode = real_url, mode
        self.hash_override: str | None = None
        self.sent_bytes = 0
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, status, body, headers=(), close=False):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                r = httpx.get(fake.real + self.path, trust_env=False)
                if self.path == "/v2":
                    if fake.mode == "junk":
                        return self._reply(200, b"<html>hello</html>", [("Content-Type", "text/html")])
                    info = r.json()
                    if fake.mode == "nohash":
                        info.pop("janus", None)
                    if fake.hash_override:
                        info["janus"]["plan_hash"] = fake.hash_override
                    return self._reply(200, json.dumps(info).encode(), [("Content-Type", "application/json")],
                                       close=fake.mode == "restart")
                self._reply(r.status_code, r.content, [("Content-Type", r.headers.get("Content-Type", ""))])

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                if fake.mode == "huge":  # a 4 GiB chunked answer, written until the edge hangs up
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"\x00" * (1 << 20)
                    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                    try:
                        for _ in range(4096):
                            self.wfile.write(frame)
                            fake.sent_bytes += len(chunk)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                r = httpx.post(fake.real + self.path, content=body, headers=hdrs, trust_env=False, timeout=60)
                out, headers = r.content, [(k, v) for k, v in r.headers.items()
                                           if k.lower() in ("content-type", HEADER_LENGTH.lower())]
                if fake.mode == "rename" and r.status_code == 200:
                    hlen = int(r.headers[HEADER_LENGTH])
                    header = json.loads(out[:hlen])
                    header["model_name"] = "resnet50"
                    hb = json.dumps(header).encode()
                    out = hb + out[hlen:]
                    headers = [("Content-Type", "application/octet-stream"), (HEADER_LENGTH, str(len(hb)))]
                        # "restart": every answer closes the connection, so the next request reconnects
                self._reply(r.status_code, out, headers, close=fake.mode == "restart")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake(real):
    f = Fake(real.url)
    yield f
    f.close()


def edge(plan, local, url, **topts):
    manifest = plan[0]
    e, c = profiles(manifest)
    return EdgeRuntime(manifest, local, e, c, server_url=url, sla_ms=5000, codec="fp32",
                       transport=TransportOptions(**topts))


FRAME = synthetic_frames(1, 224, seed=3)[0]


def test_faithful_proxy_is_used(plan, local, fake):
    with edge(plan, local, fake.url) as rt:
        res = rt.infer(FRAME, force=(1, 3))
    assert res.fallback is None


def test_an_answer_from_another_model_is_refused(plan, local, fake):
    fake.mode = "rename"
    with edge(plan, local, fake.url) as rt:
        res = rt.infer(FRAME, force=(1, 3))
    assert res.fallback.kind == "protocol" and "resnet50" in res.fallback.reason


def test_a_server_without_a_plan_hash_is_refused_unless_allowed(plan, local, fake):
    fake.mode = "nohash"
    with edge(plan, local, fake.url) as rt:
        res = rt.infer(FRAME, force=(1, 3))
    assert res.fallback.kind == "protocol" and "--allow-unverified-server" in res.fallback.reason
    with edge(plan, local, fake.url, allow_unverified_plan=True) as rt:
        assert rt.infer(FRAME, force=(1, 3)).fallback is None


def test_a_restart_with_another_plan_mid_run_is_noticed(plan, local, fake):
    fake.mode = "restart"
    with edge(plan, local, fake.url) as rt:
        assert rt.infer(FRAME, force=(1, 3)).fallback is None
        fake.hash_override = "f" * 64  # the "restarted" server serves another plan
        res = rt.infer(FRAME, force=(1, 3))
    assert res.fallback.kind == "protocol" and "ffffffffffff" in res.fallback.reason


def test_a_4_gib_answer_is_cut_at_the_plans_answer_size(plan, local, fake):
    fake.mode = "huge"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with edge(plan, local, fake.url) as rt:
        res = rt.infer(FRAME, force=(1, 3))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert res.fallback.kind == "protocol" and "longer than" in res.fallback.reason
    assert grown_mb < 100, grown_mb
    assert fake.sent_bytes < 512 << 20  # the edge hung up long before 4 GiB


def test_run_against_a_non_json_v2_is_one_line(plan, fake, tmp_path):
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app
    from janus_deploy.profile.table import save_profile

    manifest, plan_dir, engines = plan
    e, c = profiles(manifest)
    save_profile(e, tmp_path / "edge.json")
    save_profile(c, tmp_path / "cloud.json")
    fake.mode = "junk"
    r = CliRunner().invoke(app, ["run", str(plan_dir), "--engines", str(engines), "--profile", str(tmp_path / "edge.json"),
                                 "--cloud-profile", str(tmp_path / "cloud.json"), "--server", fake.url, "--sla", "2000",
                                 "--synthetic", "1", "--threads", "1"])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "not JSON" in lines[0] and "Traceback" not in r.output, r.output
