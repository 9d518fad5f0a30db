"""simulate(..., jobs=N) runs the systems in processes and gives the same results as one at a time."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from janus_deploy.net.traces import Trace
from janus_deploy.profile.table import load_preset
from janus_deploy.schedule.controller import SYSTEMS
from janus_deploy.sim.simulator import SimConfig, SimulationError, simulate


@pytest.fixture(scope="module")
def vit_l():
    return load_preset("vit_large_patch16_384-jetson-orin-nano"), load_preset("vit_large_patch16_384-v100")


def _same(a, b):
    assert list(a) == list(b)
    for s in a:
        la, lb = a[s].log, b[s].log
        assert la.labels == lb.labels and la.split == lb.split and la.latency_ms == lb.latency_ms
        assert [x for x in la.alpha if not math.isnan(x)] == [x for x in lb.alpha if not math.isnan(x)]
        assert a[s].metrics == b[s].metrics


@pytest.mark.parametrize("paper_mode", [False, True])
def test_jobs_gives_the_same_results(vit_l, paper_mode):
    trace = Trace([3.0, 0.5, 12.0, 0.0, 40.0, 1.5, 7.0, 0.2] * 5, 1.0)
    ping = Trace([40.0, 60.0, 55.0, 90.0], 1.0, unit="ms")
    cfg = SimConfig(sla_ms=300, systems=SYSTEMS, paper_mode=paper_mode, requests=300)
    seen = []
    serial = simulate(trace, *vit_l, cfg, ping=ping)
    parallel = simulate(trace, *vit_l, cfg, ping=ping, jobs=3, progress=lambda s, d, t: seen.append((s, d, t)))
    _same(serial, parallel)
    assert sorted(s for s, _, _ in seen) == sorted(SYSTEMS)  # each system reports once, when done
    assert all(d == t == 300 for _, d, t in seen)


def test_jobs_below_one_is_refused(vit_l):
    with pytest.raises(SimulationError, match="--jobs must be >= 1"):
        simulate(Trace([5.0], 1.0), *vit_l, SimConfig(requests=2), jobs=0)


def test_cli_jobs(tmp_path):
    import typer

    from janus_deploy.cli.schedule_cmds import CliError, register

    app = typer.Typer()
    register(app)
    tr = tmp_path / "bw.list"
    tr.write_text("Run 1\n" + ",".join(["5", "1", "20", "0.5"] * 4) + "\n")
    base = ["simulate", "--trace", str(tr), "--rtt", "30", "--profile",
            "vit_large_patch16_384-jetson-orin-nano", "--cloud-profile", "vit_large_patch16_384-v100",
            "--requests", "50", "--sla", "300", "--json"]
    r = CliRunner().invoke(app, base + ["--jobs", "-1"])
    assert isinstance(r.exception, CliError) and "--jobs must be >= 0" in str(r.exception)
    one = CliRunner().invoke(app, base + ["--jobs", "1"])
    two = CliRunner().invoke(app, base + ["--jobs", "2"])
    assert one.exit_code == two.exit_code == 0, one.output + two.output
    assert one.stdout == two.stdout
