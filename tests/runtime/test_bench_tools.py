"""The benchmarks' client loops: bench_load --mode edge runs, and a run whose clients failed
exits non-zero (issue 21 item 9)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bench_load(plan, *extra, timeout=240):
    manifest, plan_dir, engines = plan
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, str(TOOLS / "bench_load.py"), "--plan", str(plan_dir), "--engines",
                           str(engines), "--clients", "1", "--duration", "2", *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_bench_load_edge_mode_runs_requests(plan):
    r = _bench_load(plan, "--mode", "edge")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["requests"] > 0 and report["client_crashes"] == []
    assert report["errors"] < report["requests"] and report["offloaded"] > 0


def test_bench_load_exits_non_zero_when_every_request_fails(plan):
    r = _bench_load(plan, "--mode", "edge", "--server", f"http://127.0.0.1:{_closed_port()}")
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "no request of" in r.stderr or "every request failed" in r.stderr


def test_a_crashing_client_fails_the_run():
    sys.path.insert(0, str(TOOLS))
    try:
        from bench_clients import client_failure, start_clients
    finally:
        sys.path.remove(str(TOOLS))

    def client(i):
        if i == 1:
            raise TypeError("unexpected keyword argument 'token'")

    threads, crashes = start_clients(client, [(0,), (1,)])
    for t in threads:
        t.join()
    assert crashes == ["TypeError: unexpected keyword argument 'token'"]
    assert "crashed" in client_failure(10, 0, crashes)
    assert client_failure(0, 0, []) == "the clients made no request"
    assert client_failure(10, 1, []) is None
    assert "no request of 10" in client_failure(10, 0, [], offloaded=0)


@pytest.mark.slow
def test_bench_fleet_runs_both_controllers_and_the_simulator(plan, tmp_path):
    """tools/bench_fleet.py end to end, small: 2 edges for 2 s against the built-in server, aware
    then unaware, next to the fleet simulator (a folder with the plan, engines and profiles)."""
    from linear_profiles import profiles

    from janus_deploy.profile.table import save_profile

    manifest, plan_dir, engines = plan
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "plan").symlink_to(plan_dir)
    (demo / "engines").symlink_to(engines)
    edge, cloud = profiles(manifest)
    save_profile(edge, demo / "edge-profile.json")
    save_profile(cloud, demo / "cloud-profile.json")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp_path / "fleet.json"
    r = subprocess.run([sys.executable, str(TOOLS / "bench_fleet.py"), "--demo", str(demo), "--edges", "2", "--seconds", "2",
                        "--sla", "1000", "--edge-slowdown", "1", "--demo-profiles", "--work", str(tmp_path / "w"),
                        "--json", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(x["engine"], x["mode"]) for x in rows] == [("builtin", "aware"), ("builtin", "unaware")]
    for x in rows:
        assert x["loopback"]["requests"] > 0 and x["simulated"]["requests"] > 0
    assert "| builtin | aware | 2 |" in r.stdout
