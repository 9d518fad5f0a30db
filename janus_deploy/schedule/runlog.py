"""The run log: its typed records, its writer and its checked reader (one home for the format).

A run log (``run --log``, the demo's ``requests.jsonl``, the embedded runtime's log) is JSON lines:

1. a header (:class:`RunLogHeader`: ``kind`` :data:`RUN_LOG_KIND`, ``format_version``
   :data:`RUN_LOG_VERSION`, the plan hash, SLA, codec, server, the controller settings, both
   profiles and the accuracy table: everything ``janus-deploy replay`` needs);
2. one :class:`RequestRecord` per request, ``id`` 0, 1, 2, … in the order they were written;
3. a trailer (:class:`RunLogEnd`: ``kind`` :data:`RUN_LOG_END_KIND`, the number of records and the
   sha256 of every byte before the trailer line), written when the runtime closes.

The edge builds a :class:`RequestRecord` per request (:mod:`janus_deploy.runtime.edge`), the
:class:`RunLogWriter` writes it, and :func:`read_run_log` reads the file back for replay (the
simulator's side), the demo and the tests, checking every line against these models (one
:class:`RunLogError` naming the line and field) and the file as a whole: contiguous ids (a deleted
or moved record), the trailer (a truncated log), the checksum (an edited line: a changed plan hash,
rewritten byte counts), and lines no longer than :data:`MAX_RECORD_BYTES` /
:data:`MAX_HEADER_BYTES` (a junk line is not read whole). ``docs/runtime.md``'s record table is
generated from these models (:func:`schema_markdown`, ``tools/gen_docs.py``).
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import IO, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from janus_deploy import JanusError
from janus_deploy.profile.schema import first_error
from janus_deploy.schedule.controller import OBSERVATION_KINDS, Observation

RUN_LOG_KIND = "janus-deploy/run-log"
RUN_LOG_END_KIND = "janus-deploy/run-log-end"
RUN_LOG_VERSION = 2  # 2: record ids checked, the trailer (count + sha256); 1 had neither
MAX_RECORD_BYTES = 1 << 20  # one request record line (~2 KB in practice)
MAX_HEADER_BYTES = 64 << 20  # the header holds both profiles and the accuracy table
HEADER_PREFIX = f'{{"kind": "{RUN_LOG_KIND}", '.encode()  # how the writer starts the header (checked before reading on)


class RunLogError(JanusError):
    """A run log that cannot be read, or that is not the log a run wrote (one line saying which)."""


class _Rec(BaseModel):
    """Strict: no strings for numbers, no booleans for integers, finite numbers, no unknown keys."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


class DecisionRecord(_Rec):
    """What the request ran: the controller's choice, or the forced pair."""

    alpha: float = Field(description="the level's α (ToMe's constant policy: its r)")
    policy: str = Field(description="the level's schedule policy (`exp`, `constant`, …)")
    level: int = Field(ge=0, description="plan level index")
    profile_level: int = Field(ge=0, description="the profiles' level index (the scheduler's row)")
    split: int = Field(ge=0, description="split point s: the edge runs blocks 1..s; N+1 device only, 0 sends the frame")
    label: str = Field(description="the configuration, `α@split` (`janus_deploy.levels.config_label`)")
    model: str | None = Field(default=None, description="the tail model asked, null for device-only")
    codec: str | None = Field(description="the payload codec the request sent with (null at device only; a forced "
                                           "option: the run's main codec)")
    meets_sla: bool = Field(description="predicted within the SLA")
    forced: bool = Field(default=False, description="a forced pair (`infer(force=...)`), not a controller decision (replay skips it)")


