"""tools/bench_decide.py runs (C and Python decide the same cases in one run) and C is faster;
the ≤ 1 µs figure itself is a wall-clock bound, checked with -m slow (docs/benchmarks.md has it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from libjanus_support import REPO, ensure_built


def bench(cases: int, repeats: int) -> dict:
    ensure_built()
    r = subprocess.run([sys.executable, str(REPO / "tools" / "bench_decide.py"), "--cases", str(cases), "--repeats",
                        str(repeats), "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_bench_decide_runs_and_c_is_faster():
    out = bench(400, 3)
    assert (out["levels"], out["splits"]) == (30, 15)
    assert set(out["results"]) == {"typical", "paper", "nothing-fits"}
    for name, r in out["results"].items():
        assert 0 < r["c_ns_best"] < r["python_ns_best"], (name, r)


@pytest.mark.slow  # a wall-clock bound: outside the default run
def test_decide_under_a_microsecond_on_vit_large_presets():
    out = bench(20000, 15)
    for name in ("typical", "paper"):
        assert out["results"][name]["c_ns_best"] <= 1000, out["results"]
