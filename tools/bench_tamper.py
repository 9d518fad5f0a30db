"""`janus-deploy replay` on tampered run logs (issue 21 item 6): the table in docs/benchmarks.md.

Builds a run log of N requests (default: the preset ViT-L/16-384 profiles' controller over a
bandwidth that swings between 5 and 80 Mbit/s, written through the runtime's own
:class:`~janus_deploy.schedule.runlog.RunLogWriter`; or ``--log FILE``, e.g. the demo's
``requests.jsonl``), checks that it replays 100 % with rc 0, then replays each tampered copy in
:data:`CASES` through the CLI and prints one row per case: the exit code, whether a traceback
or a false "100 %" came out, and the one line replay printed. A case passes when its rc is 2,
without a traceback, and its line names the problem (``expect``). Exits 1 when any case fails.

    PYTHONPATH=. .venv/bin/python tools/bench_tamper.py [--records 200] [--log FILE] [--markdown]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import re
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

EDGE_PRESET = "vit_large_patch16_384-jetson-orin-nano"
CLOUD_PRESET = "vit_large_patch16_384-v100"
SLA_MS = 200.0
RTT_MS = 10.0
JUNK_BYTES = 20 * 1024 * 1024
HUNDRED = re.compile(r"100\.0 ?%")


# --------------------------------------------------------------------------- the untampered log


def bandwidth_mbps(i: int) -> float:
    """The link the synthetic run sees at request ``i``: 5..80 Mbit/s, a period of ~63 requests."""
    return 5.0 + 75.0 * (0.5 + 0.5 * math.sin(i / 10.0))


def make_log(path: str | Path, records: int = 200) -> Path:
    """A run log as the edge writes it, of a run driven by the real controller on the presets:
    per request decide, "send" the decision's payload over :func:`bandwidth_mbps`, observe it."""
    from janus_deploy.profile.table import load_preset
    from janus_deploy.schedule.controller import ControllerConfig, Observation, build_controller
    from janus_deploy.schedule.runlog import ControllerState, DecisionRecord, Predicted, RequestRecord, RunLogHeader, RunLogWriter

    edge, cloud = load_preset(EDGE_PRESET), load_preset(CLOUD_PRESET)
    config = ControllerConfig(rtt_cold_ms=RTT_MS, probe_interval_s=1.0).for_trace(None)
    ctrl = build_controller(edge, cloud, config, sla_ms=SLA_MS)
    n_blocks = ctrl.deploy.n
    header = RunLogHeader(plan_hash=hashlib.sha256(b"bench_tamper").hexdigest(), sla_ms=SLA_MS,
                          codec=ctrl.deploy.codec, server="http://127.0.0.1:8000", controller=ctrl.config.to_dict(),
                          edge_profile=edge.to_dict(), cloud_profile=cloud.to_dict(), accuracy=None)
    p = Path(path)
    t = 0.0
    with p.open("w") as f:
        w = RunLogWriter(f)
        w.header(header)
        for i in range(records):
            t = round(t, 6)
            choice = ctrl.decide(t)
            d = choice.decision
            bd = d.breakdown
            rec = RequestRecord(
                id=i, t=t, source=f"synthetic:{i}", sla_ms=SLA_MS,
                decision=DecisionRecord(alpha=float(d.alpha), policy=d.policy, level=d.level_index,
                                        profile_level=d.level_index, split=d.split, label=d.label,
                                        model=f"janus_L{d.level_index}_S{d.split}" if d.split <= n_blocks else None,
                                        codec=ctrl.deploy.codec, meets_sla=bool(d.meets_sla)),
                controller=ControllerState(**choice.state()),
                predicted=Predicted.model_construct(**{k: (v if math.isfinite(v) else None) for k, v in bd.items()},
                                                    total_ms=d.predicted_ms if math.isfinite(d.predicted_ms) else None,
                                                    bytes=d.bytes),
                bytes=d.bytes, raw_bytes=d.bytes or None)
            lat = bd["edge_ms"] + bd["encode_ms"] + bd["decode_ms"] + bd["cloud_ms"]
            if d.bytes:
                tx = d.bytes * 8 / (bandwidth_mbps(i) * 1e6)
                lat += tx * 1e3 + RTT_MS
                obs = Observation(round(t + lat / 1e3, 6), "transfer", nbytes=float(d.bytes), seconds=tx, rtt_ms=RTT_MS,
                                  server_ok=True)
                ctrl.observe(obs)
                rec.observations.append(obs)
                rec.server = {"janus_server_ms": round(bd["decode_ms"] + bd["cloud_ms"], 3)}
            elif ctrl.probe_due(t + lat / 1e3):
                obs = Observation(round(t + lat / 1e3, 6), "rate", mbps=bandwidth_mbps(i), rtt_ms=RTT_MS, server_ok=True,
                                  probe=True)
                ctrl.observe(obs)
                rec.observations.append(obs)
            rec.measured.total_ms = round(lat, 3)
            rec.violated = lat > SLA_MS
            rec.top1 = i % 10
            w.record(rec)
            t += lat / 1e3
        w.end()
    return p


