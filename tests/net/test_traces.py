"""Trace readers (shipped 5G/LTE files, Pensieve, mahimahi) and bandwidth integration."""

from __future__ import annotations

from pathlib import Path

import pytest

from janus_deploy.net.traces import (Trace, TraceError, detect_format, load_5g_lte, load_mahimahi,
                                     load_pensieve, load_ping, load_trace, read_runs,
                                     shipped_traces_dir)

TRACES = shipped_traces_dir()


# ---------------------------------------------------------------- shipped files
def test_lte_driving_counts():
    runs = read_runs(TRACES / "throughput/driving/lte/throughput.list")
    assert [n for n, _ in runs] == list(range(1, 11))
    assert sum(len(v) for _, v in runs) == 53_487
    assert len(load_5g_lte(TRACES / "throughput/driving/lte/throughput.list")) == 53_487
    run8 = load_5g_lte(TRACES / "throughput/driving/lte/throughput.list", run=8)
    assert len(run8) == 5_740 and run8.name.endswith("#run8")


def test_5g_driving_counts_and_outages():
    tr = load_trace(TRACES / "throughput/driving/5g")  # a directory
    assert len(read_runs(TRACES / "throughput/driving/5g/throughput.list")) == 8
    # 8 runs of (timestamps, values) line pairs at ~0.1 s, averaged into 1 s samples; the clock
    # lines (up to 807 s) were once read as 807 "Mbit/s" and the trace was 139,498 samples long
    assert len(tr) == 24_140
    assert min(tr.samples) == 0.0 and max(tr.samples) == pytest.approx(488.0, abs=0.1)


def test_pooling_by_glob_and_ping():
    lte = load_trace(str(TRACES / "throughput/*/lte/*.list"))
    # 10 files: 6 static + 3 walking + 1 driving, pooled
    assert len(lte) == 53_487 + 917 + 913 + 909 + 914 + 903 + 909 + 5_764 + 3_692 + 5_711
    ping = load_ping(TRACES / "ping/driving/lte/ping.list")
    assert len(ping) == 12_527 and ping.unit == "ms"
    with pytest.raises(TraceError, match="no run 2"):  # this file holds runs 1 and 3 only
        load_5g_lte(TRACES / "ping/static/5g/away_p2.list", run=2)


# ---------------------------------------------------------------- small hand-made files
def test_shipped_format_variants(tmp_path):
    f = tmp_path / "t.list"
    f.write_text("\n###############################\nRun 1\n1.5,2,\n3\n\n"
                 "###############################\nRun 2\n0,4.25\n")
    assert read_runs(f) == [(1, [1.5, 2.0, 3.0]), (2, [0.0, 4.25])]
    assert load_5g_lte(f).samples == [1.5, 2.0, 3.0, 0.0, 4.25]
    assert load_5g_lte(f, run=2, interval_s=0.5).samples == [0.0, 4.25]
    bad = tmp_path / "bad.list"
    bad.write_text("Run 1\n1,2,x3\n")
    with pytest.raises(TraceError, match="bad.list:2"):
        read_runs(bad)


def test_pensieve_and_mahimahi(tmp_path):
    pen = tmp_path / "cooked.txt"
    pen.write_text("0.0 1.0\n1.0 2.0\n2.0 0.0\n3.0 4.0\n")
    tr = load_pensieve(pen)
    assert (tr.samples, tr.interval_s) == ([1.0, 2.0, 0.0, 4.0], 1.0)
    irregular = tmp_path / "irregular.txt"
    irregular.write_text("0 1\n1 2\n2 3\n4 5\n5 6\n")  # a 2-s gap: resampled onto the 1-s grid
    assert load_pensieve(irregular).samples == [1.0, 2.0, 3.0, 3.0, 5.0, 6.0]
    mm = tmp_path / "mm.up"
    mm.write_text("0\n10\n500\n999\n1000\n2500\n")
    tr = load_mahimahi(mm, interval_s=1.0)
    # 1500-byte packets per 1-s bin: 4, 1, 1 → 4·12000 bit/s = 0.048 Mbit/s, 0.012, 0.012
    assert tr.samples == pytest.approx([0.048, 0.012, 0.012])
    assert [detect_format(p) for p in (pen, mm)] == ["pensieve", "mahimahi"]
    # 0.5-s bins: {0, 10}, {500, 999}, {1000}, {}, and the final stamp 2500 closes the last bin
    assert load_trace(mm, interval_s=0.5).samples == pytest.approx([0.048, 0.048, 0.024, 0, 0.024])


