"""The decision-table file: everything libjanus (the C decision core) needs, without a parser.

``janus-deploy export-table`` writes it with :func:`write_table`; the format (little-endian,
a 64-byte header with a magic number, a version and a CRC-32, then fixed-size sections) is
documented in ``docs/decision-table.md``. What goes in: the levels (edge profile order, so
``level_index`` means the same in C and Python), the candidate splits, per (level, split) the edge
head and cloud tail latency, per codec the payload bytes with encode (edge) and decode (cloud)
times, the accuracy per level, the controller's settings and, with a plan, the V2 model name of
every (level, split) and the engine file of every segment the edge runs. With the codec
dimension (``codecs``: the set janus-deploy chooses the codec from, and an accuracy table with
codec cells) two optional sections follow: ``CSET`` (the set, codec indices in its order) and
``ACEL`` (accuracy per codec × level × split, NaN where the level's own applies).

The file holds the profiles' own numbers (float64, unrounded); libjanus derives the cost tables
from them with the same operations as :class:`~janus_deploy.schedule.scheduler.Scheduler`, so both
decide identically.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus_deploy import JanusError
from janus_deploy.levels import POLICIES, LevelKey, edge_segment_count
from janus_deploy.profile.table import Profile
from janus_deploy.schedule.accuracy_view import accuracy_by_level
from janus_deploy.schedule.controller import RTT_ESTIMATES, SYSTEMS, ControllerConfig, ControllerError
from janus_deploy.schedule.estimators import ESTIMATORS, make_estimator
from janus_deploy.schedule.scheduler import Scheduler, SchedulerError
from janus_deploy.wire.codecs import CODECS
from janus_deploy.wire.v2 import model_name

MAGIC = b"\x89JDT\r\n\x1a\n"
VERSION = 1
HEADER_BYTES = 64
SECTION_BYTES = 24
CRC_OFFSET = 24
NONE = 0xFFFFFFFF
FLAG_NAMES = 1
CODEC_LOSSLESS, CODEC_ZSTD, CODEC_FRAME, CODEC_TOKENS = 1, 2, 4, 8
METRICS = ("none", "accuracy", "agreement")

_INFO = struct.Struct("<9I2i2I4I3I")  # 80 bytes
_CTRL = struct.Struct("<8dq8I2I")  # 112 bytes
_LEVEL = struct.Struct("<Iidd2I")  # 32 bytes
_CODEC = struct.Struct("<2I")
_PAYLOAD = struct.Struct("<Qdd")
_SECTION = struct.Struct("<4sIQQ")


class TableFileError(JanusError):
    """A decision table cannot be written from these inputs, or a file is not a valid table."""


class _Strings:
    def __init__(self) -> None:
        self.data = bytearray()
        self.index: dict[str, int] = {}

    def add(self, s: str | None) -> int:
        if s is None:
            return NONE
        if "\0" in s:
            raise TableFileError(f"string {s!r} holds a NUL character")
        if s not in self.index:
            self.index[s] = len(self.data)
            self.data += s.encode() + b"\0"
        return self.index[s]


def _engine_files(manifest: Any, engines: str | Path | None) -> list[list[str]]:
    """Engine file of every (plan level, segment): the engine directory's (``engines.json``) when
    given, else the plan's own segment graphs (what the ORT backend runs)."""
    if engines is None:
        return [[seg.file for seg in lv.segments] for lv in manifest.plan_levels]
    from janus_deploy.backends.base import read_engines_file

    data = read_engines_file(engines, manifest)
    files: dict[tuple[int, int], str] = {}
    for e in data.get("engines", []):
        for li in e.get("levels", [e.get("level")]):
            files[(li, e["segment"])] = e["file"]
    out = []
    for lv in manifest.plan_levels:
        li, row = lv.index, []
        for si in range(lv.num_segments):
            if (li, si) not in files:
                raise TableFileError(f"{engines}/engines.json has no engine for level {li}, segment {si}")
            row.append(files[(li, si)])
        out.append(row)
    return out