class ControllerState(_Rec):
    """The controller's state the decision was made from (:meth:`Choice.state`)."""

    estimate_mbps: float = Field(description="the estimator's raw estimate")
    bandwidth_mbps: float = Field(description="what the scheduler was given (deflated; 0 while offloading is off)")
    rtt_ms: float = Field(description="the RTT estimate used")
    recent_error: float = Field(description="the relative error the deflation divided by (1 + this): the "
                                            "estimates' recent overshoot (robustmpc: its own error)")
    reason: str = Field(description="`scheduler`, `breaker-open` or `unauthorized`")
    cloud_factor: float = Field(default=1.0, description="the server load the decision used: a factor over the profile's "
                                                 "decode + tail (1 when idle or `--cloud-load off`)")
    cloud_extra_ms: float = Field(default=0.0, description="the server load the decision used: an added wait (0 when idle or off)")


class Predicted(_Rec):
    """The scheduler's breakdown of the chosen configuration (null where infinite, e.g. an outage);
    further breakdown terms a scheduler adds are kept as they are."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")

    total_ms: float | None = Field(default=None, description="predicted latency")
    bytes: int = Field(default=0, ge=0, description="the payload the decision sends")
    edge_ms: float | None = Field(default=None, description="head on the edge")
    encode_ms: float | None = Field(default=None, description="payload encoding")
    comm_ms: float | None = Field(default=None, description="upload at the given bandwidth")
    rtt_ms: float | None = Field(default=None, description="one RTT when sending")
    decode_ms: float | None = Field(default=None, description="payload decoding on the server")
    cloud_ms: float | None = Field(default=None, description="tail on the server")


class Measured(_Rec):
    """What the request took (ms); a phase it did not have is null."""

    total_ms: float = Field(default=0.0, ge=0, description="the whole request (the SLA's measure)")
    edge_ms: float | None = Field(default=None, description="head incl. normalisation")
    encode_ms: float | None = Field(default=None, description="codec + V2 body + compression")
    upload_ms: float | None = Field(default=None, description="first to last chunk handed to the socket")
    transfer_ms: float | None = Field(default=None, description="HTTP exchange minus server time (until failure on a fallback)")
    cloud_ms: float | None = Field(default=None, description="the server's `janus_server_ms`")
    fallback_ms: float | None = Field(default=None, description="the local tail on a fallback")


class LinkRecord(_Rec):
    """The shaped uplink during the upload (runs with ``--trace``)."""

    trace_mbps: float | None = Field(default=None, description="the trace at send time")
    trace_mean_mbps: float | None = Field(default=None, description="the trace's mean over the upload")
    achieved_mbps: float | None = Field(default=None, description="bytes handed to the socket / upload time")


class FallbackRecord(_Rec):
    """Why the tail ran on the edge."""

    kind: str = Field(description="`unreachable`, `timeout`, `dropped`, `server-error`, `protocol`, `unauthorized`, …")
    reason: str = Field(description="one line: what happened")
    ran_locally: str = Field(description="the segment range run on the edge")


class ProbeRecord(_Rec):
    """The probe that followed the request (not in its ``total_ms``)."""

    bytes: int = Field(ge=0, description="probe body size")
    ok: bool = Field(description="the server answered")
    ms: float = Field(ge=0, description="how long it took")
    sample_mbps: float | None = Field(default=None, description="the bandwidth sample it gave")
    estimate_mbps: float = Field(description="the estimate after it")
    kind: str | None = Field(default=None, description="on failure: the exchange's failure kind")
    reason: str | None = Field(default=None, description="on failure: what happened")


class Waits(_Rec):
    """The pipeline's waits a pipelined frame's decision was given (ms from its arrival)."""

    edge_ms: float = Field(ge=0, description="until the edge starts it")
    uplink_ms: float = Field(ge=0, description="until the uplink is predicted free (may be large in an outage)")


class RequestRecord(_Rec):
    """One request of a run: the run log's line, built by the edge and read back by replay, the
    report, the demo and the CLI. Every key is always written (null when it does not apply)."""

    id: int = Field(ge=0, description="request number: 0, 1, 2, … in the log's order (checked on reading)")
    kind: Literal["request", "probe"] = Field(default="request", description="`probe`: a pipelined run's probe, in its place "
                                                                      "among the observations (no decision)")
    t: float = Field(ge=0, description="seconds since the runtime started (the controller's clock)")
    source: str | None = Field(default=None, description="frame source (file, `synthetic:i`, `video#i`)")
    sla_ms: float = Field(gt=0, description="the SLA")
    decision: DecisionRecord | None = Field(default=None, description="what ran (null when the request failed before deciding)")
    controller: ControllerState | None = Field(default=None, description="the state the decision was made from")
    predicted: Predicted | None = Field(default=None, description="the scheduler's breakdown")
    measured: Measured = Field(default_factory=Measured.model_construct, description="the measured phases")
    bytes: int = Field(default=0, ge=0, description="body bytes on the wire (after compression); 0 when nothing was sent")
    raw_bytes: int | None = Field(default=None, ge=0, description="body bytes before compression")
    observations: list[Observation] = Field(
        default_factory=list,
        description="what the controller was told after this request, in order, the probe's included "
                    "(`janus_deploy.schedule.controller.Observation`)")
    link: LinkRecord | None = Field(default=None, description="with `--trace`: the shaped link; else null")
    server: dict[str, float] | None = Field(default=None, description="the answer's timing parameters (`janus_*_ms`); "
                                                                      "null unless the server answered")
    fallback: FallbackRecord | None = Field(default=None, description="null, or why the tail ran locally")
    probe: ProbeRecord | None = Field(default=None, description="the probe that followed this request, else null")
    config_error: str | None = Field(default=None, description="on the first 401/403 only: what to fix")
    top1: int | None = Field(default=None, ge=0, description="argmax of the logits (null on an error)")
    violated: bool | None = Field(default=None, description="measured total > SLA")
    error: str | None = Field(default=None, description="a per-request error message (then no logits)")
    stream: str | None = Field(default=None, description="pipelined runs: the camera's name (else null)")
    seq: int | None = Field(default=None, ge=0, description="pipelined runs: the frame's number within its camera")
    arrival_t: float | None = Field(default=None, ge=0, description="pipelined runs: the capture time (`t` is the decision's)")
    outcome: Literal["answered", "fallback", "dropped"] | None = Field(
        default=None, description="pipelined runs: what became of the frame (each frame has exactly one)")
    drop_reason: str | None = Field(default=None, description="a dropped frame: `superseded`, `queue-full`, `late`, `busy` or `error`")
    waits: Waits | None = Field(default=None, description="pipelined runs: the waits the decision was given")
    obs_before: int | None = Field(default=None, ge=0, description="pipelined runs: observations the controller had seen at the decision")
    obs_index: int | None = Field(default=None, ge=0, description="pipelined runs: the global index of this record's first observation")

    @field_validator("observations")
    @classmethod
    def _known_kinds(cls, v: list[Observation]) -> list[Observation]:
        for k, o in enumerate(v):
            if o.kind not in OBSERVATION_KINDS:
                raise ValueError(f"[{k}].kind is {o.kind!r}, not one of {', '.join(OBSERVATION_KINDS)}")
        return v

    @property
    def replayed(self) -> bool:
        """A controller decision replay re-makes (not forced, not failed before deciding)."""
        return self.decision is not None and not self.decision.forced

    def to_json(self) -> str:
        """The record's log line (strict JSON, no newline)."""
        return dumps_line(self.model_dump())

    @classmethod
    def from_json(cls, line: str | builtins.bytes, where: str = "record") -> RequestRecord:
        """A record from its log line; :class:`RunLogError` naming ``where`` and the field otherwise."""
        try:
            return cls.model_validate_json(line)
        except ValidationError as exc:
            raise RunLogError(_first_error(exc, where)) from None


