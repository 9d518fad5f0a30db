"""The testbed: its pieces without root, and (as root, as in CI) a short run and its teardown on
success, on an error, on Ctrl-C and on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from testbed_support import needs_root

from janus_deploy.net.traces import Trace, load_ping, load_trace
from janus_deploy.report import REPORT_KEYS
from janus_deploy.testbed import TestbedConfig, TestbedError, compare, leftovers, run_testbed, targets, window
from janus_deploy.testbed import netns as nsmod
from janus_deploy.testbed import run as runmod
from janus_deploy.testbed.delay import ReplyDelay

# ------------------------------------------------------------------------------ no root needed


def test_tbf_spec_scales_goodput_and_replays_outages():
    assert nsmod.tbf_spec(0.0).startswith("tbf rate 1000bit ")
    rate = int(nsmod.tbf_spec(10.0).split()[2].removesuffix("bit"))
    assert rate == round(10e6 * 1514 / 1448)  # tbf counts frames, the trace is TCP goodput
    assert f"burst {2 * 1514} " in nsmod.tbf_spec(10.0) and nsmod.tbf_spec(10.0).endswith(f"limit {1 << 20}")


def test_netem_spec():
    assert nsmod.netem_spec(33.25) == "netem delay 33.250ms limit 100000"
    assert nsmod.netem_spec(-1.0) == "netem delay 0.000ms limit 100000"


def test_window_rotates_and_keeps_looping():
    t = Trace([1.0, 2.0, 3.0, 4.0], 0.5, "t")
    w = window(t, 1.0)
    assert w.samples == [3.0, 4.0, 1.0, 2.0] and w.interval_s == 0.5 and "from 1 s" in w.name
    assert window(t, 0.0) is t and window(t, 2.0) is t  # a whole loop later is the start again
    with pytest.raises(TestbedError, match="--trace-start"):
        window(t, -1.0)


def test_reply_delay_follows_the_ping_trace():
    relay = ReplyDelay([30.0, 50.0], 1.0, ("127.0.0.1", 1))
    assert relay.rtt_s(123.0) == 0.030  # before the run: the first sample
    relay.command("start 100.0")
    assert relay.rtt_s(100.5) == 0.030 and relay.rtt_s(101.2) == 0.050 and relay.rtt_s(102.1) == 0.030
    relay.command("hold 0")
    assert relay.rtt_s(101.2) == 0.0
    relay.command("start 200.0")
    assert relay.rtt_s(201.5) == 0.050


def test_compare_and_targets():
    kernel = {"violation_ratio": 0.05, "throughput_rps": 20.0, "latency_ms_p50": 50.0, "latency_ms_p95": 80.0,
              "median_abs_pred_err_pct": 8.0, "choices": {"a@0": 60, "a@7": 40}}
    sim = {"violation_ratio": 0.06, "throughput_rps": 21.0, "latency_ms_p50": 56.0, "latency_ms_p95": 84.0,
           "median_abs_pred_err_pct": 2.0, "choices": {"a@0": 50, "a@7": 50}}
    d = compare(kernel, sim)
    assert d["violation_ratio"] == pytest.approx(0.01) and d["latency_ms_p50_rel"] == pytest.approx(0.12)
    assert d["choices_tv_distance"] == pytest.approx(0.1) and d["median_abs_pred_err_pct"] == -6.0
    assert d["choice_shares"]["a@0"] == {"kernel": 0.6, "other": 0.5}
    t = targets(d)
    assert t["violation_ratio_points"]["met"] and t["throughput_rps_rel"]["met"] and t["latency_ms_p95_rel"]["met"]
    assert not t["latency_ms_p50_rel"]["met"] and t["latency_ms_p50_rel"]["got"] == pytest.approx(0.12)


def test_profiled_runner_pads_to_the_profile_and_chains():
    from janus_deploy.profile.table import load_profile  # noqa: F401 - the profile API in use below

    class Inner:
        def __init__(self):
            self.calls = []

        def run_segment(self, level, segment, inputs):
            self.calls.append((level, segment))
            return [np.zeros(1)]

        def loaded(self):
            return 7

    prof = types.SimpleNamespace(candidates=[0, 1, 3], level_index=lambda policy, alpha: 0,
                                 head_ms=lambda li, s: {0: 0.0, 1: 20.0, 3: 30.0}[s])
    manifest = types.SimpleNamespace(plan_level=lambda i: types.SimpleNamespace(policy="exponential", alpha=0.0))
    r = runmod.ProfiledRunner(Inner(), manifest, prof)
    assert r.target_ms(0, 0) == 20.0 and r.target_ms(0, 1) == 10.0 and r.loaded() == 7
    t0 = time.perf_counter()
    r.run_segment(0, 0, [])
    r.run_segment(0, 1, [])
    took = time.perf_counter() - t0
    assert 0.030 <= took < 0.060  # one chain: 20 + 10 ms, not two separate wake-ups late each


def test_config_errors_are_one_line():
    bw = Trace([10.0], 1.0)
    base = dict(plan=".", engines=".", edge_profile="e", cloud_profile="c", trace=bw, sla_ms=100, requests=1)
    with pytest.raises(TestbedError, match="no nonzero"):
        TestbedConfig(**{**base, "trace": Trace([0.0], 1.0)}).validate()
    with pytest.raises(TestbedError, match="--edge-slowdown applies to --edge-timing real"):
        TestbedConfig(**base, edge_slowdown=8.0).validate()
    with pytest.raises(TestbedError, match="RTT samples in ms"):
        TestbedConfig(**base, ping=Trace([10.0], 1.0)).validate()


def test_without_root_one_line_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(nsmod, "_capabilities", lambda: 0)
    with pytest.raises(TestbedError, match=r"^the testbed needs root \(CAP_NET_ADMIN and CAP_SYS_ADMIN\)") as e:
        nsmod.check_privileges()
    assert "\n" not in str(e.value)
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    r = CliRunner().invoke(app, ["testbed", ".", "--engines", ".", "--profile", "e", "--cloud-profile", "c",
                                 "--trace", "t", "--sla", "100", "--requests", "1"])
    assert r.exit_code == 2 and "needs root" in r.output and len(r.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ as root


@needs_root
def test_netem_detection_leaves_nothing():
    before = leftovers()
    assert nsmod.netem_available() in (True, False)
    assert leftovers() == before


@needs_root
def test_netns_and_kernel_link_shape_and_leave_nothing():
    import socket

    before = leftovers()
    with nsmod.Netns() as ns:
        assert ns.name in nsmod.namespaces() and ns.host_if in nsmod.links()
        sink = ns.popen([sys.executable, "-c", "import socket,sys\n"
                         f"s=socket.create_server(('{ns.ns_ip}', 9100)); print('up', flush=True)\n"
                         "c,_=s.accept()\nwhile c.recv(65536): pass"], stdout=subprocess.PIPE, text=True)
        assert sink.stdout.readline().startswith("up")
        link = nsmod.KernelLink(ns.host_if, Trace([8.0], 1.0))
        link.install()
        with socket.create_connection((ns.ns_ip, 9100)) as c:
            t0 = time.perf_counter()
            c.sendall(bytes(400_000))
            while True:  # until the receiver acknowledged everything (the socket's queue is empty)
                import fcntl
                import struct
                import termios

                if struct.unpack("i", fcntl.ioctl(c.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0] == 0:
                    break
                time.sleep(0.002)
            mbps = 400_000 * 8 / (time.perf_counter() - t0) / 1e6
        assert 6.5 < mbps < 9.0, mbps  # 8 Mbit/s of goodput, give or take a busy machine
        assert "tbf" in nsmod.run_cmd(["tc", "qdisc", "show", "dev", ns.host_if]).stdout
        link.remove()
        assert "tbf" not in nsmod.run_cmd(["tc", "qdisc", "show", "dev", ns.host_if]).stdout
    after = leftovers()
    assert after == before and sink.poll() is not None


def _args(small, traces, requests):
    plan, engines, edge, cloud = small
    bw, ping = traces
    return [str(plan), "--engines", str(engines), "--profile", str(edge), "--cloud-profile", str(cloud),
            "--trace", str(bw), "--ping", str(ping), "--sample-interval", "0.5", "--sla", "100",
            "--requests", str(requests)]


@needs_root
def test_testbed_run_end_to_end_and_cleanup(small, short_traces):
    """The CI run: ~30 s of testbed (server in the namespace, calibration, kernel and user-space
    runs over a 2.5 s trace with an outage), the three reports, then nothing left behind."""
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    before = leftovers()
    t0 = time.monotonic()
    r = CliRunner().invoke(app, ["testbed", *_args(small, short_traces, 200), "--json"])
    took = time.monotonic() - t0
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert leftovers() == before
    for k in ("kernel", "simulated", "user_space"):
        assert set(REPORT_KEYS) <= set(out[k]), k
        assert out[k]["requests"] == 200
    assert set(out["differences"]) == {"simulated_vs_kernel", "user_space_vs_kernel"}
    assert set(out["targets"]) == {"violation_ratio_points", "latency_ms_p50_rel", "latency_ms_p95_rel",
                                   "throughput_rps_rel"}
    info = out["testbed"]
    assert info["rtt"].startswith(("user space", "netem")) and info["kernel_link"]["rate_changes"] >= 5
    assert info["calibration"]["requests"] >= 15 and 0 < info["calibration"]["exchange_ms"] < 50
    kernel = out["kernel"]
    assert kernel["errors"] == 0 and sum(v for k, v in kernel["choices"].items() if not k.endswith("@3")) > 0
    print(f"testbed run took {took:.1f} s")


@needs_root
def test_error_tears_down(small, short_traces, monkeypatch):
    plan, engines, edge, cloud = small

    def broken(self):
        raise TestbedError("the server in the namespace was not ready (test)")

    monkeypatch.setattr(runmod._Cloud, "_wait_ready", broken)
    before = leftovers()
    cfg = TestbedConfig(plan=plan, engines=engines, edge_profile=edge, cloud_profile=cloud,
                        trace=load_trace(short_traces[0], interval_s=0.5), ping=load_ping(short_traces[1], interval_s=0.5),
                        sla_ms=100, requests=5)
    with pytest.raises(TestbedError, match="not ready"):
        run_testbed(cfg)
    assert leftovers() == before


def _wait_for(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


@needs_root
@pytest.mark.parametrize("sig, when", [(signal.SIGINT, "kernel run"), (signal.SIGTERM, "namespace up")])
def test_interrupt_tears_down(small, short_traces, sig, when):
    before = leftovers()
    # SIGINT back to its default in the child: pytest started as a background job of a
    # non-interactive shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    p = subprocess.Popen([sys.executable, "-m", "janus_deploy.cli.main", "testbed", *_args(small, short_traces, 5000)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        dev = None

        def mine() -> list[str]:
            return [n for n in leftovers()["namespaces"] if n.startswith(f"jtb{p.pid}n")]

        assert _wait_for(lambda: bool(mine()), 60), "the namespace never came up"
        dev = mine()[0] + "e"
        if when == "kernel run":
            assert _wait_for(lambda: "tbf" in nsmod.run_cmd(["tc", "qdisc", "show", "dev", dev], check=False).stdout,
                             90), "the kernel run never started"
            time.sleep(1.0)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert leftovers() == before


@needs_root
def test_kill_9_leaves_nothing_the_next_start_does_not_sweep(small, short_traces):
    """SIGKILL mid-run leaves the namespace, its veth and tbf, the server inside and the work
    folder; the next testbed start removes them all and says so (issue 21 item 10)."""
    import glob
    import tempfile

    before = leftovers()
    p = subprocess.Popen([sys.executable, "-m", "janus_deploy.cli.main", "testbed", *_args(small, short_traces, 5000)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        def mine() -> list[str]:
            return [n for n in leftovers()["namespaces"] if n.startswith(f"jtb{p.pid}n")]

        assert _wait_for(lambda: bool(mine()), 60), "the namespace never came up"
        ns = mine()[0]
        assert _wait_for(lambda: "tbf" in nsmod.run_cmd(["tc", "qdisc", "show", "dev", ns + "e"], check=False).stdout,
                         90), "the kernel run never started"
    finally:
        p.kill()
        p.wait()
    folders = glob.glob(os.path.join(tempfile.gettempdir(), f"janus-testbed-{p.pid}-*"))
    assert folders and mine()  # what SIGKILL leaves
    inside = [int(x) for x in nsmod.run_cmd(["ip", "netns", "pids", ns], check=False).stdout.split()]
    swept = nsmod.sweep_stale()
    assert ns in swept and set(folders) <= set(swept)
    assert leftovers() == before
    assert not any(os.path.isdir(f) for f in folders)
    assert _wait_for(lambda: not any(nsmod._alive(q) and not nsmod._zombie(q) for q in inside), 10)


@needs_root
def test_testbed_streams_kernel_user_space_and_simulated(small, short_traces):
    """Cameras on the testbed: 2 x 10 fps through the pipelined runtime over the kernel-shaped
    link and the user-space shaper, and the simulator's streams on the same window."""
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    before = leftovers()
    r = CliRunner().invoke(app, ["testbed", *_args(small, short_traces, 20), "--streams", "2", "--fps", "10",
                                 "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert leftovers() == before
    for k in ("kernel", "simulated", "user_space"):
        m = out[k]
        assert m["frames"] == 40 and set(m["streams"]) == ({"cam0", "cam1"} if k != "simulated"
                                                            else {"stream0", "stream1"}), k
        assert m["dropped"] + m["answered"] == 40 and m["goodput_fps"] is not None, k
    assert out["testbed"]["streams"] == 2 and "simulated_vs_kernel" in out["differences"]
