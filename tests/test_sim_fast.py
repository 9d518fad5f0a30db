"""The simulator's fast engine (libjanus's loop, janus_deploy.sim.fast) against the Python loop:
every field of every request record, the elapsed time and the report, bit for bit, over whole
shipped traces for every system, both clocks, every estimator, the deadline, probes and fps;
settings it does not model fall back to the Python loop with the reason logged.

The default run covers the shipped static traces (small) and a synthetic trace with outages that
opens the breaker; ``-m slow`` (or ``tools/bench_sim.py --parity all``) runs every shipped trace."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import pytest
from libjanus_support import ensure_built

from janus_deploy.net.traces import Trace, load_ping, load_trace, resolve_shipped
from janus_deploy.profile.table import load_preset
from janus_deploy.schedule.controller import SYSTEMS
from janus_deploy.sim import fast
from janus_deploy.sim.simulator import SimConfig, SimulationError, simulate

SHIPPED = resolve_shipped("uplink-5g-lte")


@pytest.fixture(scope="module", autouse=True)
def built():
    ensure_built()
    fast._LIB = fast._LIB_ERROR = None  # load the build just made


@pytest.fixture(scope="module")
def vit_l():
    return load_preset("vit_large_patch16_384-jetson-orin-nano"), load_preset("vit_large_patch16_384-v100")


def differences(py, fa) -> list[str]:
    """What differs between two systems' results (empty: the same to the last bit)."""
    out = []
    for f in dataclasses.fields(py.log):
        a, b = getattr(py.log, f.name), getattr(fa.log, f.name)
        if f.name == "alpha":  # NaN for the constant policy: compare as text
            a, b = [repr(x) for x in a], [repr(x) for x in b]
        if a != b:
            if isinstance(a, list):
                i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                out.append(f"{f.name}[{i}] python {a[i:i + 1]} fast {b[i:i + 1]} (lengths {len(a)}, {len(b)})")
            else:
                out.append(f"{f.name}: python {a!r} fast {b!r}")
    if repr(py.metrics) != repr(fa.metrics):
        out.append(f"metrics: python {py.metrics} fast {fa.metrics}")
    return out


def check_parity(trace, ping, edge, cloud, cfg, accuracy=None) -> int:
    py = simulate(trace, edge, cloud, cfg, ping=ping, accuracy=accuracy, engine="python")
    fa = simulate(trace, edge, cloud, cfg, ping=ping, accuracy=accuracy, engine="fast")
    bad = []
    for s in cfg.systems:
        assert py[s].engine == "python" and fa[s].engine == "fast", (s, fa[s].engine)
        bad += [f"{s}: {d}" for d in differences(py[s], fa[s])]
    assert not bad, f"{trace.name} {cfg}:\n" + "\n".join(bad[:10])
    return sum(len(r.log) for r in py.values())


def _cells(pattern: str) -> list[tuple[Path, Path]]:
    """(throughput file, the ping file of its scenario and network)."""
    out = []
    for p in sorted(SHIPPED.glob(f"throughput/{pattern}")):
        scenario, net = p.parts[-3], p.parts[-2]
        same = SHIPPED / "ping" / scenario / net / p.name  # driving's is ping.list
        out.append((p, same if same.exists() else SHIPPED / "ping" / scenario / net / "ping.list"))
    return out


SETTINGS = {
    "deploy": dict(),  # the ping trace's RTTs
    "paper": dict(paper_mode=True),
    "paper-fp32-frame": dict(paper_mode=True, frame_bytes=4 * 3 * 384 * 384),
    "runtime": dict(timeout_factor=1.0, probe_bytes=32768, exchange_ms=4.0),  # deadline, real probes
}


@pytest.mark.parametrize("path,ping_path", _cells("static/*/away_p1.list"), ids=lambda p: "/".join(Path(p).parts[-3:]))
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_whole_static_traces_every_system(vit_l, path, ping_path, setting):
    trace, ping = load_trace(path), load_ping(ping_path)
    n = check_parity(trace, ping, *vit_l, SimConfig(sla_ms=300, **SETTINGS[setting]))
    assert n > 1000  # whole traces: thousands of requests each


@pytest.mark.parametrize("estimator", ["harmonic", "ewma", "robustmpc"])
@pytest.mark.parametrize("rtt_estimate", ["max", "median"])
def test_every_estimator_and_rtt_statistic(vit_l, estimator, rtt_estimate):
    path, ping_path = _cells("walking/lte/lateral.list")[0]
    trace, ping = load_trace(path), load_ping(ping_path)
    ctrl = SimConfig().controller.with_(estimator=estimator, rtt_estimate=rtt_estimate, window=3)
    for sla in (150.0, 300.0, 1000.0):
        check_parity(trace.window(0, 120), ping, *vit_l, SimConfig(sla_ms=sla, controller=ctrl))
    check_parity(trace.window(0, 120), None, *vit_l,
                 SimConfig(sla_ms=300, rtt_ms=35.0, fps=7.0, controller=ctrl.with_(deflate=False, margin=0.25)))