def test_directory_pools_sorted(tmp_path):
    (tmp_path / "b.list").write_text("Run 1\n3,4\n")
    (tmp_path / "a.list").write_text("Run 1\n1,2\n")
    assert load_trace(tmp_path).samples == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(TraceError, match="no trace file matches"):
        load_trace(tmp_path / "*.nope")


# ---------------------------------------------------------------- transfer time
def test_transfer_time_on_step_trace():
    # 8 Mbit/s (= 1e6 B/s) for 1 s, outage for 2 s, then 16 Mbit/s for 1 s; loops every 4 s
    tr = Trace([8.0, 0.0, 0.0, 16.0], interval_s=1.0)
    assert tr.transfer_time(0.0, 1_000_000) == pytest.approx(1.0)
    assert tr.transfer_time(0.0, 500_000) == pytest.approx(0.5)
    # 4 Mbit before the outage, wait until t = 3, 4 Mbit at 16 Mbit/s = 0.25 s → ends at 3.25
    assert tr.transfer_time(0.5, 1_000_000) == pytest.approx(2.75)
    # starting inside the outage waits for it to end
    assert tr.transfer_time(1.0, 1_000_000) == pytest.approx(2.5)
    # 8 Mbit at 16 until t = 4, then the trace loops: 8 Mbit at 8 Mbit/s = 1 s → 1.5 s
    assert tr.transfer_time(3.5, 2_000_000) == pytest.approx(1.5)
    # many loops: 10 periods deliver 10·24 Mbit = 30e6 B exactly; the last period ends on the
    # 16 Mbit/s sample at t = 40
    assert tr.transfer_time(0.0, 30_000_000) == pytest.approx(40.0)
    assert tr.transfer_time(7.0, 0) == 0.0
    assert tr.mean_rate(0.0, 4.0) == pytest.approx(6.0)


def test_all_zero_trace_cannot_send():
    tr = Trace([0.0, 0.0], interval_s=1.0, name="dead")
    with pytest.raises(TraceError, match="no nonzero"):
        tr.transfer_time(0.0, 10)
    with pytest.raises(TraceError, match="invalid sample"):
        Trace([1.0, -2.0], 1.0)


def test_trace_directories_never_pool_the_other_kind(tmp_path):
    """`--trace DIR` pools throughput files only, `--ping DIR` ping files only; a ping file given
    as a throughput trace is refused with the fix."""
    from janus_deploy.net.traces import load_ping, load_trace

    for kind, values in (("throughput", "10.0\n20.0\n"), ("ping", "500.0\n700.0\n")):
        d = tmp_path / "set" / kind / "static"
        d.mkdir(parents=True)
        (d / "a.list").write_text(values)
    bw = load_trace(tmp_path / "set")
    assert list(bw.samples) == [10.0, 20.0]  # never the 500/700 ms RTTs
    assert list(load_ping(tmp_path / "set").samples) == [500.0, 700.0]
    with pytest.raises(TraceError, match="--ping"):
        load_trace(tmp_path / "set" / "ping" / "static" / "a.list")


