"""`traces`: the shipped 5G/LTE uplink traces (where they are, what they hold)."""

from __future__ import annotations

import json
from typing import Any

import typer


def traces_cmd(
    path: bool = typer.Option(False, "--path", help="Print only the folder of the shipped traces."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the shipped uplink traces: the name to pass as --trace / --ping, runs and samples."""
    from janus_deploy.net.traces import SHIPPED, read_runs, shipped_traces_dir

    root = shipped_traces_dir()
    if path:
        typer.echo(str(root))
        return
    rows: list[dict[str, Any]] = []
    for f in sorted(root.rglob("*.list")):
        runs = read_runs(f)
        rows.append({"name": f"{SHIPPED}/{f.relative_to(root).as_posix()}", "runs": [n for n, _ in runs],
                     "samples": sum(len(v) for _, v in runs), "unit": "ms" if "ping" in f.relative_to(root).parts
                     else "Mbit/s"})
    if as_json:
        typer.echo(json.dumps({"folder": str(root), "traces": rows}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"shipped uplink traces in {root}", title_justify="left")
    t.add_column("--trace / --ping name")
    t.add_column("runs", justify="right")
    t.add_column("samples", justify="right")
    t.add_column("unit")
    for r in rows:
        t.add_row(r["name"], f"{len(r['runs'])} ({r['runs'][0]}-{r['runs'][-1]})", f"{r['samples']:,}", r["unit"])
    con = Console()
    con.print(t)
    con.print(f"a folder name pools its files (e.g. --trace {SHIPPED}/throughput/driving/lte); --run N picks one "
              f"run; runs written as timed line pairs are counted at 1 s per sample; licence and source: {root / 'LICENSE'}, {root / 'SOURCE.md'}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("traces")(traces_cmd)