class RunLogHeader(_Rec):
    """The run log's first line: what replay needs to rebuild the run's controller."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")

    kind: Literal["janus-deploy/run-log"] = "janus-deploy/run-log"
    format_version: int = RUN_LOG_VERSION
    plan_hash: str = Field(pattern=r"^[0-9a-f]{16,64}$", description="the plan the run served")
    sla_ms: float = Field(gt=0)
    codec: str
    codecs: list[str] | None = Field(default=None, description="the codec set janus-deploy chose from (null: `codec` only)")
    server: str
    controller: dict[str, Any] = Field(description="every `ControllerConfig` setting the run used")
    edge_profile: dict[str, Any]
    cloud_profile: dict[str, Any]
    accuracy: dict[str, Any] | None = None

    def to_json(self) -> str:
        return dumps_line(self.model_dump())


class RunLogEnd(_Rec):
    """The run log's last line: how many records precede it and the sha256 of every byte before it."""

    kind: Literal["janus-deploy/run-log-end"] = "janus-deploy/run-log-end"
    records: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


@dataclasses.dataclass
class RunLog:
    """A run log read back: its header, its records and its trailer (None when ``partial``
    reading found none)."""

    header: RunLogHeader
    records: list[RequestRecord]
    end: RunLogEnd | None = None

    @property
    def complete(self) -> bool:
        return self.end is not None


