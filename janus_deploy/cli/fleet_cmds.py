"""`simulate --fleet N`: the fleet simulator's CLI half (janus_deploy.sim.fleet does the work)."""

from __future__ import annotations

import json
from typing import Any

import typer

from janus_deploy.cli.schedule_cmds import CliError


def parse_batch_curve(text: str | None) -> tuple[float, ...] | None:
    """``"1,1.6,2.3"``: the time of batch 1, 2, 3... relative to batch 1."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CliError(f"--batch-curve takes comma-separated numbers (time of batch 1, 2, ... over batch 1), "
                       f"got {text!r}") from None
    return values


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(n < 1 or n > 100_000 for n in sizes):
        raise CliError(f"--fleet takes a number of edges (1..100000) or a comma-separated list of them, got {text!r}")
    return sizes


def run_fleet(bw: Any, edge: Any, cloud: Any, sim: Any, *, accuracy: Any, ping: Any, edges: str, instances: int,
              max_batch: int, batch_slope: float, batch_curve: str | None, modes: str, per_edge: bool,
              queue_delay_ms: float = 0.0,
              as_json: bool) -> None:
    """Simulate ``edges`` edges against one server and print the per-mode fleet report."""
    from janus_deploy.cli.common import err_console
    from janus_deploy.sim.fleet import FLEET_LEGEND, MODES, FleetConfig, ServerModel, format_fleet, simulate_fleet
    from janus_deploy.sim.simulator import SimulationError

    names = tuple(m.strip() for m in modes.split(",") if m.strip())
    bad = [m for m in names if m not in MODES]
    if bad or not names:
        raise CliError(f"--fleet-modes: unknown {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    sizes = parse_sizes(edges)
    sweep = len(sizes) > 1
    if sweep and "unaware" not in names:
        raise CliError("a --fleet sweep stops where the load-unaware controller exceeds 10 % violations: "
                       "keep unaware in --fleet-modes")
    server = ServerModel(instances, max_batch, batch_slope, parse_batch_curve(batch_curve), queue_delay_ms)
    err_console.print(f"fleet of {edges} edges over {bw.name} (each its own window), one server with {instances} "
                      f"instance(s), batches of up to {max_batch}; SLA {sim.sla_ms:g} ms", markup=False, highlight=False)

    def show(mode: str, done: int) -> None:
        err_console.print(f"  {mode}: {done:,} requests", markup=False, highlight=False)

    runs, found = {}, None
    for n in sorted(sizes):
        try:
            results = simulate_fleet(bw, edge, cloud, FleetConfig(edges=n, sim=sim, server=server, modes=names),
                                     accuracy=accuracy, ping=ping, progress=show)
        except SimulationError as exc:
            raise CliError(str(exc)) from None
        runs[n] = results
        if not as_json:
            typer.echo(format_fleet(results, sim.sla_ms, per_edge=per_edge, legend=False))
        if sweep and (results["unaware"].fleet["violation_ratio"] or 0.0) > OVERLOADED:
            found = n
            break
    if as_json:
        typer.echo(json.dumps({"trace": bw.name, "sla_ms": sim.sla_ms, "sizes": sorted(sizes),
                               "smallest_overloaded": found,
                               "server": {"instances": instances, "max_batch": max_batch, "batch_slope": batch_slope,
                                          "batch_curve": server.batch_curve, "max_queue_delay_ms": queue_delay_ms},
                               "controller": sim.controller.to_dict(),
                               "runs": {str(n): {m: {"fleet": r.fleet, "server": r.server, "edges": r.edges}
                                                 for m, r in res.items()} for n, res in runs.items()}}, indent=1))
        return
    typer.echo(FLEET_LEGEND.format(sla=sim.sla_ms))
    if sweep:
        if found is None:
            typer.echo(f"load-unaware stays within {OVERLOADED:.0%} violations up to {max(sizes)} edges")
        else:
            a, u = runs[found].get("aware"), runs[found]["unaware"]
            line = f"smallest overloaded fleet: {found} edges (load-unaware {u.fleet['violation_ratio']:.1%} over the SLA"
            if a is not None:
                line += (f"; load-aware {a.fleet['violation_ratio']:.1%}, goodput {a.fleet['goodput_rps']:.1f} vs "
                         f"{u.fleet['goodput_rps']:.1f}/s")
            typer.echo(line + ")")


OVERLOADED = 0.10