# --------------------------------------------------------------------------- tampering

Lines = list[bytes]  # the log's lines, each with its newline; [0] the header, [-1] the trailer


def _json_edit(line: bytes, fn: Callable[[dict], None]) -> bytes:
    doc = json.loads(line)
    fn(doc)
    return json.dumps(doc).encode() + b"\n"


def _record(lines: Lines, i: int, fn: Callable[[dict], None]) -> Lines:
    out = list(lines)
    out[1 + i] = _json_edit(out[1 + i], fn)
    return out


def _header(lines: Lines, fn: Callable[[dict], None]) -> Lines:
    return [_json_edit(lines[0], fn), *lines[1:]]


def _resealed(lines: Lines) -> Lines:
    """A forger's log: the trailer recomputed over the edited lines (count and sha256)."""
    body = lines[:-1]
    end = {"kind": "janus-deploy/run-log-end", "records": len(body) - 1,
           "sha256": hashlib.sha256(b"".join(body)).hexdigest()}
    return [*body, json.dumps(end).encode() + b"\n"]


def _renumbered(lines: Lines) -> Lines:
    recs = [_json_edit(ln, lambda d, k=k: d.update(id=k)) for k, ln in enumerate(lines[1:-1])]
    return [lines[0], *recs, lines[-1]]


def _first_sent(lines: Lines, start: int = 0) -> int:
    """The first record from ``start`` on that sent something (has a transfer observation)."""
    for k, ln in enumerate(lines[1:-1]):
        if k >= start and any(o["kind"] == "transfer" for o in json.loads(ln)["observations"]):
            return k
    raise SystemExit("the log has no transfer to tamper with")


def _times_1000(d: dict) -> None:
    for o in d["observations"]:
        if o["kind"] == "transfer":
            o["nbytes"] *= 1000


def _times_1000_everywhere(d: dict) -> None:
    _times_1000(d)
    d["bytes"] *= 1000


def _set(path: str, value: object) -> Callable[[dict], None]:
    def fn(d: dict) -> None:
        *head, last = path.split(".")
        node = d
        for k in head:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return fn


def _flip_split(d: dict) -> None:
    d["decision"]["split"] = 25 if d["decision"]["split"] == 0 else 0


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth + b"\n"


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Callable[[Lines], Lines | bytes]
    expect: str  # a fragment of the one line replay must print


MID = 100  # a record in the middle (the default log has 200)

