"""`replay` on tampered run logs (issue 21 item 6): every case of tools/bench_tamper.py's table is
one line naming the problem and rc 2 (a bad log), never a traceback, never rc 1 (that is "not
reproduced") and never "100 %"; the untampered log replays 100 % with rc 0."""

from __future__ import annotations

import importlib.util
import json
import sys
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from janus_deploy.cli.main import app
from janus_deploy.schedule.runlog import RunLogError, read_run_log

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_tamper.py"
spec = importlib.util.spec_from_file_location("bench_tamper", TOOL)
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_tamper"] = bench
spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return bench.make_log(tmp_path_factory.mktemp("runlog") / "base.jsonl", 200)


def _replay(path, *extra):
    r = CliRunner().invoke(app, ["replay", str(path), *extra])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    return r.exit_code, " ".join(r.output.split())


def test_untampered_log_replays_whole(base):
    rc, out = _replay(base)
    assert rc == 0 and "100.0%" in out, out
    log = read_run_log(base)
    assert log.complete and log.end.records == len(log.records) == 200
    assert [r.id for r in log.records] == list(range(200))
    labels = {r.decision.label for r in log.records}
    assert len(labels) > 2  # the decisions change with the link: a tampered observation can move them


def test_table_is_big_enough():
    assert len(bench.CASES) >= 40 and len({c.name for c in bench.CASES}) == len(bench.CASES)


@pytest.mark.parametrize("case", bench.CASES, ids=[c.name for c in bench.CASES])
def test_tampered_log_is_one_line_rc_2(base, tmp_path, case):
    path = bench.tampered(base, case, tmp_path / "tampered.jsonl")
    assert path.read_bytes() != base.read_bytes(), "the tampering changed nothing"
    rc, out = _replay(path)
    assert rc == 2, (rc, out)
    assert case.expect in out, out
    assert "reproduced" not in out and out.count("error:") == 1, out


def test_truncated_log_replays_with_partial_and_says_so(base, tmp_path):
    path = tmp_path / "killed.jsonl"
    lines = base.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:101]))  # header + 100 records, no trailer: a killed run
    rc, out = _replay(path)
    assert rc == 2 and "without its trailer" in out and "--partial" in out, out
    rc, out = _replay(path, "--partial")
    assert rc == 0 and "partial log" in out and "100.0%" in out, out
    r = CliRunner().invoke(app, ["replay", str(path), "--partial", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["complete"] is False


def test_junk_line_is_not_read_whole(base, tmp_path):
    """A 20 MB line costs a bounded read (1 MiB per record line), not the whole line in memory."""
    lines = base.read_bytes().splitlines(keepends=True)
    path = tmp_path / "junk.jsonl"
    path.write_bytes(b"".join([*lines[:50], b"x" * (20 << 20) + b"\n", *lines[50:]]))
    tracemalloc.start()
    with pytest.raises(RunLogError, match="longer than 1,048,576 bytes"):
        read_run_log(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_forger_who_reseals_the_trailer_is_caught_where_records_disagree(base, tmp_path):
    """The trailer is no signature: a resealed consistent edit is caught by the record checks or
    by replay's verdict (rc 1), never passed as a clean 100 % where decisions moved."""
    for case in bench.FORGED[:3]:
        rc, out = _replay(bench.tampered(base, case, tmp_path / "forged.jsonl"))
        assert rc in (1, 2) and "100.0%" not in out, (case.name, rc, out)
