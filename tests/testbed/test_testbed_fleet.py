"""Several edges behind one server on the testbed (testbed/fleet.py): its pieces without root, and
(as root) a short fleet of 2 edges, its reports next to the simulator's, and its teardown on
success and after kill -9."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
from testbed_support import needs_root

from janus_deploy.net.traces import Trace
from janus_deploy.schedule.controller import ControllerConfig
from janus_deploy.schedule.runlog import RequestRecord
from janus_deploy.sim.fleet import fleet_controller, rotated
from janus_deploy.testbed import TestbedConfig, TestbedError, leftovers
from janus_deploy.testbed import fleet as fl
from janus_deploy.testbed import netns as nsmod

# ------------------------------------------------------------------------------ no root needed


def _cfg(small, **kw):
    plan, engines, edge, cloud = small
    base = dict(plan=plan, engines=engines, edge_profile=edge, cloud_profile=cloud,
                trace=Trace([20.0, 2.0, 0.0, 30.0, 8.0], 0.5, "bw"), sla_ms=100, requests=1)
    return TestbedConfig(**{**base, **kw})


def test_settings_errors_are_one_line(small):
    cfg = _cfg(small)
    for settings, cfg_kw, match in [
        (fl.FleetSettings(0), {}, "--fleet must be an integer from 1"),
        (fl.FleetSettings(2, ("aware", "blind")), {}, "unknown blind"),
        (fl.FleetSettings(2, instances=0), {}, "--instances"),
        (fl.FleetSettings(2), {"streams": 2, "fps": 10.0}, "--fleet and --streams"),
        (fl.FleetSettings(2), {"server_engine": "triton"}, "built-in server"),
        (fl.FleetSettings(2), {"trace": Trace([10.0] * 700, 1.0, "long")}, "--trace-seconds"),
    ]:
        with pytest.raises(TestbedError, match=match) as e:
            settings.validate(_cfg(small, **cfg_kw) if cfg_kw else cfg)
        assert "\n" not in str(e.value)


def test_windows_are_the_fleet_simulators():
    """Edge i's window is the trace rotated by i·duration/N, the ping alike (simulate_fleet's rule)."""
    bw = Trace([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.5, "bw")
    ping = Trace([10.0, 20.0, 30.0, 40.0], 0.5, "ping", "ms")
    cfg = TestbedConfig(plan=None, engines=None, edge_profile=None, cloud_profile=None, trace=bw, ping=ping,
                        sla_ms=100, requests=1)
    traces, pings = fl._windows(cfg, 3)
    assert [t.samples for t in traces] == [[1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 1, 2], [5, 6, 1, 2, 3, 4]]
    assert [p.samples for p in pings] == [[10, 20, 30, 40], [30, 40, 10, 20], [10, 20, 30, 40]]  # 2 s ≡ 0 in a 2 s ping
    assert traces[1].samples == rotated(bw, 1.0).samples


def test_fleet_controller_modes():
    assert fleet_controller(None, "unaware").cloud_load == "off"
    assert fleet_controller(None, "aware").cloud_load == ControllerConfig().cloud_load
    assert fleet_controller(ControllerConfig().with_(cloud_load="extra"), "aware").cloud_load == "extra"
    assert fleet_controller(ControllerConfig().with_(cloud_load="off"), "aware").cloud_load != "off"
    with pytest.raises(Exception, match="unknown fleet mode"):
        fleet_controller(None, "blind")


def _record(i: int, t: float, total: float, *, sent: int = 0, queue: float | None = None, fallback: bool = False):
    r = {"id": i, "t": t, "sla_ms": 50.0,
         "decision": {"alpha": 0.0, "policy": "exponential", "level": 0, "profile_level": 0, "split": 0 if sent else 3,
                      "label": "0@0" if sent else "0@3", "codec": "fp16" if sent else None, "meets_sla": True},
         "controller": {"estimate_mbps": 10.0, "bandwidth_mbps": 8.0, "rtt_ms": 2.0, "recent_error": 0.1,
                        "reason": "scheduler"},
         "predicted": {"total_ms": 20.0, "bytes": sent, "edge_ms": 0.0, "encode_ms": 0.0, "comm_ms": 1.0,
                       "rtt_ms": 2.0, "decode_ms": 0.0, "cloud_ms": 5.0},
         "measured": {"total_ms": total}, "bytes": sent}
    if queue is not None:
        r["server"] = {"janus_queue_ms": queue, "janus_compute_ms": 4.0, "janus_decode_ms": 1.0, "janus_server_ms": 5.0 + queue}
    if fallback:
        r["fallback"] = {"kind": "timeout", "reason": "deadline", "ran_locally": "1-3"}
    return RequestRecord.model_validate(r)


def test_fleet_result_from_records_in_the_simulators_types():
    """Two edges' records: the fleet's and every edge's violations, goodput and offloaded share, and
    the server's queue and utilisation, against hand-computed values."""
    e0 = [_record(0, 10.0, 30.0), _record(1, 10.1, 60.0, sent=1000, queue=0.0), _record(2, 10.2, 40.0, sent=1000, queue=8.0)]
    e1 = [_record(0, 3.0, 70.0, sent=500, queue=4.0, fallback=True), _record(1, 3.1, 20.0)]
    res = fl.fleet_result("aware", [e0, e1], [10.0, 3.0], sla_ms=50.0, seconds=2.0, instances=1)
    assert res.mode == "aware" and len(res.edges) == 2 and len(res.logs) == 2
    assert res.edges[0]["violation_ratio"] == pytest.approx(1 / 3) and res.edges[1]["violation_ratio"] == 0.5
    assert res.fleet["violation_ratio"] == pytest.approx(2 / 5) and res.fleet["edges"] == 2
    assert res.fleet["goodput_rps"] == pytest.approx(3 / 2.0) and res.fleet["throughput_rps"] == pytest.approx(5 / 2.0)
    assert res.fleet["offloaded"] == pytest.approx(3 / 5) and res.fleet["fallbacks"] == 1
    assert res.logs[1].start_s == pytest.approx([0.0, 0.1])
    assert res.server["requests"] == 3 and res.server["queue_ms_p50"] == pytest.approx(4.0)
    assert res.server["utilisation"] == pytest.approx(3 * 5.0 / 1e3 / 2.0)


