"""The runtime-only install (`pip install janus-deploy`, no extra): a fresh venv with only the base
dependencies (no torch, no timm) builds engines for, profiles, serves and runs a plan that this
(full) environment exported, end to end on loopback; the commands that re-create the model in
PyTorch fail with the one-line hint naming the [export] extra; and the install stays under the
footprint target (docs/benchmarks.md, tools/bench_install.py).

pip resolves from the machine's local index and wheel cache, so the install takes seconds; the
whole test about a minute on 2 cores. Deselect with ``-m 'not install'``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOOTPRINT_TARGET_MB = 300  # issue 26: the runtime-only venv on disk
EXPORT_HINT = "pip install 'janus-deploy[export]'"

pytestmark = pytest.mark.install


def clean_env() -> dict[str, str]:
    """This environment without what points into the checkout (PYTHONPATH would show pip the
    checkout's egg-info as "already installed", and the venv this checkout's package)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


def build_runtime_venv(root: Path) -> Path:
    """A venv at ``root`` with janus-deploy (a wheel of this checkout) and its base dependencies
    only; returns its ``bin`` folder. pip is the full environment's (``pip --python``), so the
    venv itself carries no pip."""
    wheels = root / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(REPO)], check=True, capture_output=True, text=True, env=clean_env())
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=clean_env())
    wheel = next(wheels.glob("janus_deploy-*.whl"))
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                        str(wheel)], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return venv / "bin"


def dir_mb(path: Path) -> float:
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runtime_only_install_serves_and_runs_an_exported_plan(tmp_path):
    from janus_deploy.model import ModelSpec
    from janus_deploy.plan import ExportConfig, export_plan

    # the full environment exports (the job of the [export] extra)
    plan = tmp_path / "plan"
    export_plan(ModelSpec("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 4}), plan,
                ExportConfig(k=2, levels=2))

    bin_ = build_runtime_venv(tmp_path)
    py, cli = str(bin_ / "python"), str(bin_ / "janus-deploy")
    env = clean_env()

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        if ok:
            assert r.returncode == 0, f"janus-deploy {' '.join(args)}: rc {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    # it really is torch-free, and the package comes from the venv, not this checkout
    probe = subprocess.run([py, "-c", "import importlib.util as u, janus_deploy; print(janus_deploy.__file__); "
                            "print([m for m in ('torch', 'timm', 'torchvision', 'safetensors') if u.find_spec(m)])"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    where, present = probe.stdout.split("\n")[:2]
    assert str(tmp_path / "venv") in where and present == "[]", probe.stdout
    size = dir_mb(tmp_path / "venv")
    assert size <= FOOTPRINT_TARGET_MB, f"runtime-only venv is {size:.0f} MB (target {FOOTPRINT_TARGET_MB} MB)"

    # build engines, profile both ends, serve, run: all in the runtime-only venv
    run("build-engines", str(plan), "--backend", "ort", "--out", "engines")
    # the edge emulated 20x slower than this machine, so that offloading to the server pays
    for name, slowdown in (("edge", "20"), ("cloud", "1")):
        run("profile", str(plan), "--engines", "engines", "--device-name", name, "--warmup", "1", "--runs", "3",
            "--threads", "1", "--num-images", "2", "--edge-slowdown", slowdown, "--out", f"{name}.json")
    port = free_port()
    server = subprocess.Popen([cli, "serve", str(plan), "--engines", "engines", "--port", str(port), "--threads", "1"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        r = run("run", str(plan), "--engines", "engines", "--profile", "edge.json", "--cloud-profile", "cloud.json",
                "--server", f"http://127.0.0.1:{port}", "--sla", "2000", "--synthetic", "6", "--edge-slowdown", "20",
                "--threads", "1", "--server-wait", "60", "--log", "run.jsonl", "--json")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.communicate()
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["requests"] == 6 and summary["errors"] == 0 and summary["fallbacks"] == 0, summary
    records = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()[1:-1]]  # header, trailer
    assert len(records) == 6 and all(rec["error"] is None and rec["top1"] is not None for rec in records), records
    # answered by the server: its timing parameters came back with the tail's logits
    offloaded = [rec for rec in records if rec["decision"]["model"] is not None]
    assert offloaded and all(rec["server"] for rec in offloaded), [rec["decision"] for rec in records]

    # what needs the [export] extra says so in one line, exit 2
    for args in (["export", "--model", "vit_tiny_patch16_224", "--out", "p2"], ["verify", str(plan)]):
        r = run(*args, ok=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and EXPORT_HINT in lines[0] and "torch" in lines[0], \
            (args, r.returncode, r.stderr)
    assert not (tmp_path / "p2").exists()


def test_missing_extra_hint_names_the_extra():
    from janus_deploy import EXTRAS, missing_extra_hint

    assert missing_extra_hint(ModuleNotFoundError("no torch", name="torch"), "`x`") == \
        "`x` needs torch, which this install leaves out: pip install 'janus-deploy[export]'"
    assert "janus-deploy[export]" in missing_extra_hint(ModuleNotFoundError(name="timm.layers"))
    assert missing_extra_hint(ModuleNotFoundError(name="numpy")) is None  # a base dependency: not an extra
    assert missing_extra_hint(ImportError("cannot import name")) is None
    # every extra named exists in pyproject.toml
    text = (REPO / "pyproject.toml").read_text()
    for extra in set(EXTRAS.values()):
        assert f"\n{extra} = [" in text, extra
