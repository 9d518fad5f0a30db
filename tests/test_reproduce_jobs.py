"""tools/reproduce_paper.py runs the grid's cells in parallel (--jobs) and keeps their order."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("reproduce_paper", ROOT / "tools" / "reproduce_paper.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_run_all_keeps_the_order_and_runs_cells_at_once():
    mod = _load()
    active, peak, lock = [0], [0], threading.Lock()

    def runner(cmd):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05 * (4 - int(cmd[0])))  # the first cell finishes last
        with lock:
            active[0] -= 1
        return {"cell": cmd[0]}

    cmds = [[str(i)] for i in range(4)]
    assert mod.run_all(cmds, 4, runner) == [{"cell": str(i)} for i in range(4)]
    assert peak[0] > 1
    peak[0] = 0
    assert mod.run_all(cmds, 1, runner) == [{"cell": str(i)} for i in range(4)]
    assert peak[0] == 1
    with pytest.raises(ValueError, match="--jobs"):
        mod.run_all(cmds, 0, runner)


def test_jobs_below_one_is_one_error_line():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "reproduce_paper.py"), "--jobs", "0"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "--jobs must be >= 1" in r.stderr