CASES: list[Case] = [
    # records missing, moved, added
    Case("records 50-150 deleted", lambda L: L[:51] + L[152:], "id 151 where 50 was expected"),
    Case("one record deleted (the middle)", lambda L: L[:1 + MID] + L[2 + MID:], f"where {MID} was expected"),
    Case("the first record deleted", lambda L: [L[0], *L[2:]], "id 1 where 0 was expected"),
    Case("the last record deleted", lambda L: [*L[:-2], L[-1]], "the trailer counts"),
    Case("two records swapped", lambda L: L[:11] + [L[12], L[11]] + L[13:], "id 11 where 10 was expected"),
    Case("the records reversed", lambda L: [L[0], *L[-2:0:-1], L[-1]], "where 0 was expected"),
    Case("a record duplicated", lambda L: L[:1 + MID] + [L[MID]] + L[1 + MID:], f"id {MID - 1} where {MID} was expected"),
    Case("a record's id changed", lambda L: _record(L, MID, _set("id", 7)), f"id 7 where {MID} was expected"),
    Case("records 50-150 deleted, ids renumbered", lambda L: _renumbered(L[:51] + L[152:]), "the trailer counts"),
    Case("two records swapped, ids renumbered, trailer resealed",
         lambda L: _resealed(_renumbered(L[:11] + [L[12], L[11]] + L[13:])), "is before the previous record's"),
    # truncated
    Case("truncated at a line boundary (the trailer cut)", lambda L: L[:-1], "without its trailer"),
    Case("truncated at a line boundary (half the records)", lambda L: L[:1 + MID], "without its trailer"),
    Case("truncated inside a line", lambda L: b"".join(L)[:-40], "cut off"),
    Case("only the header", lambda L: L[:1], "without its trailer"),
    Case("empty file", lambda L: b"", "is empty"),
    # edited after the run
    Case("plan_hash changed", lambda L: _header(L, _set("plan_hash", "0" * 64)), "checksum does not match"),
    Case("SLA changed in the header", lambda L: _header(L, _set("sla_ms", 1000.0)), "checksum does not match"),
    Case("controller margin changed", lambda L: _header(L, _set("controller.margin", 0.0)), "checksum does not match"),
    Case("transfer byte counts x1000", lambda L: _record(L, _first_sent(L), _times_1000), "more than the request sent"),
    Case("transfer byte counts x1000, trailer resealed",
         lambda L: _resealed(_record(L, _first_sent(L), _times_1000)), "more than the request sent"),
    Case("bytes and transfers x1000 (consistent)", lambda L: _record(L, _first_sent(L), _times_1000_everywhere),
         "checksum does not match"),
    Case("a decision's split changed", lambda L: _record(L, MID, _flip_split), "checksum does not match"),
    Case("a record's top1 changed", lambda L: _record(L, MID, _set("top1", 3)), "checksum does not match"),
    Case("CRLF line endings", lambda L: [ln.replace(b"\n", b"\r\n") for ln in L], "checksum does not match"),
    # trailer
    Case("trailer count changed", lambda L: [*L[:-1], _json_edit(L[-1], _set("records", 3))], "the trailer counts 3"),
    Case("trailer sha256 changed", lambda L: [*L[:-1], _json_edit(L[-1], _set("sha256", "f" * 64))],
         "checksum does not match"),
    Case("trailer sha256 not hex", lambda L: [*L[:-1], _json_edit(L[-1], _set("sha256", "xyz"))], "trailer: sha256"),
    Case("trailer twice", lambda L: [*L, L[-1]], "a line after the run log's trailer"),
    Case("a second log appended", lambda L: [*L, *L], "a line after the run log's trailer"),
    # junk
    Case("a 20 MB junk line in the middle", lambda L: L[:1 + MID] + [b"x" * JUNK_BYTES + b"\n"] + L[1 + MID:],
         "longer than 1,048,576 bytes"),
    Case("a 20 MB junk line first", lambda L: [b"x" * JUNK_BYTES + b"\n", *L], "does not start as a run-log header"),
    Case("a 20 MB junk line after the trailer", lambda L: [*L, b"x" * JUNK_BYTES + b"\n"], "longer than 1,048,576 bytes"),
    Case("a 20 MB JSON string in a record", lambda L: _record(L, MID, _set("source", "y" * JUNK_BYTES)),
         "longer than 1,048,576 bytes"),
    Case("a short junk line", lambda L: L[:1 + MID] + [b"hello\n"] + L[1 + MID:], "is not JSON"),
    Case("a blank line", lambda L: L[:1 + MID] + [b"\n"] + L[1 + MID:], "is not JSON"),
    Case("a JSON array line", lambda L: L[:1 + MID] + [b"[1, 2]\n"] + L[1 + MID:], "is not a JSON object"),
    Case("JSON nested 100,000 deep", lambda L: L[:1 + MID] + [_nested(100_000)] + L[1 + MID:], "is not JSON"),
    Case("non-UTF-8 byte", lambda L: [*L[:1 + MID], L[1 + MID].replace(b'"id"', b'"\xffid"'), *L[2 + MID:]], "not UTF-8"),
    Case("gzip-compressed log", lambda L: gzip.compress(b"".join(L)), "does not start as a run-log header"),
    # header
    Case("format 1 header (an old log)", lambda L: _header(L, _set("format_version", 1)), "written before record ids"),
    Case("format 3 header (a newer log)", lambda L: _header(L, _set("format_version", 3)), "run-log format 3 is not supported"),
    Case("no header", lambda L: L[1:], "does not start as a run-log header"),
    Case("header without profiles", lambda L: _resealed(_header(L, _set("edge_profile", KeyError))),
         "header is missing the key 'edge_profile'"),
    # records that are not records
    Case("t = Infinity", lambda L: _record(L, MID, _set("t", math.inf)), f"record {MID}: t"),
    Case("t = NaN", lambda L: _record(L, MID, _set("t", math.nan)), f"record {MID}: t"),
    Case("t a string", lambda L: _record(L, MID, _set("t", "0.5")), f"record {MID}: t"),
    Case("t negative", lambda L: _record(L, MID, _set("t", -1.0)), f"record {MID}: t"),
    Case("key-less decision", lambda L: _record(L, MID, _set("decision", {})), f"record {MID}: decision"),
    Case("decision a list", lambda L: _record(L, MID, _set("decision", [1])), f"record {MID}: decision"),
    Case("alpha null", lambda L: _record(L, MID, _set("decision.alpha", None)), f"record {MID}: decision.alpha"),
    Case("split a string", lambda L: _record(L, MID, _set("decision.split", "3")), f"record {MID}: decision.split"),
    Case("split true", lambda L: _record(L, MID, _set("decision.split", True)), f"record {MID}: decision.split"),
    Case("observations: 5", lambda L: _record(L, MID, _set("observations", 5)), f"record {MID}: observations"),
    Case("observation a number", lambda L: _record(L, MID, _set("observations", [5])), f"record {MID}: observations[0]"),
    Case("observation without t", lambda L: _record(L, _first_sent(L), _set("observations.0.t", KeyError)),
         "observations[0] is missing the key 't'"),
    Case("observation kind unknown", lambda L: _record(L, _first_sent(L), _set("observations.0.kind", "teleport")),
         "observations[0].kind is 'teleport'"),
    Case("observation nbytes a string", lambda L: _record(L, _first_sent(L), _set("observations.0.nbytes", "1e3")),
         "observations[0].nbytes"),
    Case("observation before its request, trailer resealed",
         lambda L: _resealed(_record(L, _first_sent(L, MID), _set("observations.0.t", 0.0))), "is before the request"),
    Case("unknown key in a record", lambda L: _record(L, MID, _set("extra", 1)), f"record {MID}: extra"),
    Case("measured missing total_ms", lambda L: _record(L, MID, _set("measured", [])), f"record {MID}: measured"),
]


