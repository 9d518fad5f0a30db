"""Output paths are checked before the work (issue 21 item 7): no FIFO, device or /proc file, no
silent overwrite without --force, an unwritable folder is one line; a write error mid-run stops
the log, not the run."""

from __future__ import annotations

import os
import subprocess

import pytest
from typer.testing import CliRunner

from janus_deploy import JanusError, check_output_path
from janus_deploy.cli.main import app

PRESETS = ["--profile", "vit_large_patch16_384-jetson-orin-nano", "--cloud-profile", "vit_large_patch16_384-v100"]


def test_fifo_device_proc_and_existing_files_are_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(JanusError, match="is a FIFO"):
        check_output_path(fifo, "run log")
    with pytest.raises(JanusError, match="is a device"):
        check_output_path("/dev/full", "run log")
    with pytest.raises(JanusError, match="under /proc"):
        check_output_path("/proc/self/status", "run log")
    old = tmp_path / "old.jsonl"
    old.write_text("x\n")
    with pytest.raises(JanusError, match="--force"):
        check_output_path(old, "run log", force=False)
    assert check_output_path(old, "run log", force=True) == old
    assert check_output_path(tmp_path / "new.jsonl", "run log", force=False) == tmp_path / "new.jsonl"


def test_a_read_only_folder_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        os.chmod(ro, 0o500)
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        with pytest.raises(JanusError, match="not writable"):
            check_output_path(ro / "log.jsonl", "run log")
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


@pytest.mark.parametrize("out, message", [("/dev/full", "is a device"), ("{t}/exists.bin", "--force")])
def test_export_table_refuses_before_the_work(tmp_path, out, message):
    (tmp_path / "exists.bin").write_bytes(b"mine")
    r = CliRunner().invoke(app, ["export-table", *PRESETS, "--out", out.format(t=tmp_path)])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.output
    assert (tmp_path / "exists.bin").read_bytes() == b"mine"
    r = CliRunner().invoke(app, ["export-table", *PRESETS, "--out", str(tmp_path / "exists.bin"), "--force"])
    assert r.exit_code == 0, r.output


def test_a_write_error_stops_the_log_not_the_run():
    from janus_deploy.runtime.edge import _Log

    class Full:
        def write(self, s):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

    from janus_deploy.schedule.runlog import RequestRecord

    log = _Log(Full())
    log.record(RequestRecord(id=0, t=0.0, sla_ms=100.0))
    log.record(RequestRecord(id=1, t=0.1, sla_ms=100.0))  # the run goes on: no exception
    assert log.error == "No space left on device" and log.records == 2
    log.end()  # a broken log gets no trailer (it must not look complete)
