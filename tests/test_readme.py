"""The README's pipeline, run verbatim: the block under the `readme-pipeline` marker is parsed
out of README.md and executed with bash in a fresh folder laid out like the repository (so the
README cannot drift from the code)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- readme-pipeline:"


def pipeline_block(text: str) -> str:
    """The ```bash block right after the marker comment."""
    at = text.find(MARKER)
    assert at >= 0, "README.md lost its readme-pipeline marker"
    m = re.search(r"```bash\n(.*?)```", text[at:], re.S)
    assert m, "no ```bash block after the readme-pipeline marker"
    return m.group(1)


def test_the_block_is_the_whole_pipeline():
    block = pipeline_block((REPO / "README.md").read_text())
    commands = [ln.split()[1] for ln in block.splitlines() if ln.startswith("janus-deploy ")]
    assert commands == ["export", "inspect", "verify", "build-engines", "calibrate", "profile", "profile",
                        "schedule", "simulate", "serve", "run", "replay"]
    assert "source .venv/bin/activate" in block  # the venv step is stated
    # one plan from export to run, with its accuracy table wherever decisions are made
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        if line.startswith(("janus-deploy schedule", "janus-deploy simulate", "janus-deploy run")):
            assert "--accuracy accuracy.json" in line, line
        if line.startswith("janus-deploy ") and "plans/" in line:
            assert "plans/digits" in line, line


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "janus-deploy").exists(), reason="no .venv (tools/setup.sh)")
def test_readme_pipeline_runs_verbatim(tmp_path):
    block = pipeline_block((REPO / "README.md").read_text())
    work = tmp_path / "checkout"
    work.mkdir()
    for name in (".venv", "calibration"):
        (work / name).symlink_to(REPO / name)
    # nothing beside the checkout: the traces come from the package (net.traces.shipped_traces_dir)
    env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "80"), "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("JANUS_TRACES", None)
    proc = subprocess.Popen(["bash", "-c", "set -euo pipefail\n" + block], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=1200)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the backgrounded server, whatever happened
        except ProcessLookupError:
            pass
    sys.stdout.write(out[-3000:])
    assert proc.returncode == 0, out[-4000:]
    for want in ("plan written to plans/digits", "accuracy table written to accuracy.json",
                 "profile written to edge.json", "serves this plan", "verdict:",
                 "100.0% of the decisions reproduced"):
        assert want in out, f"{want!r} missing from the pipeline's output:\n{out[-3000:]}"
    for f in ("plans/digits/manifest.json", "engines/digits/engines.json", "accuracy.json", "edge.json",
              "cloud.json", "run.jsonl"):
        assert (work / f).is_file(), f
