"""The run log's typed record (issue 20 "the run log has no type"): one model, its JSON both
ways, the writer's ids and trailer, and docs/runtime.md's table generated from the model."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from pathlib import Path

import pytest

from janus_deploy.schedule.controller import Observation
from janus_deploy.schedule.runlog import (
    DecisionRecord,
    FallbackRecord,
    Predicted,
    RequestRecord,
    RunLogError,
    RunLogHeader,
    RunLogWriter,
    read_run_log,
    schema_markdown,
)

ROOT = Path(__file__).resolve().parents[1]


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _record(i: int = 0) -> RequestRecord:
    rec = RequestRecord(id=i, t=0.25 * i, source=f"synthetic:{i}", sla_ms=200.0,
                        decision=DecisionRecord(alpha=0.5, policy="exp", level=1, profile_level=1, split=3,
                                                label="0.5@3", model="janus_L1_S3", codec="fp16", meets_sla=True),
                        predicted=Predicted.model_construct(total_ms=12.5, bytes=1000, edge_ms=3.0, queue_ms=1.0),
                        bytes=1000, raw_bytes=1200,
                        observations=[Observation(0.25 * i + 0.01, "transfer", nbytes=1000.0, seconds=0.002,
                                                  rtt_ms=1.5, server_ok=True)])
    rec.measured.total_ms = 11.0
    rec.fallback = FallbackRecord(kind="timeout", reason="late", ran_locally="segments 1..3")
    return rec


def test_record_round_trips_through_json():
    rec = _record(3)
    line = rec.to_json()
    assert "\n" not in line
    back = RequestRecord.from_json(line)
    assert back == rec and back.to_json() == line
    doc = json.loads(line)
    assert doc["decision"]["alpha"] == 0.5 and doc["observations"][0]["rtt_ms"] == 1.5
    assert doc["predicted"]["queue_ms"] == 1.0  # a breakdown term the model does not name is kept
    assert set(doc) == set(RequestRecord.model_fields)  # every key always written
    assert isinstance(back.observations[0], Observation) and back.fallback.kind == "timeout"


def test_non_finite_figures_are_written_as_null():
    rec = _record()
    rec.predicted = Predicted.model_construct(total_ms=float("inf"), bytes=10)
    assert json.loads(rec.to_json())["predicted"]["total_ms"] is None


@pytest.mark.parametrize("field, value, where", [
    ("t", "1.0", "record 0: t"), ("bytes", True, "record 0: bytes"), ("id", -1, "record 0: id"),
    ("measured", {"total_ms": "x"}, "record 0: measured.total_ms"), ("surprise", 1, "record 0: surprise"),
])
def test_from_json_names_the_field(field, value, where):
    doc = json.loads(_record().to_json())
    doc[field] = value
    with pytest.raises(RunLogError, match=f"^log:5: {where}"):
        RequestRecord.from_json(json.dumps(doc), "log:5: record 0")


def _header() -> RunLogHeader:
    return RunLogHeader(plan_hash="ab" * 32, sla_ms=200.0, codec="fp16", server="http://x", controller={},
                        edge_profile={}, cloud_profile={})


def test_writer_numbers_records_and_seals_the_log(tmp_path):
    buf = io.StringIO()
    w = RunLogWriter(buf)
    w.header(_header())
    for i in range(3):
        w.record(_record(i))
    with pytest.raises(RunLogError, match="ids must follow on"):
        w.record(_record(7))
    w.end()
    w.end()  # once
    lines = buf.getvalue().encode().splitlines(keepends=True)
    assert len(lines) == 5
    end = json.loads(lines[-1])
    assert end == {"kind": "janus-deploy/run-log-end", "records": 3, "sha256": hashlib.sha256(b"".join(lines[:-1])).hexdigest()}
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(lines))
    log = read_run_log(path)
    assert log.complete and [r.id for r in log.records] == [0, 1, 2] and log.header.plan_hash == "ab" * 32


def test_writer_stops_on_a_write_error_and_never_seals():
    class Full(io.StringIO):
        def write(self, s):
            if "run-log-end" not in s and '"id": 1' in s:
                raise OSError(28, "No space left on device")
            return super().write(s)

    buf = Full()
    w = RunLogWriter(buf)
    w.header(_header())
    w.record(_record(0))
    w.record(_record(1))
    w.end()
    assert w.error == "No space left on device" and "run-log-end" not in buf.getvalue()


def test_docs_table_is_generated_from_the_model():
    gen = _gen_docs()
    assert gen.stale() == [], "docs/runtime.md's run-log table is out of date: run tools/gen_docs.py"
    text = (ROOT / "docs" / "runtime.md").read_text()
    assert schema_markdown() in text
    for name in RequestRecord.model_fields:
        assert f"| `{name}` |" in text
    # a drifted copy is caught: a field the model does not have
    drifted = text.replace("| `bytes` | integer |", "| `bytes` | string |")
    assert gen.render(drifted, "run-log-record", schema_markdown()) != drifted