def _first_error(exc: ValidationError, where: str) -> str:
    """pydantic's first problem as ``WHERE: field.path problem`` (:func:`first_error`'s wording)."""
    line = first_error(exc, "\0")
    return line.replace("\0.", f"{where}: ", 1).replace("\0", where)


# --------------------------------------------------------------------------- writing


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def dumps_line(rec: dict[str, Any]) -> str:
    """One strict-JSON log line (non-finite numbers become null)."""
    return json.dumps(_clean(rec), default=str, allow_nan=False)


class RunLogWriter:
    """Writes a run log to a text stream: the header, then records (ids checked to follow on),
    then :meth:`end`'s trailer. A write error stops the log (:attr:`error` says why; the run goes on)."""

    def __init__(self, f: IO[str] | None) -> None:
        self.f = f
        self.error: str | None = None
        self.records = 0
        self._sha = hashlib.sha256()
        self._ended = False

    def _line(self, text: str) -> None:
        if self.f is None or self.error is not None:
            return
        line = text + "\n"
        try:
            self.f.write(line)
            self.f.flush()
        except OSError as exc:
            self.error = exc.strerror or str(exc)
            return
        self._sha.update(line.encode("utf-8"))

    def header(self, header: RunLogHeader) -> None:
        self._line(header.to_json())

    def record(self, rec: RequestRecord) -> None:
        if rec.id != self.records:
            raise RunLogError(f"record id {rec.id} written as record {self.records}: ids must follow on from 0")
        self._line(rec.to_json())
        self.records += 1

    def end(self) -> None:
        """The trailer (once; not after a write error: a broken log must not look complete)."""
        if self._ended:
            return
        self._ended = True
        if self.error is None:
            self._line(RunLogEnd(records=self.records, sha256=self._sha.hexdigest()).model_dump_json())


# --------------------------------------------------------------------------- reading


def _lines(f: IO[bytes], p: Path, first_limit: int, limit: int) -> typing.Iterator[tuple[int, bytes]]:
    """(line number, line) with at most ``limit`` bytes read per line (``first_limit`` for the first)."""
    n = 0
    while True:
        cap = first_limit if n == 0 else limit
        raw = f.readline(len(HEADER_PREFIX)) if n == 0 else b""
        if n == 0 and raw and not raw.endswith(b"\n") and raw != HEADER_PREFIX:
            raise RunLogError(f"{p}:1 does not start as a run-log header ({HEADER_PREFIX.decode()}…); not a run log "
                              "janus-deploy wrote")
        if not raw.endswith(b"\n"):
            raw += f.readline(cap + 1 - len(raw))
        if not raw:
            return
        n += 1
        if len(raw) > cap:
            raise RunLogError(f"{p}:{n} is longer than {cap:,} bytes (a junk line?); not a run log janus-deploy wrote")
        yield n, raw