# A forger who rewrites the trailer (count and sha256) after editing lines consistently: the
# trailer is an integrity check, not a signature (no key), so these are caught only where the
# records contradict each other, or by replay itself when the decisions no longer follow.
FORGED: list[Case] = [
    Case("records 50-150 deleted, ids renumbered, trailer resealed", lambda L: _resealed(_renumbered(L[:51] + L[152:])), ""),
    Case("bytes and transfers x1000 (consistent), trailer resealed",
         lambda L: _resealed([L[0], *[_json_edit(ln, _times_1000_everywhere) for ln in L[1:-1]], L[-1]]), ""),
    Case("every decision's split changed, trailer resealed",
         lambda L: _resealed([L[0], *[_json_edit(ln, _flip_split) for ln in L[1:-1]], L[-1]]), ""),
    Case("a record's top1 changed, trailer resealed", lambda L: _resealed(_record(L, MID, _set("top1", 3))), ""),
]


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    rc: int
    line: str
    traceback: bool
    false_100: bool
    seconds: float
    peak_mb: float

    def passed(self, expect: str) -> bool:
        return self.rc == 2 and not self.traceback and not self.false_100 and expect in self.line


def replay(path: Path, *extra: str) -> Outcome:
    """``janus-deploy replay PATH`` in this process (the CLI's own error handling), timed, with
    the peak of Python allocations while it ran."""
    from typer.testing import CliRunner

    from janus_deploy.cli.main import app

    tracemalloc.start()
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["replay", str(path), *extra])
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    out = " ".join(r.output.split())
    tb = "Traceback" in r.output or (r.exception is not None and not isinstance(r.exception, SystemExit))
    return Outcome(r.exit_code, out[:300], tb, bool(HUNDRED.search(out)) and r.exit_code == 0 and "partial" not in out,
                   seconds, peak)


