"""Weights on the device for a plan's TensorRT engines: a copy per level (per-level engines,
today's default) against one copy (level-free engines, ``build-engines --graphs level-free``).

    python tools/engine_bytes.py PLAN [--json]

Reads the plan's graphs (initializer records only, no weight is loaded) through
``janus_deploy.backends.trt.weight_bytes``, so it runs without TensorRT or a GPU. Weights only:
the engines' own layout and every execution context's activation memory come on top, and are
what ``tools/gpu_check.sh`` measures on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from janus_deploy.backends.trt import weight_bytes
    from janus_deploy.plan import Manifest

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plan", help="plan directory (janus-deploy export)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    m = Manifest.load(args.plan)
    rows = {p: {g: weight_bytes(m, g, p) for g in ("level", "level-free")} for p in ("fp32", "fp16", "int8")}
    if args.json:
        print(json.dumps({"plan": args.plan, "model": m.model["name"], "levels": len(m.levels), "bytes": rows}))
        return 0
    print(f"{m.model['name']}: {len(m.levels)} levels x {len(m.data['segments'])} segments (weights only, MB = 1e6 bytes)")
    print(f"{'precision':<10}{'per-level engines':>20}{'level-free engines':>20}{'ratio':>8}")
    for p, r in rows.items():
        print(f"{p:<10}{r['level'] / 1e6:>17.1f} MB{r['level-free'] / 1e6:>17.1f} MB{r['level'] / r['level-free']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
