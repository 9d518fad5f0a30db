#!/usr/bin/env python
"""Re-run the trace-driven evaluation of docs/reproduction.md and print its tables (markdown).

Every number comes from a ``janus-deploy simulate ... --json`` command, printed above its table.
Run from the repository root (takes a few minutes on 2 cores):

    .venv/bin/python tools/reproduce_paper.py > /tmp/repro.md
    .venv/bin/python tools/reproduce_paper.py --only lte:driving   # one cell
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
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
    args = ap.parse_args()
    nets = ["lte", "5g"]
    scenarios = SCENARIOS
    if args.only:
        n, _, s = args.only.partition(":")
        nets, scenarios = [n], [s] if s else SCENARIOS
    for setting in args.settings.split(","):
        for net in nets:
            cells = {}
            print(f"\n#### {net.upper()}, setting `{setting}`\n")
            for sc in scenarios:
                cmd = command(net, sc, setting)
                print(f"    {shlex.join(cmd)}")
                cells[sc] = run(cmd)
            print()
            print(table(net, setting, cells))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
