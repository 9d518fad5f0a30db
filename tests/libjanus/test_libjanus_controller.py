"""The C controller against the Python one: the same sequence of observations gives the same
estimates, the same decisions, the same breaker and probing behaviour, for every system,
estimator, RTT statistic and deflation setting; exchanges turn into the same observations as
EdgeRuntime.observations_of makes."""

from __future__ import annotations

import dataclasses
import inspect
import itertools

import numpy as np
import pytest
from libjanus_support import REASONS, JanusCError, Lib, compare, ensure_built, vitb_accuracy
from libjanus_support import Exchange as CExchange
from sched_fixtures import profiles

from janus_deploy.profile.table import resolve_profile
from janus_deploy.runtime.edge import EdgeRuntime
from janus_deploy.runtime.transport import Exchange
from janus_deploy.schedule.controller import ControllerConfig, ControllerError, Observation, build_controller
from janus_deploy.schedule.table_file import build_table


@pytest.fixture(scope="module")
def lib():
    ensure_built()
    return Lib()


def server_times(rng: np.random.Generator) -> dict:
    """The server's reported time next to the profile's (sometimes with its compute part, sometimes
    faster than the profile, sometimes unusable)."""
    expected = float(rng.choice([0.05, 0.8, 2.0, 40.0, 300.0]))
    server = expected * float(rng.uniform(0.5, 4.0)) + float(rng.uniform(0, 30))
    u = rng.random()
    compute = (None if u < 0.4 else float("nan") if u < 0.45 else -1.0 if u < 0.5
               else server * float(rng.uniform(0.3, 1.1)))
    return {"server_ms": server if rng.random() > 0.03 else float("inf"), "expected_ms": expected,
            "server_compute_ms": compute}


def random_observations(rng: np.random.Generator, n: int, outages: bool = True, server: bool = False):
    """A plausible and sometimes hostile stream: transfers, rates, outages, server failures,
    probes, RTT samples, an occasional invalid observation and (rarely) a 401; ``server``: the
    answers' server times (the load's samples) on some transfers and failures."""
    for obs in _random_observations(rng, n, outages):
        if server and obs.kind in ("transfer", "server") and rng.random() < 0.6:
            obs = dataclasses.replace(obs, **server_times(rng))
        yield obs


def _random_observations(rng: np.random.Generator, n: int, outages: bool = True):
    t = 0.0
    for _ in range(n):
        t += float(rng.uniform(0.01, 0.6))
        u = rng.random()
        rtt = None if rng.random() < 0.3 else float(rng.uniform(1, 200))
        ok = (None, True, False)[int(rng.integers(3))]
        probe = bool(rng.random() < 0.1)
        if u < 0.5:
            yield Observation(t, "transfer", nbytes=float(rng.uniform(1e3, 2e6)), seconds=float(rng.uniform(1e-3, 1.5)),
                              rtt_ms=rtt, server_ok=ok, probe=probe)
        elif u < 0.65:
            yield Observation(t, "rate", mbps=float(10 ** rng.uniform(-1, 3)), rtt_ms=rtt, server_ok=ok, probe=probe)
        elif u < 0.72 and outages:
            yield Observation(t, "outage", server_ok=ok, probe=probe)
        elif u < 0.9:
            yield Observation(t, "server", server_ok=bool(rng.random() < 0.3), rtt_ms=rtt, probe=probe)
        elif u < 0.905:
            yield Observation(t, "unauthorized")
        elif u < 0.92:
            yield Observation(t, "transfer", nbytes=1000.0, seconds=0.0)  # invalid: both must refuse it
        else:
            yield Observation(t, "transfer", nbytes=float(rng.uniform(1e3, 1e5)), seconds=float(rng.uniform(1e-3, 0.1)),
                              server_ok=True, probe=probe)


def run_sequence(lib, edge, cloud, accuracy, cfg: ControllerConfig, sla: float, seed: int, steps: int,
                 server: bool = False) -> int:
    py = build_controller(edge, cloud, cfg, accuracy=accuracy, sla_ms=sla)
    table = lib.load_table(build_table(edge, cloud, accuracy=accuracy, sla_ms=sla, controller=cfg))
    c = table.controller(cloud_load=cfg.cloud_load, cloud_window=cfg.cloud_window,
                         cloud_half_life_s=cfg.cloud_half_life_s)
    rng = np.random.default_rng(seed)
    checked = 0
    try:
        for i, obs in enumerate(random_observations(rng, steps, outages=seed % 3 != 0, server=server)):
            want, got = py.decide(obs.t), c.decide(obs.t)
            where = f"{cfg.system}/{cfg.estimator}/{cfg.rtt_estimate}/deflate={cfg.deflate} step {i}"
            why = compare(want.decision, got.decision)
            assert why is None, f"{where}: {why}"
            assert (want.estimate_mbps, want.bandwidth_mbps, want.rtt_ms, want.recent_error) == \
                (got.estimate_mbps, got.bandwidth_mbps, got.rtt_ms, got.recent_error), where
            assert (want.cloud_factor, want.cloud_extra_ms) == (got.cloud_factor, got.cloud_extra_ms), where
            assert want.reason == REASONS[got.reason], where
            assert py.probe_due(obs.t) == c.probe_due(obs.t), where
            try:
                sample = py.observe(obs)
            except ControllerError:
                with pytest.raises(JanusCError):
                    c.observe(obs)
                continue
            assert c.observe(obs) == sample, where
            st = c.state()
            assert (bool(st.breaker_open), st.consecutive_failures, st.breaker_opened, bool(st.config_error)) == \
                (py.breaker.open_until is not None, py.breaker.failures, py.breaker.opened, py.config_error is not None)
            assert st.observations == py.observations
            checked += 1
    finally:
        c.close()
        table.close()
    return checked


