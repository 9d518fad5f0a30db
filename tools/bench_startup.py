"""Start-up cost of the integrity check (sha256 of every file a runner loads), measured in fresh
processes on one plan:

* the check alone (``runner.check_files()``: the weight file through its memory map, then every
  graph of the runner's family), cold (file pages dropped from the page cache where this
  process may do so, else as found) and warm;
* ``create_app(preload=True)`` as ``serve --preload`` runs it (check + every session), and the
  same preload without the check (sessions only), so the check's share is visible;
* a second runner in the same process: the weights are not hashed again.

Usage: python tools/bench_startup.py [--model vit_base_patch16_224] [--levels 8] [--k 3]
       [--plan DIR (reuse an exported plan; default: export one to a temporary folder)]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = r"""
import json, os, sys, time
t_import = time.perf_counter()
from janus_deploy.plan import Manifest
from janus_deploy.backends import load_runner
from janus_deploy.runtime.server import create_app
mode, plan, engines = sys.argv[1:4]
m = Manifest.load(plan)
out = {}
if mode == "check":
    r = load_runner(m, engines, threads=1)
    t = time.perf_counter(); r.check_files(); out["check_s"] = time.perf_counter() - t
    out["checks"] = r.checks.as_dict()
    r2 = load_runner(m, engines, threads=1)
    t = time.perf_counter(); r2.check_files(); out["second_runner_check_s"] = time.perf_counter() - t
    out["second_runner_checks"] = r2.checks.as_dict()
elif mode == "serve":
    t = time.perf_counter(); app = create_app(plan, engines, preload=True, threads=1)
    out["create_app_preload_s"] = time.perf_counter() - t
    r = app.state.janus.runner
    out["checks"] = r.checks.as_dict(); out["sessions"] = r.loaded()
elif mode == "sessions":  # the same sessions, the check's cost taken out: files already checked in this process
    r = load_runner(m, engines, threads=1)
    r.check_files()
    checked = r.checks.seconds
    t = time.perf_counter(); r.preload(); out["preload_s"] = time.perf_counter() - t
    out["graph_check_s_inside_preload"] = r.checks.seconds - checked
    out["sessions"] = r.loaded()
print(json.dumps(out))
"""


def drop_cache(files: list[Path]) -> bool:
    """Evict the files' pages from the page cache (posix_fadvise DONTNEED); False if unsupported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def probe(mode: str, plan: Path, engines: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(plan), str(engines)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--plan", type=Path, default=None, help="an exported plan (default: export one)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (median printed)")
    args = ap.parse_args()

    from janus_deploy.backends import build_engines
    from janus_deploy.plan import Manifest

    if args.plan is not None and (args.plan / "manifest.json").is_file():
        plan = args.plan
        manifest = Manifest.load(plan)
    else:
        from janus_deploy.model import ModelSpec
        from janus_deploy.plan import ExportConfig, export_plan

        plan = args.plan or Path(tempfile.mkdtemp(prefix="janus-startup-")) / "plan"
        print(f"exporting {args.model} ({args.levels} levels, k={args.k}) to {plan} ...", flush=True)
        manifest, _ = export_plan(ModelSpec(args.model), plan, ExportConfig(k=args.k, levels=args.levels))
    engines = plan.parent / (plan.name + "-engines")
    if not (engines / "engines.json").is_file():
        build_engines(manifest, engines, "ort")
    files = [plan / e["file"] for e in manifest.graph_entries()] + [plan / manifest.data["weights"]["file"]]
    weights = (plan / manifest.data["weights"]["file"]).stat().st_size

    def median(xs):
        return sorted(xs)[len(xs) // 2]

    print(f"plan {plan}: {manifest.model['name']}, weights.bin {weights / 1e6:.1f} MB, {len(files) - 1} graphs "
          f"({sum(f.stat().st_size for f in files[:-1]) / 1e6:.1f} MB)")
    cold = []
    for _ in range(args.repeat):
        dropped = drop_cache(files)
        cold.append(probe("check", plan, engines))
    warm = [probe("check", plan, engines) for _ in range(args.repeat)]
    c = warm[0]["checks"]
    print(f"check_files (weights + {c['files'] - 1} graphs of the runner's family, {c['bytes'] / 1e6:.1f} MB hashed): "
          f"warm {median([r['check_s'] for r in warm]):.3f} s, "
          + (f"cold {median([r['check_s'] for r in cold]):.3f} s (page cache dropped)" if dropped
             else "cold: page cache could not be dropped here"))
    print(f"  {c['bytes'] / 1e6 / median([r['check_s'] for r in warm]):.0f} MB/s warm; a second runner in the same "
          f"process: {median([r['second_runner_check_s'] for r in warm]):.3f} s "
          f"(weights reused: {warm[0]['second_runner_checks']['reused']}, hashed {warm[0]['second_runner_checks']['bytes'] / 1e6:.1f} MB)")
    serve = [probe("serve", plan, engines) for _ in range(args.repeat)]
    sessions = [probe("sessions", plan, engines) for _ in range(args.repeat)]
    s = median([r["create_app_preload_s"] for r in serve])
    p = median([r["preload_s"] for r in sessions])
    chk = median([r["check_s"] for r in warm])
    print(f"create_app(preload=True) as `serve --preload` runs it: {s:.2f} s for {serve[0]['sessions']} sessions; "
          f"sessions alone {p:.2f} s (their graphs re-read and re-hashed: "
          f"{median([r['graph_check_s_inside_preload'] for r in sessions]):.3f} s); the up-front check "
          f"{chk:.3f} s = {100 * chk / s:.1f} % of start-up (warm page cache)")


if __name__ == "__main__":
    main()