def test_runs_written_as_timestamp_value_pairs_are_resampled(tmp_path):
    """Some shipped 5G runs hold (timestamps, values) line pairs: the timestamps are not samples.
    Values at 0.1 s steps averaged into 1 s bins: [1..10] → 5.5, [20] → 20 (hand-computed)."""
    times = [round(0.1 * i, 1) for i in range(11)]
    values = [float(i) for i in range(1, 11)] + [20.0]
    f = tmp_path / "timed.list"
    f.write_text("#" * 31 + "\nRun 1\n" + ",".join(map(str, times)) + "\n" + ",".join(map(str, values)) + "\n"
                 + "#" * 31 + "\nRun 2\n1,2,3\n")
    runs = read_runs(f)
    assert runs == [(1, [5.5, 20.0]), (2, [1.0, 2.0, 3.0])]
    assert read_runs(f, interval_s=0.5)[0][1] == [3.0, 8.0, 20.0]  # [1..5], [6..10], [20]



# ---------------------------------------------------------------- where the shipped traces are
def test_the_shipped_traces_are_package_data():
    """The traces live inside the package (an installed janus-deploy has them), with their
    licence and source note, and nothing of the project points outside the checkout for them."""
    import janus_deploy

    pkg = Path(janus_deploy.__file__).resolve().parent
    assert TRACES == pkg / "net" / "traces_data" / "uplink-5g-lte"
    for name in ("LICENSE", "SOURCE.md", "README.md"):
        assert (TRACES / name).is_file(), name
    assert "MIT License" in (TRACES / "LICENSE").read_text()
    assert len(list(TRACES.rglob("*.list"))) == 40  # 20 throughput + 20 ping files
    root = pkg.parent
    pyproject = (root / "pyproject.toml").read_text()
    assert '"janus_deploy.net" = ["traces_data/' in pyproject  # shipped in wheels
    assert "janus_deploy/net/traces_data" in (root / "MANIFEST.in").read_text()  # and in sdists


def test_trace_names_resolve_to_the_shipped_set_from_any_folder(tmp_path, monkeypatch):
    from janus_deploy.net.traces import SHIPPED, resolve_shipped

    monkeypatch.delenv("JANUS_TRACES", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing called uplink-5g-lte here
    run8 = load_trace(f"{SHIPPED}/throughput/driving/lte", run=8)
    assert len(run8) == 5_740
    assert len(load_trace(f"{SHIPPED}/throughput/*/lte/*.list")) > 53_487  # globs too
    # a real path of that name wins over the shipped set
    local = tmp_path / SHIPPED / "throughput"
    local.mkdir(parents=True)
    (local / "mine.list").write_text("Run 1\n7,8\n")
    assert resolve_shipped(f"{SHIPPED}/throughput") == Path(SHIPPED) / "throughput"
    assert load_trace(f"{SHIPPED}/throughput").samples == [7.0, 8.0]


def test_janus_traces_overrides_and_a_wrong_one_is_named(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    (other / "throughput" / "x").mkdir(parents=True)
    (other / "throughput" / "x" / "a.list").write_text("Run 1\n1,2,3\n")
    monkeypatch.setenv("JANUS_TRACES", str(other))
    assert shipped_traces_dir() == other
    monkeypatch.chdir(tmp_path)
    assert load_trace("uplink-5g-lte/throughput").samples == [1.0, 2.0, 3.0]
    monkeypatch.setenv("JANUS_TRACES", str(tmp_path / "nope"))
    with pytest.raises(TraceError, match="JANUS_TRACES=.*nope is not a folder"):
        shipped_traces_dir()


def test_cli_traces_lists_names_that_load(monkeypatch):
    import json

    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    monkeypatch.delenv("JANUS_TRACES", raising=False)
    r = CliRunner().invoke(app, ["traces", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert Path(out["folder"]) == TRACES and len(out["traces"]) == 40
    lte = next(t for t in out["traces"] if t["name"] == "uplink-5g-lte/throughput/driving/lte/throughput.list")
    assert lte["runs"] == list(range(1, 11)) and lte["samples"] == 53_487
    assert len(load_trace(lte["name"], run=8)) == 5_740  # the listed name is what --trace takes
    r = CliRunner().invoke(app, ["traces", "--path"])
    assert r.output.strip() == str(TRACES)