def test_cli_fleet_mistakes_are_one_line(small, tmp_path):
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    plan, engines, edge, cloud = small
    bw = tmp_path / "bw.list"
    bw.write_text("###############################\nRun 1\n20,2,0,30,8\n")
    common = [str(plan), "--engines", str(engines), "--profile", str(edge), "--cloud-profile", str(cloud),
              "--trace", str(bw), "--sample-interval", "0.5", "--sla", "100"]
    if nsmod.os.geteuid() != 0:
        pytest.skip("the testbed command checks root before its options")
    for extra, match in [([], "--requests N is required"), (["--fleet", "2"], "--fleet needs --trace-seconds"),
                         (["--fleet", "2", "--trace-seconds", "2", "--requests", "5"], "drop --requests"),
                         (["--fleet", "2", "--trace-seconds", "9"], "longer than trace")]:
        r = CliRunner().invoke(app, ["testbed", *common, *extra])
        assert r.exit_code != 0 and match in r.output, (extra, r.output)


# ------------------------------------------------------------------------------ as root


@needs_root
def test_add_veth_pairs_leave_nothing():
    before = leftovers()
    with nsmod.Netns() as ns:
        v = ns.add_veth()
        assert v.host_if in nsmod.links() and v.host_ip != ns.host_ip and len(ns.veths) == 2
        assert v.ns_if in nsmod.run_cmd(["ip", "-n", ns.name, "-o", "link", "show"]).stdout
        assert nsmod._pid_of(v.host_if) == os.getpid()  # swept by the same rule after a kill -9
    assert leftovers() == before