def build_table(edge: Profile, cloud: Profile, *, accuracy: Any = None, plan: Any = None,
                engines: str | Path | None = None, codec: str | None = None, sla_ms: float = 300.0,
                frame_bytes: int | None = None, baseline_level: float | None = None,
                controller: ControllerConfig | None = None, codecs: Any = None) -> bytes:
    """The table file's bytes (see the module docstring). ``plan``: a Manifest or plan directory
    (model names and engine files); ``engines``: an engine directory whose files to name instead of
    the plan's graphs. The other arguments are the Scheduler's and the controller's."""
    try:
        sched = Scheduler(edge, cloud, accuracy, "janus-deploy", codec, sla_ms, baseline_level, frame_bytes,
                          codecs=codecs)
        ctrl = (controller or ControllerConfig()).for_trace(None)  # an unresolved cold start: the default
    except (SchedulerError, ControllerError) as exc:
        raise TableFileError(str(exc)) from None
    acc, metric = accuracy_by_level(accuracy)
    n, cands = edge.num_blocks, list(edge.candidates)
    nseg = len(cands) - 1
    codecs = sorted(set(edge.codec_names) & set(cloud.codec_names))
    manifest = None
    if plan is not None:
        from janus_deploy.plan.manifest import Manifest
        from janus_deploy.profile.measure import check_profile_for_plan

        manifest = plan if isinstance(plan, Manifest) else Manifest.load(plan)
        for role, prof in (("edge profile", edge), ("cloud profile", cloud)):
            check_profile_for_plan(prof, manifest, role)
        files = _engine_files(manifest, engines)
    elif engines is not None:
        raise TableFileError("--engines names engine files of a plan: give --plan too")

    strs = _Strings()
    levels, tokens, head, tail, models, engs = [], [], [], [], [], []
    for li, lv in enumerate(edge.levels):
        cj = cloud.level_index(lv.policy, lv.alpha)
        pl = -1
        if manifest is not None:
            try:
                pl = manifest.find_level(lv.alpha, lv.policy)
            except JanusError as exc:
                raise TableFileError(f"the profiles' level {lv.label} is not in the plan: {exc}") from None
        a = acc.get(LevelKey.of(lv.policy, lv.alpha))
        levels.append(_LEVEL.pack(POLICIES.index(lv.policy), pl, float(lv.alpha),
                                  math.nan if a is None else float(a), strs.add(lv.label), 0))
        tokens.extend(lv.tokens)
        for s in cands:
            head.append(edge.head_ms(li, s))
            tail.append(cloud.tail_ms(cj, s))
            models.append(strs.add(model_name(pl, s)) if pl >= 0 and s <= n else NONE)
        engs.extend(strs.add(files[pl][si]) if pl >= 0 else NONE for si in range(nseg))
    payload = bytearray()
    for c in codecs:
        for li, lv in enumerate(edge.levels):
            cj = cloud.level_index(lv.policy, lv.alpha)
            for s in cands:
                if s not in lv.payload[c]:  # a frame codec: split 0 only (CODC flags say so)
                    payload += _PAYLOAD.pack(0, 0.0, 0.0)
                    continue
                e = edge.payload(li, s, c)
                payload += _PAYLOAD.pack(e.bytes, e.encode_ms, cloud.payload(cj, s, c).decode_ms)
    codec_rec = b"".join(_CODEC.pack(strs.add(c), _codec_flags(c)) for c in codecs)
    extra = _codec_sections(sched, edge, codecs, accuracy, metric, cands)
    const = sched.baseline_level_index
    m = edge.model
    info = _INFO.pack(n, m.embed_dim, m.num_tokens, m.num_prefix_tokens, m.img_size[0], m.img_size[1],
                      len(edge.levels), len(cands), len(codecs), codecs.index(sched.codec),
                      -1 if const is None else const, FLAG_NAMES if manifest is not None else 0,
                      METRICS.index(metric), strs.add(m.name), strs.add(edge.plan_hash or cloud.plan_hash),
                      strs.add(edge.device_name), strs.add(cloud.device_name), 0, 0, 0)
    ewma_alpha = make_estimator("ewma", 1.0).alpha  # type: ignore[attr-defined]  # make_estimator is typed as the protocol; the ewma one has alpha
    ctl = _CTRL.pack(float(sla_ms), ctrl.cold_start_mbps, ewma_alpha, ctrl.margin, ctrl.rtt_cold_ms,
                     ctrl.probe_interval_s or 0.0, ctrl.breaker_open_s, ctrl.breaker_max_open_s,
                     -1 if frame_bytes is None else int(frame_bytes), SYSTEMS.index(ctrl.system),
                     ESTIMATORS.index(ctrl.estimator), ctrl.window, int(ctrl.deflate), int(ctrl.rtt_fixed),
                     ctrl.rtt_window, RTT_ESTIMATES.index(ctrl.rtt_estimate), ctrl.breaker_failures, 0, 0)
    sections = [
        (b"INFO", _INFO.size, info, 1),
        (b"CTRL", _CTRL.size, ctl, 1),
        (b"CAND", 4, struct.pack(f"<{len(cands)}I", *cands), len(cands)),
        (b"ESEG", 4, struct.pack(f"<{len(cands)}I", *(edge_segment_count(s, n, cands) for s in cands)), len(cands)),
        (b"LEVL", _LEVEL.size, b"".join(levels), len(levels)),
        (b"TOKN", 4, struct.pack(f"<{len(tokens)}I", *tokens), len(tokens)),
        (b"HEAD", 8, struct.pack(f"<{len(head)}d", *head), len(head)),
        (b"TAIL", 8, struct.pack(f"<{len(tail)}d", *tail), len(tail)),
        (b"CODC", _CODEC.size, codec_rec, len(codecs)),
        (b"PAYL", _PAYLOAD.size, bytes(payload), len(payload) // _PAYLOAD.size),
        (b"MODL", 4, struct.pack(f"<{len(models)}I", *models), len(models)),
        (b"ENGS", 4, struct.pack(f"<{len(engs)}I", *engs), len(engs)),
        (b"STRS", 1, bytes(strs.data), len(strs.data)),
        *extra,
    ]
    return _assemble(sections)


def _codec_flags(name: str) -> int:
    spec = CODECS.get(name)
    if spec is None:
        return 0
    return ((CODEC_LOSSLESS if spec.lossless else 0) | (CODEC_ZSTD if spec.compress == "zstd" else 0)
            | (CODEC_FRAME if spec.kind == "frame" else CODEC_TOKENS))


def _codec_sections(sched: Scheduler, edge: Profile, codecs: list[str], accuracy: Any, metric: str,
                    cands: list[int]) -> list[tuple[bytes, int, bytes, int]]:
    """CSET and ACEL when the scheduler has the codec dimension (see the module docstring)."""
    from janus_deploy.schedule.accuracy_view import accuracy_by_option

    out = []
    if len(sched.codecs) > 1:
        idx = [codecs.index(c) for c in sched.codecs]
        out.append((b"CSET", 4, struct.pack(f"<{len(idx)}I", *idx), len(idx)))
    cells = accuracy_by_option(accuracy, metric)
    if cells:
        vals = []
        for c in codecs:
            for lv in edge.levels:
                key = LevelKey.of(lv.policy, lv.alpha)
                vals.extend(cells.get((key, c, s), math.nan) for s in cands)
        out.append((b"ACEL", 8, struct.pack(f"<{len(vals)}d", *vals), len(vals)))
    return out


def _assemble(sections: list[tuple[bytes, int, bytes, int]]) -> bytes:
    offset = HEADER_BYTES + SECTION_BYTES * len(sections)
    directory, blobs = bytearray(), bytearray()
    for tag, elem, data, count in sections:
        pad = (-(offset + len(blobs))) % 8
        blobs += b"\0" * pad
        directory += _SECTION.pack(tag, elem, offset + len(blobs), count)
        blobs += data
    total = offset + len(blobs)
    header = MAGIC + struct.pack("<IIQIIQ", VERSION, HEADER_BYTES, total, 0, len(sections), HEADER_BYTES) + b"\0" * 24
    out = bytearray(header + directory + blobs)
    struct.pack_into("<I", out, CRC_OFFSET, zlib.crc32(bytes(out)))  # computed with the field at 0
    return bytes(out)


def write_table(path: str | Path, edge: Profile, cloud: Profile, **kwargs: Any) -> Path:
    """Write the table of :func:`build_table` to ``path`` (parent folders created)."""
    data = build_table(edge, cloud, **kwargs)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@dataclass(frozen=True)
class TableHeader:
    version: int
    size: int
    crc32: int
    sections: dict[str, tuple[int, int, int]]  # tag -> (entry bytes, offset, count)


def read_header(data: bytes) -> TableHeader:
    """Check the magic number, version, size and checksum of a table file's bytes."""
    if len(data) < HEADER_BYTES or data[:8] != MAGIC:
        raise TableFileError("not a janus decision table (bad magic number or too short)")
    version, hbytes, size, crc, nsec, sec_off = struct.unpack_from("<IIQIIQ", data, 8)
    if version != VERSION:
        raise TableFileError(f"decision table format version {version}; this janus-deploy writes version {VERSION}")
    if size != len(data):
        raise TableFileError(f"decision table is {'truncated' if size > len(data) else 'too long'}: "
                             f"the header says {size} bytes, there are {len(data)}")
    if zlib.crc32(data[:CRC_OFFSET] + b"\0\0\0\0" + data[CRC_OFFSET + 4:]) != crc:
        raise TableFileError("decision table checksum mismatch: the file is corrupted")
    secs = {}
    for i in range(nsec):
        tag, elem, off, count = _SECTION.unpack_from(data, sec_off + i * SECTION_BYTES)
        secs[tag.decode("ascii", "replace")] = (elem, off, count)
    return TableHeader(version, size, crc, secs)


__all__ = ["MAGIC", "TableFileError", "TableHeader", "VERSION", "build_table", "read_header", "write_table"]
