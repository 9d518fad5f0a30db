"""Footprint of the runtime-only install (`pip install janus-deploy`, no torch) next to the full
one (the repository's .venv, `.[all]`): size on disk, `import janus_deploy` and CLI start-up
time, `serve` start-up (until /v2/health/ready answers) and the RSS of the serving process.

The runtime-only venv is built in a temporary folder from a wheel of this checkout, with pip
resolving from the machine's local index (seconds). The plan is a small one exported by the full
environment.

Usage: python tools/bench_install.py [--repeats 3]   (run with the full .venv's python)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_runtime_install import build_runtime_venv, clean_env, dir_mb  # noqa: E402 - after the path insert


def timed(cmd: list[str], cwd: Path, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=clean_env(), check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def serve_startup(cli: str, plan: Path, engines: Path, cwd: Path) -> tuple[float, float]:
    """Seconds from spawn to a ready answer, and the server's RSS (MB) once ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    p = subprocess.Popen([cli, "serve", str(plan), "--engines", str(engines), "--port", str(port), "--threads", "1"],
                         cwd=cwd, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if p.poll() is not None or time.perf_counter() - t > 120:
                    raise SystemExit("serve did not become ready") from None
                time.sleep(0.05)
        ready = time.perf_counter() - t
        rss = next(int(ln.split()[1]) for ln in Path(f"/proc/{p.pid}/status").read_text().splitlines()
                   if ln.startswith("VmRSS")) / 1024
        return ready, rss
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from janus_deploy.backends import build_engines
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, _ = export_plan(ModelSpec("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 4}),
                                  root / "plan", ExportConfig(k=2, levels=2))
        build_engines(manifest, root / "engines", "ort")
        t = time.perf_counter()
        rt_bin = build_runtime_venv(root)
        install_s = time.perf_counter() - t
        full_bin = REPO / ".venv" / "bin"
        rows = []
        for name, bin_, venv in (("runtime only", rt_bin, root / "venv"), ("full (.[all])", full_bin, (REPO / ".venv").resolve())):
            py, cli = str(bin_ / "python"), str(bin_ / "janus-deploy")
            imp = timed([py, "-c", "import janus_deploy.cli.main"], root, args.repeats)
            version = timed([cli, "--version"], root, args.repeats)
            ready, rss = serve_startup(cli, root / "plan", root / "engines", root)
            rows.append((name, dir_mb(venv), imp, version, ready, rss))
    print(f"runtime-only install: {install_s:.1f} s (wheel build + pip from the local index)")
    print("| install | size on disk (MB) | import janus_deploy.cli.main (s) | `janus-deploy --version` (s) "
          "| `serve` to ready (s) | serving RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, mb, imp, version, ready, rss in rows:
        print(f"| {name} | {mb:.0f} | {imp:.2f} | {version:.2f} | {ready:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