def _fleet_args(small, traces, n, seconds="2.5"):
    plan, engines, edge, cloud = small
    bw, ping = traces
    return [str(plan), "--engines", str(engines), "--profile", str(edge), "--cloud-profile", str(cloud),
            "--trace", str(bw), "--ping", str(ping), "--sample-interval", "0.5", "--sla", "100",
            "--fleet", str(n), "--trace-seconds", seconds, "--fps", "10"]


@needs_root
def test_testbed_fleet_end_to_end_and_cleanup(small, short_traces):
    """2 edges for 2.5 s per controller over their own kernel-shaped links (one with an outage
    where the other has none), both controllers, the simulator's fleet beside, nothing left after."""
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    before = leftovers()
    r = CliRunner().invoke(app, ["testbed", *_fleet_args(small, short_traces, 2), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert leftovers() == before
    info = out["testbed"]
    assert info["fleet"] == 2 and len({e["edge_if"] for e in info["edges"]}) == 2
    assert len({e["cloud_ip"] for e in info["edges"]}) == 2
    assert [e["trace"].endswith("+1 s") for e in info["edges"]] == [False, True]  # edge 1: rotated by 2.5 / 2 → 1 s
    assert all(s["rate_changes"] >= 4 for s in info["kernel_links"])
    for side in ("kernel", "simulated"):
        assert set(out[side]) == {"aware", "unaware"}
        for mode, rep in out[side].items():
            assert len(rep["edges"]) == 2 and rep["fleet"]["edges"] == 2, (side, mode)
            n = sum(e["requests"] for e in rep["edges"])
            assert n == rep["fleet"]["requests"] and 30 <= n <= 52, (side, mode, n)  # 2 × 10 fps × 2.5 s, less waits
            assert 0.0 <= rep["fleet"]["violation_ratio"] <= 1.0
    assert out["kernel"]["aware"]["server"]["requests"] > 0  # the edges offloaded and the server timed its answers
    assert set(out["differences"]) == {"aware", "unaware"}
    assert math.isfinite(out["differences"]["aware"]["violation_points"])


@needs_root
def test_fleet_kill_9_every_pair_is_swept(small, short_traces):
    """SIGKILL mid-fleet leaves the namespace and the 3 edges' veth pairs; the next start's sweep
    removes every one of them."""
    before = leftovers()
    p = subprocess.Popen([sys.executable, "-m", "janus_deploy.cli.main", "testbed",
                          *_fleet_args(small, short_traces, 3, seconds="2.5")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        def mine() -> dict[str, list[str]]:
            left = leftovers()
            return {k: [n for n in v if n.startswith(f"jtb{p.pid}n")] for k, v in left.items()}

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (mine()["namespaces"] and len(mine()["links"]) == 3 and any(
                "tbf" in nsmod.run_cmd(["tc", "qdisc", "show", "dev", dev], check=False).stdout
                for dev in mine()["links"])):
            time.sleep(0.2)
        got = mine()
        assert got["namespaces"] and len(got["links"]) == 3, got
    finally:
        p.kill()
        p.wait()
    assert mine() == got  # what SIGKILL leaves
    swept = nsmod.sweep_stale()
    assert set(got["namespaces"]) <= set(swept)
    assert leftovers() == before


def test_trace_window_seconds_cuts_the_window(tmp_path):
    """--trace-seconds: the window from --trace-start for that long (a fleet's run length), and one
    line when it is longer than the trace."""
    from janus_deploy.testbed import TraceWindow

    bw = tmp_path / "bw.list"
    bw.write_text("###############################\nRun 1\n20,2,0,30,8\n")
    tw = TraceWindow([bw], interval_s=0.5, start_s=0.5, seconds=1.5)
    assert tw.throughput().samples == [2.0, 0.0, 30.0] and tw.throughput().duration_s == 1.5
    assert TraceWindow([bw], interval_s=0.5).throughput().samples == [20.0, 2.0, 0.0, 30.0, 8.0]
    with pytest.raises(TestbedError, match="longer than trace") as e:
        TraceWindow([bw], interval_s=0.5, seconds=9).throughput()
    assert "\n" not in str(e.value)