CONFIGS = list(itertools.product(("janus-deploy", "janus-paper", "mixed", "cloud-only", "device-only"),
                                 ("harmonic", "ewma", "robustmpc"), ("max", "median"), (True, False)))


def test_same_observations_same_decisions_tiny_plan(lib):
    """Every system × estimator × RTT statistic × deflation on the hand-written plan (where the
    decisions flip often between its few options), breaker and probing included."""
    edge, cloud = profiles(enc_ms=0.5, dec_ms=0.25)
    acc = {("exponential", 0.0): 0.8, ("exponential", 0.5): 0.8, ("constant", 1.0): 0.7}
    total = 0
    for k, (system, est, rtt_stat, deflate) in enumerate(CONFIGS):
        if system != "janus-deploy" and not deflate:
            continue  # deflation only matters in janus-deploy
        cfg = ControllerConfig(system=system, estimator=est, rtt_estimate=rtt_stat, deflate=deflate, window=3 + k % 4,
                               cold_start_mbps=0.05, margin=0.05 * (k % 3), rtt_cold_ms=5.0, rtt_window=2 + k % 5,
                               probe_interval_s=None if k % 5 == 0 else 0.8, breaker_failures=k % 4,
                               breaker_open_s=0.5, breaker_max_open_s=3.0)
        total += run_sequence(lib, edge, cloud, acc, cfg, sla=300.0, seed=k, steps=250)
    assert total > 5000


def test_same_server_times_same_load_and_decisions(lib):
    """The server's load (schedule/cloud_load.py) in C: every mode, window and half-life, with the
    compute part reported or not, on the hand-written plan (where the load flips decisions between
    the cloud and the device) and on ViT-B; every system (the baselines charge it too)."""
    edge, cloud = profiles(enc_ms=0.5, dec_ms=0.25)
    acc = {("exponential", 0.0): 0.8, ("exponential", 0.5): 0.8, ("constant", 1.0): 0.7}
    total, loaded = 0, 0
    for k, (mode, system) in enumerate(itertools.product(("factor", "extra", "off"),
                                                         ("janus-deploy", "mixed", "cloud-only"))):
        cfg = ControllerConfig(system=system, cloud_load=mode, cloud_window=1 + k % 5, cloud_half_life_s=(0.3, 2.0, 8.0)[k % 3],
                               cold_start_mbps=0.05, margin=0.05 * (k % 3), rtt_cold_ms=5.0,
                               probe_interval_s=None if k % 4 == 0 else 0.8, breaker_failures=k % 3)
        total += run_sequence(lib, edge, cloud, acc, cfg, sla=300.0, seed=500 + k, steps=250, server=True)
        loaded += mode != "off"
    assert total > 2000 and loaded == 6
    vb_edge = resolve_profile("vit_base_patch16_224-jetson-orin-nano")
    vb_cloud = resolve_profile("vit_base_patch16_224-v100")
    cfg = ControllerConfig(cold_start_mbps=20.0, margin=0.1, cloud_load="factor", cloud_half_life_s=1.0)
    assert run_sequence(lib, vb_edge, vb_cloud, vitb_accuracy(vb_edge), cfg, sla=120.0, seed=7, steps=600, server=True) > 500


