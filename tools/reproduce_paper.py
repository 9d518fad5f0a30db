#!/usr/bin/env python
"""Re-run the trace-driven evaluation of docs/reproduction.md and print its tables (markdown).

Every number comes from a ``janus-deploy simulate ... --json`` command, printed above its table.
Run from the repository root; the cells run in parallel, ``--jobs`` at a time (default: every
core), and are printed in the same order whatever the number of jobs:

    .venv/bin/python tools/reproduce_paper.py > /tmp/repro.md
    .venv/bin/python tools/reproduce_paper.py --only lte:driving   # one cell
    .venv/bin/python tools/reproduce_paper.py --jobs 1             # one cell at a time
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from janus_deploy.net.traces import SHIPPED  # noqa: E402

TRACES = SHIPPED  # trace names the CLI reads from the shipped traces (net.traces.resolve_shipped)
EDGE, CLOUD = "vit_large_patch16_384-jetson-orin-nano", "vit_large_patch16_384-v100"
SYSTEMS = ["device-only", "cloud-only", "mixed", "janus-paper", "janus-deploy"]
SCENARIOS = ["pooled", "static", "walking", "driving"]
# the paper's Fig. 7 (image task), read off the bars: violation %, throughput FPS
PAPER = {
    "lte": {"violation": [100, 56, 56, 3], "fps": [3.0, 2.9, 3.3, 3.7]},
    "5g": {"violation": [100, 51, 51, 1], "fps": None},
}


def _glob(kind: str, net: str, scenario: str) -> str:
    sc = "*" if scenario == "pooled" else scenario
    return f"{TRACES}/{kind}/{sc}/{net}"


def command(net: str, scenario: str, setting: str) -> list[str]:
    cmd = [".venv/bin/janus-deploy", "simulate", "--trace", _glob("throughput", net, scenario),
           "--profile", EDGE, "--cloud-profile", CLOUD, "--sla", "300", "--json"]
    if setting == "paper":
        cmd += ["--paper-mode"]
    elif setting == "paper-fp32-frame":
        cmd += ["--paper-mode", "--frame-bytes", str(4 * 3 * 384 * 384)]
    elif setting == "deploy":
        cmd += ["--ping", _glob("ping", net, scenario)]
    else:
        raise ValueError(setting)
    return cmd


def run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {shlex.join(cmd)}\n{out.stderr}")
    return json.loads(out.stdout)


def run_all(cmds: list[list[str]], jobs: int, runner=None) -> list[dict]:
    """``runner(cmd)`` (default :func:`run`) of every command, ``jobs`` processes at a time; the
    results in the order of ``cmds`` (each cell is its own ``janus-deploy simulate`` process, so
    the threads here only wait on them)."""
    runner = runner or run
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if jobs == 1:
        return [runner(c) for c in cmds]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(runner, cmds))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v, nd=2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def table(net: str, setting: str, cells: dict[str, dict]) -> str:
    head = ("| scenario | samples | " + " | ".join(f"{s} viol / rps / α" for s in SYSTEMS) + " |\n"
            + "|---|---:|" + "---:|" * len(SYSTEMS) + "\n")
    rows = []
    for sc, res in cells.items():
        m = res["systems"]
        vals = [f"{_pct(m[s]['violation_ratio'])} / {_num(m[s]['throughput_rps'])} / "
                f"{_num(m[s]['mean_alpha'], 3)}" for s in SYSTEMS]
        rows.append(f"| {sc} | {res['samples']} | " + " | ".join(vals) + " |")
    paper = PAPER[net]
    if setting.startswith("paper"):
        fps = paper["fps"] or [None] * 4
        cells_p = [f"{v}% / {f if f is not None else '?'} / -" for v, f in zip(paper["violation"], fps)]
        rows.append("| **paper Fig. 7** | | " + " | ".join(cells_p[:3]) + " | "
                    + cells_p[3].replace("/ -", "/ ?") + " | (n/a) |")
    return head + "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="a network (5g) or net:scenario (lte:driving)")
    ap.add_argument("--settings", default="paper,paper-fp32-frame,deploy")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="cells simulated at once (default: every core)")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    nets = ["lte", "5g"]
    scenarios = SCENARIOS
    if args.only:
        n, _, s = args.only.partition(":")
        nets, scenarios = [n], [s] if s else SCENARIOS
    grid = [(setting, net, sc) for setting in args.settings.split(",") for net in nets for sc in scenarios]
    results = iter(run_all([command(net, sc, setting) for setting, net, sc in grid], args.jobs))
    for setting in args.settings.split(","):
        for net in nets:
            cells = {}
            print(f"\n#### {net.upper()}, setting `{setting}`\n")
            for sc in scenarios:
                print(f"    {shlex.join(command(net, sc, setting))}")
                cells[sc] = next(results)
            print()
            print(table(net, setting, cells))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