def test_outages_breaker_probes_and_the_deadline(vit_l, monkeypatch):
    """A link with outages, slow stretches and plenty of bandwidth: cancellations (nothing
    crossed, part of it, all of it: the server's fault), the breaker opening and its probes,
    the rate probes of device-only runs, outages waited out in paper mode."""
    from janus_deploy.schedule import controller as cm

    seen: set = set()
    observe, decide = cm.Controller.observe, cm.Controller.decide
    monkeypatch.setattr(cm.Controller, "observe", lambda self, o: seen.add((o.kind, o.probe, o.server_ok))
                        or observe(self, o))
    monkeypatch.setattr(cm.Controller, "decide", lambda self, t: (lambda c: seen.add(c.reason) or c)(decide(self, t)))
    samples = [0.0, 0.0, 0.05, 0.3, 25.0, 80.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.01, 40.0, 6.0, 0.0, 120.0] * 12
    trace = Trace(samples, 0.5, name="outages")
    ping = Trace([20.0, 35.0, 250.0, 40.0, 900.0, 30.0], 0.5, unit="ms")
    edge, cloud = vit_l
    for cfg in (SimConfig(sla_ms=300, timeout_factor=1.0, probe_bytes=32768, exchange_ms=2.0),
                SimConfig(sla_ms=200, timeout_factor=0.6, min_timeout_ms=5.0, probe_bytes=4096,
                          probe_exchange_ms=1.0, controller=SimConfig().controller.with_(breaker_failures=1)),
                SimConfig(sla_ms=300, timeout_factor=1.5),  # probes cost nothing
                SimConfig(sla_ms=300, controller=SimConfig().controller.with_(probe_interval_s=None)),
                SimConfig(sla_ms=300, paper_mode=True, requests=3000),
                SimConfig(sla_ms=300, requests=2500, fps=10.0, cold_start_mbps=3.0),
                SimConfig(sla_ms=300, requests=500, controller=SimConfig().controller.with_(cold_start_mbps=1.0))):
        check_parity(trace, ping, edge, cloud, cfg)
        check_parity(trace, None, edge, cloud, dataclasses.replace(cfg, rtt_ms=15.0))
    # the Python runs went through every branch the C loop mirrors
    assert {("server", False, False), ("outage", False, None), ("transfer", False, None), ("transfer", False, True),
            ("server", True, False), ("outage", True, None), ("transfer", True, None), ("transfer", True, True),
            ("rate", True, True), "breaker-open"} <= seen


def test_accuracy_table_and_codec(vit_l):
    edge, cloud = vit_l
    acc = {(lv.policy, lv.alpha): round(0.85 - 0.1 * (lv.alpha if lv.policy == "exponential" else 0.5), 4)
           for lv in edge.levels}
    path, ping_path = _cells("static/lte/toward_p2.list")[0]
    trace, ping = load_trace(path), load_ping(ping_path)
    codecs = sorted(set(edge.codec_names) & set(cloud.codec_names))
    for codec in codecs[:3]:
        check_parity(trace, ping, edge, cloud, SimConfig(sla_ms=250, codec=codec), accuracy=acc)


@dataclasses.dataclass
class WithCodecs(SimConfig):
    codecs: tuple[str, ...] = ()  # a setting the fast engine does not know


def test_a_setting_it_does_not_model_runs_the_python_loop_with_the_reason(vit_l, caplog):
    trace = Trace([3.0, 0.5, 12.0, 0.0, 40.0], 1.0)
    at_default = WithCodecs(requests=50)
    assert fast.unsupported(at_default) is None  # a new setting at its (neutral) default
    cfg = WithCodecs(requests=50, codecs=("fp16", "int8"))
    assert "codecs" in fast.unsupported(cfg)
    with caplog.at_level(logging.INFO, logger="janus_deploy.sim"):
        res = simulate(trace, *vit_l, cfg)
    assert {r.engine for r in res.values()} == {"python"}
    assert any("codecs=('fp16', 'int8')" in r.getMessage() and "Python loop" in r.getMessage() for r in caplog.records)


def test_a_controller_setting_it_does_not_model(vit_l, monkeypatch):
    monkeypatch.setattr(fast, "CONTROLLER_FIELDS", fast.CONTROLLER_FIELDS - {"rtt_fixed"})
    cfg = SimConfig(requests=20, controller=SimConfig().controller.with_(rtt_fixed=True))
    assert "rtt_fixed=True" in fast.unsupported(cfg)
    assert fast.unsupported(SimConfig(requests=20)) is None  # rtt_fixed at its default
    res = simulate(Trace([3.0, 8.0], 1.0), *vit_l, cfg)
    assert {r.engine for r in res.values()} == {"python"}


