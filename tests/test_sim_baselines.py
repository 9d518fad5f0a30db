"""The practitioner's baselines in the simulator (issue 22 item 5) and janus-deploy with codecs."""

from __future__ import annotations

import numpy as np
import pytest
from test_scheduler_codecs import JPEG, _table, make_profiles

from janus_deploy.net.traces import Trace
from janus_deploy.schedule.scheduler import Scheduler
from janus_deploy.sim.simulator import SimConfig, SimulationError, choice_counts, simulate, static_option


@pytest.fixture(scope="module")
def profiles():
    return make_profiles()


TRACE = Trace([30.0, 2.0, 0.5, 8.0, 60.0, 1.0, 15.0, 4.0] * 4, 1.0, name="steps")


def test_static_baselines_pick_what_their_definition_says(profiles):
    edge, cloud = profiles
    table = _table(np.random.default_rng(2))
    sched = Scheduler(edge, cloud, table, codecs=["fp16", "int4", "jpeg85"], sla_ms=120.0)
    cfg = SimConfig(sla_ms=120.0, codecs=["fp16", "int4", "jpeg85"])
    # cloud-jpeg: the unpruned level (α = 0), split 0, the JPEG codec
    assert static_option("cloud-jpeg", sched, TRACE, cfg, 5.0) == (sched.janus_levels[0], 0, "jpeg85")
    # device-fast: the fastest level within 0.01 of the best (0.9): only α = 0 qualifies (levels 0.05 apart)
    assert static_option("device-fast", sched, TRACE, cfg, 5.0) == (sched.janus_levels[0], 13, None)
    loose = SimConfig(sla_ms=120.0, keep_accuracy=0.12)  # α = 0, 0.12, 0.24 qualify: the fastest is α = 0.24
    li, s, c = static_option("device-fast", sched, TRACE, loose, 5.0)
    assert (edge.levels[li].alpha, s, c) == (0.24, 13, None)
    # best-static: brute force here over the same options, per trace sample
    li, s, c = static_option("best-static", sched, TRACE, cfg, 5.0)
    best = None
    for lj in sorted(set(sched.janus_levels) | {sched.baseline_level_index}):
        for o in [*sched.options, *[type(sched.options[0])(0, "jpeg85")]]:
            d = sched.evaluate(lj, o.split, 1e18, 5.0, codec=o.codec)
            lat = [d.predicted_ms + (d.bytes * 8 / 1e3 / b if d.bytes else 0.0) for b in TRACE.samples]
            key = (sum(x > 120.0 for x in lat), -(d.accuracy or -1), float(np.mean(lat)))
            if best is None or key < best[0]:
                best = (key, (lj, o.split, o.codec))
    assert (li, s, c) == best[1]


def test_simulate_runs_the_baselines_and_counts_mode_and_codec(profiles):
    edge, cloud = profiles
    table = _table(np.random.default_rng(2))
    systems = ["janus-deploy", "cloud-jpeg", "device-fast", "best-static", "cloud-only"]
    cfg = SimConfig(sla_ms=120.0, systems=systems, codecs=["fp16", "int8", "int4", "jpeg95", "jpeg85", "jpeg70"],
                    rtt_ms=5.0)
    res = simulate(TRACE, edge, cloud, cfg, accuracy=table)
    assert set(res) == set(systems)
    jpg = res["cloud-jpeg"]
    assert set(jpg.log.codec) == {"jpeg85"} and set(jpg.log.split) == {0}
    assert set(jpg.log.bytes) == {JPEG["jpeg85"][0]}
    assert jpg.metrics["mode_codec"] == {"cloud/jpeg85": len(jpg.log)}
    dev = res["device-fast"]
    assert set(dev.log.codec) == {None} and dev.metrics["mode_codec"] == {"device-only": len(dev.log)}
    jd = res["janus-deploy"].metrics["mode_codec"]
    assert sum(jd.values()) == len(res["janus-deploy"].log)
    assert len(jd) >= 2  # the codec dimension is used on this trace
    assert all(k == "device-only" or k.split("/")[1] in cfg.codecs for k in jd)


def test_cloud_jpeg_needs_the_codec_in_the_profile():
    from test_scheduler_codecs import CANDS, LEVELS, MODEL

    from janus_deploy.profile.table import profile_from_linear

    edge = profile_from_linear(MODEL, CANDS, LEVELS, 0.5, 0.04)
    cloud = profile_from_linear(MODEL, CANDS, LEVELS, 0.05, 0.004)
    with pytest.raises(SimulationError, match="cloud-jpeg.*jpeg85"):
        simulate(TRACE, edge, cloud, SimConfig(systems=["cloud-jpeg"], requests=3))


def test_choice_counts_keys():
    from janus_deploy.sim.simulator import RequestLog

    log = RequestLog(split=[0, 3, 13, 3], codec=["jpeg70", "int4", None, "int4"])
    assert choice_counts(log) == {"split/int4": 2, "cloud/jpeg70": 1, "device-only": 1}


def test_replay_compares_the_codec(profiles):
    from janus_deploy.schedule.controller import ControllerConfig, build_controller
    from janus_deploy.sim.simulator import replay

    edge, cloud = profiles
    codecs = ["fp16", "int4", "jpeg70"]

    def ctrl():
        # probes off: no cold-start probe, so the first decision is made at the cold-start estimate
        return build_controller(edge, cloud, ControllerConfig(probe_interval_s=None), sla_ms=120.0, codecs=codecs)

    d = ctrl().decide(0.0).decision
    assert d.codec is not None  # the cold start (100 Mbit/s) sends something
    same = {"policy": d.policy, "alpha": d.alpha, "split": d.split, "codec": d.codec}
    other = dict(same, codec=next(c for c in codecs if c != d.codec))
    assert replay(ctrl(), [(0.0, same, [])])["decisions_reproduced"] == 1.0
    out = replay(ctrl(), [(0.0, other, [])])
    assert out["decisions_reproduced"] == 0.0 and out["mismatches"][0]["replayed"]["codec"] == d.codec
    old = {k: v for k, v in same.items() if k != "codec"}  # logs before the codec dimension
    assert replay(ctrl(), [(0.0, old, [])])["decisions_reproduced"] == 1.0
