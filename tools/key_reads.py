"""Issue 20's "string-key reads of plan and log records", before/after: every ``x["key"]`` and
``x.get("key")`` in the package whose key is a plan-manifest key or a run-log record key (by key
name: the AST does not know the object's type, so a profile's ``"alpha"`` counts too), outside the
homes that define the formats (plan/manifest.py, plan/export.py, schedule/runlog.py).

    python tools/key_reads.py [ROOT] [--list plan|log]
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path

PLAN_KEYS = {"levels", "segments", "level_free_segments", "unsplit", "payload", "reductions", "tokens", "inputs",
             "outputs", "blocks", "img_size", "num_classes", "mean", "std", "embed_dim", "num_tokens",
             "num_prefix_tokens", "num_blocks", "alpha", "policy", "file", "sha256", "weights", "candidates"}
LOG_KEYS = {"decision", "measured", "predicted", "observations", "fallback", "probe", "top1", "violated", "raw_bytes",
            "total_ms", "edge_ms", "encode_ms", "upload_ms", "transfer_ms", "fallback_ms", "config_error",
            "profile_level", "ran_locally", "edge_profile", "cloud_profile", "trace_mbps", "trace_mean_mbps",
            "achieved_mbps", "sample_mbps", "estimate_mbps", "bandwidth_mbps", "recent_error", "source"}
HOMES = {"plan/manifest.py", "plan/export.py", "schedule/runlog.py"}


def reads(path: Path) -> list[tuple[int, str]]:
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load) and isinstance(n.slice, ast.Constant):
            key = n.slice.value
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args
              and isinstance(n.args[0], ast.Constant)):
            key = n.args[0].value
        if isinstance(key, str):
            out.append((n.lineno, key))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--list", choices=("plan", "log"), help="print every read of that kind")
    args = ap.parse_args()
    pkg = Path(args.root) / "janus_deploy"
    counts: dict[str, Counter] = {"plan": Counter(), "log": Counter()}
    for p in sorted(pkg.rglob("*.py")):
        rel = p.relative_to(pkg).as_posix()
        if rel in HOMES:
            continue
        for line, key in reads(p):
            for kind, keys in (("plan", PLAN_KEYS), ("log", LOG_KEYS)):
                if key in keys:
                    counts[kind][rel] += 1
                    if args.list == kind:
                        print(f"janus_deploy/{rel}:{line}: {key!r}")
    for kind, c in counts.items():
        print(f"{kind}-key reads: {sum(c.values())} in {len(c)} modules")


if __name__ == "__main__":
    main()