def test_without_libjanus_the_python_loop_runs(vit_l, monkeypatch):
    monkeypatch.setattr(fast, "_LIB", None)
    monkeypatch.setattr(fast, "_LIB_ERROR", "libjanus at /nowhere cannot be loaded")
    res = simulate(Trace([3.0, 8.0], 1.0), *vit_l, SimConfig(requests=20))
    assert {r.engine for r in res.values()} == {"python"}


def test_a_c_error_falls_back_to_the_python_loop_which_reports_it(vit_l, monkeypatch):
    """A run the C loop refuses is re-run in Python, whose error (or result) is what the caller gets."""
    calls = []

    def refusing(*a, **k):
        calls.append(1)
        return None

    monkeypatch.setattr(fast, "run_system", refusing)
    res = simulate(Trace([3.0, 8.0], 1.0), *vit_l, SimConfig(requests=30, systems=["janus-deploy"]))
    assert calls and res["janus-deploy"].engine == "python" and len(res["janus-deploy"].log) == 30


def test_unknown_engine(vit_l):
    with pytest.raises(SimulationError, match="unknown engine 'c'; choose one of fast, python"):
        simulate(Trace([3.0], 1.0), *vit_l, SimConfig(requests=2), engine="c")


def test_jobs_with_the_fast_engine(vit_l):
    trace = Trace([3.0, 0.5, 12.0, 0.0, 40.0, 1.5, 7.0, 0.2] * 5, 1.0)
    cfg = SimConfig(sla_ms=300, requests=400)
    one = simulate(trace, *vit_l, cfg)
    two = simulate(trace, *vit_l, cfg, jobs=2)
    for s in SYSTEMS:
        assert two[s].engine == "fast" and not differences(one[s], two[s])


@pytest.mark.slow
@pytest.mark.parametrize("path,ping_path", _cells("*/*/*.list"), ids=lambda p: "/".join(Path(p).parts[-3:]))
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_every_shipped_trace(vit_l, path, ping_path, setting):
    check_parity(load_trace(path), load_ping(ping_path), *vit_l, SimConfig(sla_ms=300, **SETTINGS[setting]))


def test_parity_helper_sees_a_difference(vit_l):
    """The comparison fails on one changed latency (the parity tests above can fail)."""
    trace = Trace([3.0, 0.5, 12.0], 1.0)
    a = simulate(trace, *vit_l, SimConfig(requests=10, systems=["janus-deploy"]))["janus-deploy"]
    b = simulate(trace, *vit_l, SimConfig(requests=10, systems=["janus-deploy"]))["janus-deploy"]
    assert not differences(a, b)
    b.log.latency_ms[4] = math.nextafter(b.log.latency_ms[4], math.inf)
    assert any(d.startswith("latency_ms[4]") for d in differences(a, b))


def test_cli_says_which_systems_fell_back(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    trace = tmp_path / "flat.list"
    trace.write_text("\n".join(["5.0"] * 20) + "\n")
    monkeypatch.setattr(fast, "run_system", lambda *a, **k: None)  # libjanus refuses every run
    res = CliRunner().invoke(app, ["simulate", "--trace", str(trace), "--profile", "vit_large_patch16_384-jetson-orin-nano",
                                   "--cloud-profile", "vit_large_patch16_384-v100", "--sla", "300",
                                   "--systems", "device-only,janus-deploy", "--json"])
    assert res.exit_code == 0, res.output
    assert "engine: fast" in res.stderr and "engine: python for device-only, janus-deploy (libjanus refused" in res.stderr


def test_the_decision_table_is_one_runs(vit_l):
    """The table the fast engine builds is kept for the systems of one simulate() call only: an
    accuracy table changed in place between two calls is the one the second call decides with."""
    edge, cloud = vit_l
    acc = {(lv.policy, lv.alpha): 0.8 for lv in edge.levels}
    trace = Trace([3.0, 0.5, 12.0, 40.0, 1.5, 7.0] * 10, 1.0)
    cfg = SimConfig(sla_ms=400, requests=300, systems=["janus-deploy", "janus-paper"])
    check_parity(trace, None, edge, cloud, cfg, accuracy=acc)
    for lv in edge.levels:  # now the least merged level is the most accurate (before: all equal, the fastest wins)
        acc[(lv.policy, lv.alpha)] = round(0.9 - lv.alpha, 4)
    check_parity(trace, None, edge, cloud, cfg, accuracy=acc)
