"""The fleet simulator (sim/fleet.py): the server's queue, batches and instances on hand-computed
cases (the tiny plan of tests/sched_fixtures.py), one edge = the single-edge simulator, the
issue's target on the ViT-L@384 presets over a shipped trace, and `simulate --fleet`."""

from __future__ import annotations

import json

import pytest
import typer
from sched_fixtures import profiles
from typer.testing import CliRunner

from janus_deploy.cli.schedule_cmds import register
from janus_deploy.net.traces import Trace, load_trace
from janus_deploy.profile.table import load_preset
from janus_deploy.sim.fleet import FleetConfig, ServerModel, rotated, simulate_fleet, smallest_overloaded
from janus_deploy.sim.simulator import SimConfig, SimulationError, simulate

# 48 bytes (the tiny frame) at 0.0384 Mbit/s: 10 ms; RTT 20 ms; ToMe r=1's tail at s = 0: 38 ms
FLAT = Trace([0.0384], 1.0)


def cloud_only(edges: int, server: ServerModel):
    cfg = FleetConfig(edges=edges, sim=SimConfig(sla_ms=300, rtt_ms=20.0, timeout_factor=1.0), server=server,
                      modes=("unaware",), system="cloud-only")
    return simulate_fleet(FLAT, *profiles(), cfg)["unaware"]


def test_one_instance_queues_the_second_edge():
    r = cloud_only(2, ServerModel(instances=1))
    a, b = r.logs[0].latency_ms, r.logs[1].latency_ms
    # both arrive at 20 ms (10 up + half the RTT); edge 0 is served 20-58, edge 1 waits 38 ms
    assert a[:3] == pytest.approx([68.0, 76.0, 76.0]) and b[:2] == pytest.approx([106.0, 76.0])
    # then each arrives 8 ms before the other's service ends: 8 ms in the queue, 76 ms per request
    assert r.server["queue_ms_p50"] == pytest.approx(8.0) and r.server["mean_batch"] == 1.0
    assert r.fleet["violation_ratio"] == 0.0 and r.fleet["edges"] == 2


def test_batches_and_instances():
    r = cloud_only(2, ServerModel(instances=1, max_batch=2, batch_slope=0.5))
    # both requests in one batch: 38 · (1 + 0.5) = 57 ms; 10 + 10 + 57 + 10 = 87 ms each, always together
    assert set(round(x, 6) for lg in r.logs for x in lg.latency_ms) == {87.0}
    assert r.server["mean_batch"] == 2.0
    r = cloud_only(2, ServerModel(instances=2))
    assert set(round(x, 6) for lg in r.logs for x in lg.latency_ms) == {68.0}  # no queue at all
    curve = ServerModel(max_batch=8, batch_curve=(1.0, 1.5, 1.8))
    assert [curve.factor(b) for b in (1, 3, 5)] == pytest.approx([1.0, 1.8, 2.4])  # beyond: the last step
    with pytest.raises(SimulationError, match="batch curve"):
        ServerModel(batch_curve=(2.0, 3.0)).validate()


def test_a_timeout_under_queueing_falls_back_and_is_a_server_load_sample():
    # SLA 80 ms, deadline at 80: edge 1's first answer would come at 106 ms: cancelled at 80, and
    # the ToMe tail runs locally (280 ms on the tiny edge): 360 ms
    cfg = FleetConfig(edges=2, sim=SimConfig(sla_ms=80, rtt_ms=20.0, timeout_factor=1.0), server=ServerModel(),
                      modes=("aware",), system="cloud-only")
    r = simulate_fleet(FLAT, *profiles(), cfg)["aware"]
    assert r.logs[1].latency_ms[0] == pytest.approx(80.0 + 280.0)
    assert r.edges[1]["fallbacks"] >= 1


def test_one_edge_is_the_single_edge_simulator():
    edge, cloud = load_preset("vit_large_patch16_384-jetson-orin-nano"), load_preset("vit_large_patch16_384-v100")
    trace = load_trace("uplink-5g-lte/throughput/static/5g/*.list").window(0, 30)
    sim = SimConfig(sla_ms=300, rtt_ms=20.0, timeout_factor=1.0, systems=("janus-deploy",))
    one = simulate(trace, edge, cloud, sim)["janus-deploy"].log
    for mode in ("aware", "unaware"):
        fl = simulate_fleet(trace, edge, cloud, FleetConfig(edges=1, sim=sim, modes=(mode,)))[mode].logs[0]
        assert fl.labels == one.labels and len(one) > 100
        assert fl.latency_ms == pytest.approx(one.latency_ms, rel=1e-9)


def test_edges_get_their_own_windows():
    t = Trace([1.0, 2.0, 3.0, 4.0], 0.5)
    assert rotated(t, 1.0).samples == [3.0, 4.0, 1.0, 2.0] and rotated(t, 0.0) is t


def test_load_aware_keeps_an_overloaded_fleet_within_the_sla():
    """The issue's target on the ViT-L@384 presets (Jetson edge, V100 cloud, one instance) over
    a minute of the shipped static 5G trace: at the smallest fleet where load-unaware exceeds
    10 % violations, load-aware stays at a third of that or less, with at least its goodput."""
    edge, cloud = load_preset("vit_large_patch16_384-jetson-orin-nano"), load_preset("vit_large_patch16_384-v100")
    trace = load_trace("uplink-5g-lte/throughput/static/5g/*.list").window(0, 60)
    cfg = FleetConfig(sim=SimConfig(sla_ms=300, rtt_ms=20.0, timeout_factor=1.0))
    n, runs = smallest_overloaded(trace, edge, cloud, cfg, [4, 8, 10, 12, 16])
    assert n is not None and n > 4  # four edges fit the server either way
    aware, unaware = runs[n]["aware"].fleet, runs[n]["unaware"].fleet
    assert unaware["violation_ratio"] > 0.10
    assert aware["violation_ratio"] <= unaware["violation_ratio"] / 3
    assert aware["goodput_rps"] >= unaware["goodput_rps"]
    small = runs[4]
    assert small["aware"].fleet["violation_ratio"] == pytest.approx(small["unaware"].fleet["violation_ratio"], abs=0.01)


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)
    return app


def test_cli_fleet_sweep(cli):
    args = ["simulate", "--trace", "uplink-5g-lte/throughput/static/5g/*.list", "--trace-seconds", "60",
            "--profile", "vit_large_patch16_384-jetson-orin-nano", "--cloud-profile", "vit_large_patch16_384-v100",
            "--sla", "300", "--rtt", "20"]
    res = CliRunner().invoke(cli, [*args, "--fleet", "2,12", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["smallest_overloaded"] == 12 and set(out["runs"]["12"]) == {"aware", "unaware"}
    res = CliRunner().invoke(cli, [*args, "--fleet", "2", "--instances", "2", "--max-batch", "4", "--per-edge"])
    assert res.exit_code == 0 and "goodput" in res.stdout
    assert [line.split()[0] for line in res.stdout.splitlines()[1:7]] == ["aware", "edge", "edge", "unaware", "edge", "edge"]
    res = CliRunner().invoke(cli, [*args, "--fleet", "2", "--batch-curve", "1,x"])
    assert res.exit_code != 0 and "--batch-curve takes comma-separated numbers" in str(res.exception)
    res = CliRunner().invoke(cli, [*args, "--fleet", "two"])
    assert res.exit_code != 0 and "--fleet takes a number of edges" in str(res.exception)