def read_run_log(path: str | Path, *, partial: bool = False) -> RunLog:
    """The header, request records and trailer of a run log, every line checked against its
    model and the file against its trailer (see the module docstring); :class:`RunLogError` with
    one line naming the file, line and field otherwise. ``partial``: a log without a trailer (a
    run that was killed) is read as far as it goes; ids and lines are still checked."""
    p = Path(path)
    if not p.is_file():
        raise RunLogError(f"run log {p} does not exist (write one with `janus-deploy run --log FILE` or the demo)")
    header: RunLogHeader | None = None
    end: RunLogEnd | None = None
    records: list[RequestRecord] = []
    sha = hashlib.sha256()
    with p.open("rb") as f:
        for i, raw in _lines(f, p, MAX_HEADER_BYTES, MAX_RECORD_BYTES):
            where = f"{p}:{i}"
            if end is not None:
                raise RunLogError(f"{where}: a line after the run log's trailer (appended or concatenated logs?)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RunLogError(f"{where} is not UTF-8 text (byte {exc.start}; a compressed or binary file?)") from None
            if not raw.endswith(b"\n"):
                raise RunLogError(f"{where}: the last line is cut off (no newline): the log is truncated")
            doc = _json(line, where)
            if header is None:
                header = _header(doc, line, where, p)
            elif doc.get("kind") not in (None, "request", "probe"):
                end = _end(doc, line, where, records, sha)
                continue
            else:
                rec = RequestRecord.from_json(line, f"{where}: record {len(records)}")
                _check_order(rec, records, where)
                records.append(rec)
            sha.update(raw)
    if header is None:
        raise RunLogError(f"{p} is empty, not a run log (write one with `janus-deploy run --log FILE`)")
    if end is None and not partial:
        raise RunLogError(f"{p} ends after {len(records)} records without its trailer: the log is truncated (or the run "
                          "was killed); `replay --partial` replays what is there")
    return RunLog(header, records, end)


def _json(line: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RunLogError(f"{where} is not JSON ({getattr(exc, 'msg', 'nested too deep')})") from None
    if not isinstance(doc, dict):
        raise RunLogError(f"{where} is not a JSON object (a {type(doc).__name__})")
    return doc


def _header(doc: dict[str, Any], line: str, where: str, p: Path) -> RunLogHeader:
    if doc.get("kind") != RUN_LOG_KIND:
        raise RunLogError(f"{p} has no run-log header line (kind {RUN_LOG_KIND!r}) first; was it written by "
                          "`janus-deploy run --log`?")
    version = doc.get("format_version")
    if version != RUN_LOG_VERSION:
        old = " (written before record ids and the trailer; re-record the run with this janus-deploy)" if version == 1 else ""
        raise RunLogError(f"{p}: run-log format {repr(version)[:20]} is not supported{old}; this janus-deploy reads "
                          f"format {RUN_LOG_VERSION}")
    try:
        return RunLogHeader.model_validate_json(line)
    except ValidationError as exc:
        raise RunLogError(_first_error(exc, f"{where}: header")) from None


def _end(doc: dict[str, Any], line: str, where: str, records: list[RequestRecord], sha: Any) -> RunLogEnd:
    if doc.get("kind") == RUN_LOG_KIND:
        raise RunLogError(f"{where}: a second run-log header (concatenated logs?)")
    if doc.get("kind") != RUN_LOG_END_KIND:
        raise RunLogError(f"{where}: kind {str(doc.get('kind'))[:60]!r} is not a run-log line")
    try:
        end = RunLogEnd.model_validate_json(line)
    except ValidationError as exc:
        raise RunLogError(_first_error(exc, f"{where}: trailer")) from None
    if end.records != len(records):
        raise RunLogError(f"{where}: the trailer counts {end.records} records, the log holds {len(records)}: "
                          "records were removed or added")
    if end.sha256 != sha.hexdigest():
        raise RunLogError(f"{where}: the log's checksum does not match its lines (sha256 {sha.hexdigest()[:12]}…, the "
                          f"trailer says {end.sha256[:12]}…): a line was changed after the run")
    return end


def _check_order(rec: RequestRecord, before: list[RequestRecord], where: str) -> None:
    """Ids follow on from 0, the clock never runs back, the observations come after the request,
    and no non-probe transfer carried more than the request sent."""
    if rec.id != len(before):
        raise RunLogError(f"{where}: record id {rec.id} where {len(before)} was expected: records are missing, "
                          "reordered or duplicated")
    if before and rec.t < before[-1].t and rec.stream is None and rec.kind == "request":  # pipelined: completion order
        raise RunLogError(f"{where}: record {rec.id}: t {rec.t} is before the previous record's {before[-1].t}")
    for k, o in enumerate(rec.observations):
        if not o.t >= rec.t:
            raise RunLogError(f"{where}: record {rec.id}: observations[{k}].t {o.t} is before the request (t {rec.t})")
        if o.kind == "transfer" and not o.probe and o.nbytes > rec.bytes:
            raise RunLogError(f"{where}: record {rec.id}: observations[{k}].nbytes {o.nbytes:g} is more than the "
                              f"request sent ({rec.bytes} bytes)")


# --------------------------------------------------------------------------- the schema, for the docs


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(names) + (" \\| null" if type(None) in args else "")
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if origin is dict:
        return f"object of {_type_name(args[1])}"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "object"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"`{tp.__name__}`"
    return {float: "number", int: "integer", str: "string", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _submodel(tp: Any) -> Any:
    for a in (tp, *typing.get_args(tp)):
        if isinstance(a, type) and (issubclass(a, BaseModel) or dataclasses.is_dataclass(a)):
            return a
        if typing.get_origin(a) is list:
            return _submodel(typing.get_args(a)[0])
    return None


def _rows(model: Any, prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    if isinstance(model, type) and issubclass(model, BaseModel):
        hints = typing.get_type_hints(model)
        for name, info in model.model_fields.items():
            tp = hints[name]
            rows.append((prefix + name, _type_name(tp), info.description or ""))
            sub = _submodel(tp)
            if sub is not None:
                many = typing.get_origin(tp) is list or any(typing.get_origin(a) is list for a in typing.get_args(tp))
                rows += _rows(sub, f"{prefix}{name}{'[]' if many else ''}.")
    else:  # a stdlib dataclass (Observation): its fields and types, its docstring is its meaning
        hints = typing.get_type_hints(model)
        for f in dataclasses.fields(model):
            kinds = f" ({', '.join(OBSERVATION_KINDS)})" if model is Observation and f.name == "kind" else ""
            rows.append((prefix + f.name, _type_name(hints[f.name]), f"see `{model.__name__}`{kinds}"))
    return rows


def schema_markdown() -> str:
    """The request record's table for ``docs/runtime.md`` (``tools/gen_docs.py`` writes it there)."""
    lines = [f"Generated from `janus_deploy.schedule.runlog.RequestRecord` (format {RUN_LOG_VERSION}) by "
             "`tools/gen_docs.py`; do not edit by hand.", "", "| key | type | meaning |", "|---|---|---|"]
    for key, tp, desc in _rows(RequestRecord, ""):
        lines.append(f"| `{key}` | {tp} | {desc} |")
    return "\n".join(lines)


__all__ = ["Waits", "ControllerState", "DecisionRecord", "FallbackRecord", "LinkRecord", "MAX_HEADER_BYTES", "MAX_RECORD_BYTES",
           "Measured", "Predicted", "ProbeRecord", "RUN_LOG_END_KIND", "RUN_LOG_KIND", "RUN_LOG_VERSION", "RequestRecord",
           "RunLog", "RunLogEnd", "RunLogError", "RunLogHeader", "RunLogWriter", "dumps_line", "read_run_log",
           "schema_markdown"]