def test_loaded_decisions_and_expected_server_time(lib):
    """janus_decide_loaded / janus_baseline_loaded against Scheduler.decide / baseline with
    cloud_factor and cloud_extra_ms, and janus_server_ms_expected against Scheduler.server_ms."""
    from janus_deploy.schedule.scheduler import Scheduler

    edge, cloud = profiles(enc_ms=0.5, dec_ms=0.25)
    acc = {("exponential", 0.0): 0.8, ("exponential", 0.5): 0.8, ("constant", 1.0): 0.7}
    py = Scheduler(edge, cloud, acc, sla_ms=300.0)
    table = lib.load_table(build_table(edge, cloud, accuracy=acc, sla_ms=300.0))
    s = table.scheduler()
    rng = np.random.default_rng(3)
    flips = set()
    try:
        for _ in range(1500):
            bw, rtt, margin = float(10 ** rng.uniform(-4, 2)), float(rng.uniform(0, 40)), float(rng.choice([0.0, 0.1]))
            factor, extra = float(rng.choice([1.0, rng.uniform(0.5, 6.0)])), float(rng.choice([0.0, rng.uniform(0, 200)]))
            want = py.decide(bw, rtt, margin, cloud_factor=factor, cloud_extra_ms=extra)
            got = s.decide_loaded("janus-deploy", bw, rtt, margin, 300.0, factor, extra)
            assert compare(want, got) is None, (bw, rtt, margin, factor, extra, compare(want, got))
            flips.add(want.split)
            for system in ("mixed", "cloud-only", "device-only"):
                w = py.baseline(system, bw, rtt, cloud_factor=factor, cloud_extra_ms=extra)
                assert compare(w, s.baseline_loaded(system, bw, rtt, 300.0, factor, extra)) is None, (system, bw, factor)
        assert {0, 4} <= flips  # the load moved decisions between the cloud and the device
        for li in range(len(edge.levels)):
            for split in edge.candidates:
                assert s.server_ms(li, split) == py.server_ms(li, split)
        with pytest.raises(JanusCError, match="cloud load"):
            s.decide_loaded("janus-deploy", 1.0, 0.0, 0.0, 300.0, 0.0, 0.0)
    finally:
        s.close()
        table.close()


def test_same_observations_same_decisions_vit_base(lib):
    edge = resolve_profile("vit_base_patch16_224-jetson-orin-nano")
    cloud = resolve_profile("vit_base_patch16_224-v100")
    acc = vitb_accuracy(edge)
    total = 0
    for k, est in enumerate(("harmonic", "ewma", "robustmpc")):
        cfg = ControllerConfig(estimator=est, cold_start_mbps=20.0, margin=0.1, rtt_fixed=k == 1, rtt_cold_ms=15.0)
        total += run_sequence(lib, edge, cloud, acc if k != 2 else None, cfg, sla=120.0, seed=100 + k, steps=600)
    assert total > 1500


class _FakeEdge:
    """Just what EdgeRuntime.observations_of reads: the clock and the controller's RTT estimate."""

    def __init__(self, ctrl, t: float) -> None:
        self.controller, self._t = ctrl, t

    def now(self) -> float:
        return self._t


def test_exchanges_become_the_same_observations(lib):
    """janus_controller_observe_exchange mirrors EdgeRuntime.observations_of (the runtime's half of
    the loop) for every way an exchange ends."""
    edge, cloud = profiles()
    cfg = ControllerConfig(cold_start_mbps=1.0, rtt_cold_ms=3.0, breaker_failures=2, margin=0.0)
    py = build_controller(edge, cloud, cfg, sla_ms=300.0)
    table = lib.load_table(build_table(edge, cloud, sla_ms=300.0, controller=cfg))
    c = table.controller()
    fields = {f.name for f in dataclasses.fields(Exchange)}
    receive_aware = "janus_receive_ms" in inspect.getsource(EdgeRuntime.observations_of)
    kinds = ("ok", "timeout", "unreachable", "dropped", "server-error", "protocol", "unauthorized")
    rng = np.random.default_rng(9)
    for i in range(1500):
        t = i * 0.05
        kind = kinds[int(rng.integers(len(kinds)))] if i < 1490 else "ok"
        body = float(rng.integers(100, 200_000))
        sent = float(rng.choice([0.0, body, float(rng.integers(1, int(body)))]))
        unacked = float(rng.integers(0, int(sent) + 1)) if "unacked" in fields and rng.random() < 0.5 else 0.0
        recv_ms = float(rng.uniform(0, 50)) if receive_aware and rng.random() < 0.5 else 0.0
        upload, network = float(rng.uniform(0, 0.2)), float(rng.uniform(0, 0.4))
        kw = dict(ok=kind == "ok", sent=int(sent), body_bytes=int(body), upload_s=upload,
                  elapsed_s=float(rng.uniform(0, 0.5)), network_s=network, kind=None if kind == "ok" else kind,
                  server={"janus_receive_ms": recv_ms} if recv_ms else {})
        if "unacked" in fields:
            kw["unacked"] = int(unacked)
        ex = Exchange(**kw)
        probe = bool(rng.random() < 0.2)
        want = None
        for obs in EdgeRuntime.observations_of(_FakeEdge(py, t), ex, probe=probe):
            want = py.observe(obs)
        cx = CExchange(kinds.index(kind), float(int(sent)), float(int(unacked)), float(int(body)), upload, network,
                       ex.elapsed_s, recv_ms, int(probe))
        got = c.observe_exchange(t, cx)
        assert got == want, (i, kind, want, got)
        a, b = py.decide(t), c.decide(t)
        assert compare(a.decision, b.decision) is None and a.estimate_mbps == b.estimate_mbps and \
            a.rtt_ms == b.rtt_ms and a.reason == REASONS[b.reason], i
        assert py.probe_due(t + 0.01) == c.probe_due(t + 0.01), i
    c.close()
    table.close()