def tampered(base: Path, case: Case, out: Path) -> Path:
    lines = base.read_bytes().splitlines(keepends=True)
    data = case.tamper(lines)
    out.write_bytes(data if isinstance(data, bytes) else b"".join(data))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200, help="requests in the synthetic log (>= 160)")
    ap.add_argument("--log", type=Path, help="tamper this run log instead (e.g. runs/demo/requests.jsonl)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown (docs/benchmarks.md)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.log or make_log(Path(tmp) / "base.jsonl", args.records)
        good = replay(base)
        hide = re.compile(re.escape(str(Path(tmp))) + r"/\w+\.jsonl")  # the temporary file's path, as LOG
        print(f"untampered: rc {good.rc}, {good.line[-90:]}", file=sys.stderr)
        if good.rc != 0 or not HUNDRED.search(good.line):
            print("the untampered log does not replay 100 % with rc 0: no baseline to tamper", file=sys.stderr)
            return 1
        rows = []
        for k, case in enumerate(CASES):
            o = replay(tampered(base, case, Path(tmp) / f"case{k}.jsonl"))
            o.line = hide.sub("LOG", o.line)
            rows.append((case, o))
            print(f"[{k + 1}/{len(CASES)}] {case.name}: rc {o.rc}", file=sys.stderr)
        forged = [(c, replay(tampered(base, c, Path(tmp) / f"forged{k}.jsonl"))) for k, c in enumerate(FORGED)]
        for _, o in forged:
            o.line = hide.sub("LOG", o.line)
    failed = [c.name for c, o in rows if not o.passed(c.expect)]
    if args.markdown:
        print("| # | tampered log | rc | replay's line (trimmed) |")
        print("|---|---|---|---|")
        for k, (c, o) in enumerate(rows, 1):
            line = o.line.replace("|", "\\|")
            line = line if len(line) <= 150 else line[:147] + "…"
            print(f"| {k} | {c.name} | {o.rc}{' TRACEBACK' if o.traceback else ''} | {line} |")
    else:
        for c, o in rows:
            print(f"{'ok  ' if o.passed(c.expect) else 'FAIL'} rc {o.rc} {c.name}: {o.line[:160]}")
    print("\nA forger who reseals the trailer (not a signature; reported, not judged):")
    for c, o in forged:
        print(f"- {c.name}: rc {o.rc}{' TRACEBACK' if o.traceback else ''}: {o.line[:160]}")
    junk = [o for c, o in rows if "20 MB" in c.name]
    print(f"\n{len(rows)} tampered logs: {sum(o.rc == 2 for _, o in rows)} rc 2, {sum(o.traceback for _, o in rows)} "
          f"tracebacks, {sum(o.false_100 for _, o in rows)} false \"100 %\", {len(failed)} not as expected; "
          f"untampered: rc {good.rc} in {good.seconds:.2f} s (peak {good.peak_mb:.1f} MB of Python allocations); "
          f"20 MB junk cases: peak {max(o.peak_mb for o in junk):.1f} MB, at most {max(o.seconds for o in junk):.2f} s")
    for name in failed:
        print(f"not as expected: {name}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
