"""Per-request choice of pruning level α and split point s.

Two modes behind one :class:`Scheduler`:

``paper``: the Janus paper's Algorithm 1, exactly. Exponential levels are scanned by increasing
    α; for each α the split minimising ``L = head + x_s·D_M/B + tail`` is taken, with
    ``D_M = 4·D`` bytes per token (fp32 tokens, no ``size`` vector, no compression). The first α
    whose best L meets the SLA wins; if none does, αmax with its fastest split. No RTT, no codec
    cost. *Simplification kept from the paper:* at s = 0 the cost is ``x_0·D_M`` (tokens), although
    the frame is what is actually sent; at s = N+1 nothing is sent.

``janus-deploy`` (default): the latency model adds what a deployment pays: the round-trip time
    (charged whenever anything crosses the network, s ≤ N), the real payload bytes of the chosen
    codec from the profile (the uint8 frame at s = 0), and codec encode (edge) / decode (cloud)
    time. Among the options predicted within ``SLA·(1 − margin)`` it takes the one with the
    highest accuracy (accuracy table; without one, the lowest α), ties going to lower latency;
    if nothing fits, the fastest option overall. An option that another level beats at the same
    split (no less accurate, faster, no more bytes: ``skipped``) is never taken; that rule alone
    could not pick it either, but the skip is explicit and ``skipped`` says which and why.

    With ``codecs`` (several payload codecs) janus-deploy mode chooses (α, s, codec): the table's
    columns are the options (split, codec) in split order, codecs in the order given, a codec
    only where it has a payload (frame codecs at s = 0 only; token codecs at every s ≤ N, the
    raw frame at s = 0, where token codecs with the same compressor share one column, the
    first's), and one device-only column at s = N+1 (codec None). The accuracy of an option is
    the accuracy table's (level, codec, split) cell when it has one (``calibrate --codecs``),
    capped at the level's own, else the level's. Ties go to the first option in (row, column) order. With one codec the
    columns are the candidate splits and every decision is today's.

Janus modes choose only among exponential levels. The baselines (device-only, cloud-only,
mixed) use the profile's constant-policy level (ToMe's r), see :meth:`Scheduler.baseline`.

All (level, split) costs are precomputed as numpy arrays, so :meth:`Scheduler.decide` is a few
vector operations (~10 µs for 30 levels × 15 splits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.levels import LevelKey, config_label
from janus_deploy.profile.dominance import dominated_options
from janus_deploy.profile.table import Profile, ProfileError
from janus_deploy.schedule.accuracy_view import accuracy_by_level, accuracy_by_option, measured_codecs
from janus_deploy.wire.codecs import CODECS

MODES = ("janus-deploy", "paper")
BASELINES = ("device-only", "cloud-only", "mixed")
_RANK_OFFSET = 1e9  # lexicographic (accuracy rank, latency) score; latencies stay far below this


class SchedulerError(JanusError):
    """The scheduler cannot be built from the given profiles / parameters."""


@dataclass(slots=True)
class Decision:
    """One scheduling decision and its predicted latency breakdown (ms)."""

    alpha: float
    policy: str
    level_index: int  # index into the profiles' ``levels``
    split: int
    predicted_ms: float
    meets_sla: bool
    breakdown: dict[str, float]  # edge_ms, encode_ms, comm_ms, rtt_ms, decode_ms, cloud_ms
    bytes: int = 0  # what is actually sent at this split: the wire codec's payload, or the frame at s = 0
    accuracy: float | None = None
    codec: str | None = None  # the payload codec sent (None: device only, nothing is sent)

    @property
    def label(self) -> str:
        """``"0.24@5"`` for α levels, ``"r23@25"`` for the constant policy (:func:`config_label`)."""
        return config_label(self.policy, self.alpha, self.split)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha, "policy": self.policy, "level_index": self.level_index,
            "split": self.split, "predicted_ms": self.predicted_ms, "meets_sla": self.meets_sla,
            "bytes": self.bytes, "accuracy": self.accuracy, "codec": self.codec, "breakdown": dict(self.breakdown),
        }


@dataclass(frozen=True)
class Option:
    """One column of the cost tables: a split point and the codec that sends its payload."""

    split: int
    codec: str | None  # None: device only (s = N+1)


@dataclass
class _Table:
    """Cost arrays of one set of levels (rows) × options (columns: (split, codec))."""

    rows: list[int]  # profile level indices
    cols: list[Option]
    head: np.ndarray
    tail: np.ndarray
    enc: np.ndarray
    dec: np.ndarray
    model_kbits: np.ndarray  # bytes·8/1000 the latency model charges (comm ms = kbits / Mbit/s)
    sent_bytes: np.ndarray  # bytes actually sent
    fixed: np.ndarray = field(init=False)
    outage_comm: np.ndarray = field(init=False)  # comm ms at 0 Mbit/s: inf wherever bytes > 0
    sends: np.ndarray = field(init=False)  # 1 where anything crosses the network (s <= N), else 0
    send_only: np.ndarray = field(init=False)  # 1 where the frame itself is sent (s = 0): no edge queue

    def __post_init__(self) -> None:
        self.fixed = self.head + self.enc + self.dec + self.tail
        self.edge_side = self.head + self.enc  # the edge's share (pipeline waits: docs/scheduler.md)
        self.cloud_side = self.dec + self.tail
        self.outage_comm = np.where(self.model_kbits > 0, np.inf, 0.0)
        self.sends = np.asarray([o.codec is not None for o in self.cols], dtype=float)
        self.send_only = np.asarray([o.codec is not None and o.split == 0 for o in self.cols], dtype=float)


def _first_token_codec(codecs: Sequence[str]) -> str:
    """The scheduler's main codec when only a set is given: its first token codec (the one that
    also covers the splits); a set of frame codecs only falls back to its first."""
    return next((c for c in codecs if not _is_frame(c)), codecs[0])


def _is_frame(name: str | None) -> bool:
    spec = CODECS.get(name) if name is not None else None
    return spec is not None and spec.kind == "frame"


def _has_payload(profile: Profile, codec: str, split: int) -> bool:
    return all(split in lv.payload.get(codec, {}) for lv in profile.levels)


def _check_load(factor: float, extra_ms: float) -> tuple[float, float] | None:
    """None for the neutral load (the profile's costs, untouched), else (factor, extra)."""
    if factor == 1.0 and extra_ms == 0.0:
        return None
    if not (math.isfinite(factor) and factor > 0 and math.isfinite(extra_ms)):
        raise SchedulerError(f"the cloud load must be a finite factor > 0 and a finite extra, got "
                             f"factor {factor!r}, extra {extra_ms!r} ms")
    return float(factor), float(extra_ms)


def check_compatible(edge: Profile, cloud: Profile) -> None:
    """Edge and cloud profiles must describe the same plan (model, splits, levels, tokens)."""
    if edge.model != cloud.model:
        raise SchedulerError(f"edge profile is for {edge.model.name} "
                             f"({edge.model.num_tokens} tokens, {edge.num_blocks} blocks) but the "
                             f"cloud profile for {cloud.model.name} ({cloud.model.num_tokens} tokens, "
                             f"{cloud.num_blocks} blocks); profile the same plan on both")
    if edge.candidates != cloud.candidates:
        raise SchedulerError(f"edge and cloud profiles have different split candidates "
                             f"({edge.candidates} vs {cloud.candidates})")
    if edge.plan_hash and cloud.plan_hash and edge.plan_hash != cloud.plan_hash:
        raise SchedulerError("edge and cloud profiles were made from different plans (plan_hash "
                             "differs); profile the same plan on both")
    for _i, lv in enumerate(edge.levels):
        try:
            j = cloud.level_index(lv.policy, lv.alpha)
        except ProfileError:
            raise SchedulerError(f"the cloud profile lacks level {lv.label} of the edge profile") from None
        if cloud.levels[j].tokens != lv.tokens:
            raise SchedulerError(f"level {lv.label}: edge and cloud token schedules differ")


class Scheduler:
    """Chooses (α, split) per request from an edge and a cloud profile of the same plan.

    ``codec``: payload codec for janus-deploy mode (default: the edge profile's
    ``default_codec``). ``sla_ms``: the latency SLA. ``accuracy``: an accuracy table (see
    :mod:`janus_deploy.schedule.accuracy_view`) or None. ``baseline_level``: ToMe's r for the
    baselines (default: the profile's only constant-policy level). ``frame_bytes``: override
    what is sent at s = 0 (default: the profile's payload, the uint8 frame for analytic
    profiles); e.g. ``4·3·H·W`` models shipping the fp32 model input as the paper's numbers
    suggest (see docs/reproduction.md).
    """

    def __init__(self, edge: Profile, cloud: Profile, accuracy: Any = None, mode: str = "janus-deploy",
                 codec: str | None = None, sla_ms: float = 300.0,
                 baseline_level: float | None = None, frame_bytes: int | None = None, *,
                 codecs: Sequence[str] | None = None) -> None:
        if mode not in MODES:
            raise SchedulerError(f"unknown scheduler mode {mode!r}; choose one of {', '.join(MODES)}")
        if not (isinstance(sla_ms, (int, float)) and math.isfinite(sla_ms) and sla_ms > 0):
            raise SchedulerError(f"the SLA must be a positive number of ms, got {sla_ms!r}")
        check_compatible(edge, cloud)
        if frame_bytes is not None and (int(frame_bytes) != frame_bytes or frame_bytes < 0):
            raise SchedulerError(f"frame_bytes must be an integer >= 0, got {frame_bytes!r}")
        self.frame_bytes = None if frame_bytes is None else int(frame_bytes)
        self.edge, self.cloud, self.mode, self.sla_ms = edge, cloud, mode, float(sla_ms)
        self.n = edge.num_blocks
        self.candidates = list(edge.candidates)
        self._cands = np.asarray(self.candidates)
        self._ncand = len(self.candidates)
        try:
            self.codec = edge.resolve_codec(codec if codec is not None or not codecs else _first_token_codec(codecs))
            cloud.resolve_codec(self.codec)
            self.codecs = list(dict.fromkeys(codecs)) if codecs else [self.codec]
            for c in self.codecs:
                edge.resolve_codec(c)
                cloud.resolve_codec(c)
        except ProfileError as exc:
            raise SchedulerError(str(exc)) from None
        # the paper's deployment sends fp32 tokens; fall back to the chosen codec if absent
        self._wire_codec = self.codec if mode == "janus-deploy" else (
            "fp32" if "fp32" in edge.codec_names and "fp32" in cloud.codec_names else self.codec)
        made_for = accuracy.get("plan_hash") if isinstance(accuracy, dict) else None
        if made_for is not None and edge.plan_hash is not None and made_for != edge.plan_hash:
            raise SchedulerError(f"the accuracy table was made for plan {made_for[:12]}, but the profiles are of "
                                 f"plan {edge.plan_hash[:12]}; calibrate the plan you profiled")
        if isinstance(accuracy, dict) and any(isinstance(lv, dict) and lv.get("codecs") for lv in accuracy.get("levels", [])):
            from janus_deploy.calibrate.accuracy import AccuracyError, check_codec_cells

            if made_for is None and edge.plan_hash is not None:
                raise SchedulerError("the accuracy table's codec cells carry no plan_hash, the profiles are of plan "
                                     f"{edge.plan_hash[:12]}; run `janus-deploy calibrate --codecs` on that plan")
            try:
                check_codec_cells(accuracy, self.candidates, self.n)
            except AccuracyError as exc:
                raise SchedulerError(str(exc)) from None
        acc, self.accuracy_metric = accuracy_by_level(accuracy)
        self._acc = [acc.get(LevelKey.of(lv.policy, lv.alpha)) for lv in edge.levels]
        self._acc_cell = accuracy_by_option(accuracy, self.accuracy_metric)
        if acc and len(self.codecs) > 1:
            have = measured_codecs(accuracy)
            lossy = [c for c in self.codecs if not (CODECS.get(c) is not None and CODECS[c].lossless) and c not in have]
            if lossy:
                raise SchedulerError(f"the accuracy table has no cells for codec(s) {', '.join(lossy)}: choosing among "
                                     "codecs needs their loss measured; run `janus-deploy calibrate --codecs "
                                     f"{','.join(self.codecs)}` (or restrict --codecs)")
        if _is_frame(self.codec):
            raise SchedulerError(f"codec {self.codec} sends frames at split 0 only; the main codec must be a token "
                                 "codec (give one in --codecs, e.g. fp16,jpeg85)")
        self._cols = self._columns(self.codecs if mode == "janus-deploy" else [self.codec])
        self._ncol = len(self._cols)

        rows = edge.levels_of("exponential")
        if not rows:
            raise SchedulerError("the profiles have no exponential-policy levels; Janus chooses "
                                 "among exponential levels (make the plan with --policy exponential)")
        self._janus = self._table(rows, paper_model=mode == "paper")
        self._janus_rank = self._ranks(rows, self._cols)
        self._dominated = (dominated_options(self._janus.fixed, self._janus.model_kbits, self._janus_rank)
                           if mode == "janus-deploy" else np.zeros(self._janus.fixed.shape, dtype=bool))
        self._janus_penalty = np.where(self._dominated, np.inf, self._janus_rank * _RANK_OFFSET)
        self._const_index = self._pick_baseline(baseline_level)
        self._base_cols = self._columns([self.codec])
        self._const = (self._table([self._const_index], paper_model=False, cols=self._base_cols)
                       if self._const_index is not None else None)
        self._const_by_codec: dict[str, _Table] = {}
        self._single: dict[int, _Table] = {}  # evaluate()'s tables of non-exponential levels
        self._extra: dict[tuple[int, int, str], _Table] = {}  # evaluate()'s options outside the codec set

    # ------------------------------------------------------------------ construction helpers
    def _columns(self, codecs: list[str]) -> list[Option]:
        """The options (split, codec) of the cost tables (class docstring)."""
        e, c, n = self.edge, self.cloud, self.n
        cols: list[Option] = []
        for s in self.candidates:
            if s > n:
                cols.append(Option(s, None))
                continue
            seen: set[str | None] = set()
            for name in codecs:
                if not (_has_payload(e, name, s) and _has_payload(c, name, s)):
                    continue
                spec = CODECS.get(name)
                if s == 0 and spec is not None and spec.kind == "tokens":  # the raw frame
                    if spec.compress in seen:
                        continue
                    seen.add(spec.compress)
                cols.append(Option(s, name))
        return cols

    def _table(self, rows: list[int], paper_model: bool, cols: list[Option] | None = None) -> _Table:
        """Cost arrays; ``paper_model``: Algorithm 1's costs (fp32 tokens, no codec time)."""
        e, c, n = self.edge, self.cloud, self.n
        cols = self._cols if cols is None else cols
        shape = (len(rows), len(cols))
        head, tail, enc, dec, kb, sent = (np.zeros(shape) for _ in range(6))
        for r, li in enumerate(rows):
            lv = e.levels[li]
            cj = c.level_index(lv.policy, lv.alpha)
            for j, opt in enumerate(cols):
                s = opt.split
                codec = opt.codec or self.codec
                head[r, j] = e.head_ms(li, s)
                tail[r, j] = c.tail_ms(cj, s)
                wire = e.payload(li, s, self._wire_codec if paper_model or opt.codec is None else codec)
                frame_override = s == 0 and self.frame_bytes is not None and not _is_frame(codec)
                sent[r, j] = self.frame_bytes if frame_override else wire.bytes
                if paper_model:
                    # Algorithm 1: x_s · D_M with D_M = 4·D (x_0 at s = 0), nothing at N+1
                    kb[r, j] = 0.0 if s > n else lv.tokens[s] * e.model.embed_dim * 4 * 8 / 1e3
                else:
                    enc[r, j] = wire.encode_ms
                    dec[r, j] = c.payload(cj, s, codec).decode_ms
                    kb[r, j] = sent[r, j] * 8 / 1e3
        return _Table(rows, list(cols), head, tail, enc, dec, kb, sent)

    def _cell_acc(self, li: int, opt: Option) -> float | None:
        """Accuracy of level ``li`` sent with ``opt``: the table's (level, codec, split) cell, at
        most the level's own (a lossy codec measured above the lossless path is sampling noise:
        it is not preferred for it), else the level's."""
        lv = self.edge.levels[li]
        level = self._acc[li]
        if opt.codec is not None and self._acc_cell:
            v = self._acc_cell.get((LevelKey.of(lv.policy, lv.alpha), opt.codec, opt.split))
            if v is not None:
                return v if level is None or v <= level else level
        return level

    def _ranks(self, rows: list[int], cols: list[Option]) -> np.ndarray:
        """Rank of each option, 0 = preferred: by accuracy (equal accuracies share a rank); rows
        without an accuracy value after all others; without a table, by increasing α. Shape
        [rows, 1] while every option of a level has the level's accuracy, else [rows, cols]."""
        cells = [[self._cell_acc(li, o) for o in cols] for li in rows]
        known = sorted({a for row in cells for a in row if a is not None}, reverse=True)
        if not known:
            return np.arange(len(rows), dtype=float)[:, None]  # rows are sorted by α
        pos = {a: i for i, a in enumerate(known)}
        ranks = np.asarray([[pos[a] if a is not None else len(known) + r for a in row]
                            for r, row in enumerate(cells)], dtype=float)
        if (ranks == ranks[:, :1]).all():
            return ranks[:, :1]
        return ranks

    def _pick_baseline(self, level: float | None) -> int | None:
        const = self.edge.levels_of("constant")
        if level is not None:
            try:
                return self.edge.level_index("constant", level)
            except ProfileError as exc:
                raise SchedulerError(f"baseline level: {exc}") from None
        return const[0] if len(const) == 1 else None

    # ------------------------------------------------------------------ public API
    @property
    def baseline_level_index(self) -> int | None:
        """Profile level index of the baselines' constant-policy level (None without one)."""
        return self._const_index

    @property
    def janus_levels(self) -> list[int]:
        """Profile level indices Janus chooses from (exponential, increasing α)."""
        return list(self._janus.rows)

    @property
    def skipped(self) -> dict[int, list[int]]:
        """janus-deploy mode: profile level index -> the splits at which :meth:`decide` skips it,
        because another level ranks no lower (accuracy; without an accuracy table: fewer merges),
        needs less edge + codec + cloud time there and sends no more bytes."""
        out = {}
        for li, row in zip(self._janus.rows, self._dominated):
            splits = [s for s in self.candidates
                      if all(row[j] for j, o in enumerate(self._cols) if o.split == s)]
            if splits:
                out[li] = splits
        return out

    @property
    def skipped_levels(self) -> list[int]:
        """Levels skipped at every split: never chosen by :meth:`decide`."""
        return [li for li, splits in self.skipped.items() if len(splits) == self._ncand]

    def decide(self, bandwidth_mbps: float, rtt_ms: float = 0.0, margin: float = 0.0, *,
               edge_wait_ms: float = 0.0, uplink_wait_ms: float = 0.0, sla_ms: float | None = None,
               cloud_factor: float = 1.0, cloud_extra_ms: float = 0.0) -> Decision:
        """Choose (α, split) for an estimated uplink of ``bandwidth_mbps``.

        ``rtt_ms`` and ``margin`` (fraction of the SLA held back, 0 ≤ margin < 1) are used in
        janus-deploy mode only; paper mode is Algorithm 1, which has neither.

        Pipeline waits (janus-deploy mode; :mod:`janus_deploy.schedule.pipeline`), both in ms
        from the frame's arrival: ``edge_wait_ms`` until the edge starts it, ``uplink_wait_ms``
        until the uplink is predicted free. An option then takes
        ``max(edge_wait + head + encode, uplink_wait) + comm + rtt + decode + tail`` (an option
        that sends nothing: ``edge_wait + head``; one that sends the frame, s = 0, skips the edge
        queue: ``max(encode, uplink_wait) + ...``), so a busy uplink pushes the choice toward
        lighter payloads or the device, and a busy edge toward sending the frame. ``sla_ms``: this frame's SLA (default: the scheduler's).
        With zero waits and no ``sla_ms`` the decision is exactly the one without them.

        ``cloud_factor`` and ``cloud_extra_ms`` are the server's current load
        (:mod:`janus_deploy.schedule.cloud_load`): every option that sends is predicted to spend
        ``cloud_factor × (decode + tail) + cloud_extra_ms`` on the server instead of the profile's
        ``decode + tail`` (janus-deploy mode; with 1 and 0 the costs are the profile's, bit for
        bit). The options ``skipped`` stay the profile's.
        """
        if not bandwidth_mbps >= 0:  # also catches NaN
            raise SchedulerError(f"bandwidth must be >= 0 Mbit/s, got {bandwidth_mbps!r}")
        t = self._janus
        comm = self._comm(t, bandwidth_mbps)
        if self.mode == "paper":
            lat = t.fixed + comm
            best = lat.argmin(axis=1)
            rowmin = lat[np.arange(lat.shape[0]), best]
            ok = rowmin <= self.sla_ms
            r = int(ok.argmax()) if ok.any() else lat.shape[0] - 1
            return self._decision(t, r, int(best[r]), comm, 0.0)
        if not 0.0 <= margin < 1.0:
            raise SchedulerError(f"the SLA margin must be in [0, 1), got {margin}")
        sla = self.sla_ms if sla_ms is None else self._check_sla(sla_ms)
        waited = bool(edge_wait_ms or uplink_wait_ms)
        load = _check_load(cloud_factor, cloud_extra_ms)
        lat = (self._waited(t, comm, rtt_ms, edge_wait_ms, uplink_wait_ms) if waited
               else t.fixed + comm + rtt_ms * t.sends)
        if load:
            lat = lat + self._load(t, *load)
        budget = sla * (1.0 - margin)
        score = np.where(lat <= budget, lat + self._janus_penalty, np.inf)
        k = int(score.argmin())
        if score.flat[k] == np.inf:
            k = int(lat.argmin())
        r, j = divmod(k, self._ncol)
        if not waited and sla_ms is None:
            return self._decision(t, r, j, comm, rtt_ms, load=load)
        return self._with_waits(self._decision(t, r, j, comm, rtt_ms, load=load), float(lat[r, j]), sla,
                                edge_wait_ms, uplink_wait_ms)

    def _waited(self, t: _Table, comm: np.ndarray, rtt_ms: float, edge_wait_ms: float,
                uplink_wait_ms: float) -> np.ndarray:
        """Every option's latency from the frame's arrival behind the pipeline's waits (decide())."""
        for name, v in (("edge_wait_ms", edge_wait_ms), ("uplink_wait_ms", uplink_wait_ms)):
            if not v >= 0:  # NaN too; inf is a valid uplink wait (an outage estimate)
                raise SchedulerError(f"{name} must be >= 0 ms, got {v!r}")
        uplink = np.where(t.sends > 0, float(uplink_wait_ms), 0.0)
        edge = np.where(t.send_only > 0, 0.0, float(edge_wait_ms))  # the frame sent as is skips the edge queue
        return np.maximum(edge + t.edge_side, uplink) + comm + rtt_ms * t.sends + t.cloud_side

    def _check_sla(self, sla_ms: float) -> float:
        if not (isinstance(sla_ms, (int, float)) and math.isfinite(sla_ms) and sla_ms > 0):
            raise SchedulerError(f"the SLA must be a positive number of ms, got {sla_ms!r}")
        return float(sla_ms)

    @staticmethod
    def _with_waits(d: Decision, total: float, sla: float, edge_wait_ms: float, uplink_wait_ms: float) -> Decision:
        """``d`` predicted behind the pipeline's waits: its latency from the frame's arrival;
        the breakdown keeps the service times and adds the waits."""
        d.breakdown["edge_wait_ms"] = float(edge_wait_ms)
        d.breakdown["uplink_wait_ms"] = float(uplink_wait_ms)
        d.predicted_ms, d.meets_sla = total, total <= sla
        return d

    @property
    def options(self) -> list[Option]:
        """The (split, codec) columns janus-deploy mode chooses among."""
        return list(self._cols)

    def baseline(self, system: str, bandwidth_mbps: float, rtt_ms: float = 0.0, *,
                 codec: str | None = None, cloud_factor: float = 1.0, cloud_extra_ms: float = 0.0) -> Decision:
        """Decision of a baseline at the constant-policy level: ``device-only`` (s = N+1),
        ``cloud-only`` (s = 0, the frame is sent) or ``mixed`` (whichever of the two is
        predicted faster). Predictions use the janus-deploy latency model (real bytes, RTT,
        the server's load as in :meth:`decide`). ``codec``: what sends the frame (e.g.
        ``jpeg85``; default: the main codec's raw frame)."""
        if self._const is None:
            have = [self.edge.levels[i].label for i in self.edge.levels_of("constant")]
            raise SchedulerError(
                "baselines need exactly one constant-policy (ToMe r) level in the profiles"
                + (f"; found {', '.join(have)}: pick one with baseline_level" if have else
                   "; none found (add one when making the plan, e.g. r=23 for ViT-L@384)"))
        if system not in BASELINES:
            raise SchedulerError(f"unknown baseline {system!r}; choose one of {', '.join(BASELINES)}")
        if not bandwidth_mbps >= 0:
            raise SchedulerError(f"bandwidth must be >= 0 Mbit/s, got {bandwidth_mbps!r}")
        load = _check_load(cloud_factor, cloud_extra_ms)
        t = self._const if codec is None or codec == self.codec else self._const_table(codec)
        comm = self._comm(t, bandwidth_mbps)
        dev_j, cloud_j = t.fixed.shape[1] - 1, 0
        if system == "device-only":
            j = dev_j
        elif system == "cloud-only":
            j = cloud_j
        else:
            lat = t.fixed[0] + comm[0] + rtt_ms * t.sends
            if load:
                lat = lat + self._load(t, *load)[0]
            j = cloud_j if lat[cloud_j] < lat[dev_j] else dev_j
        return self._decision(t, 0, j, comm, rtt_ms, charge_rtt=True, load=load)

    def server_ms(self, level_index: int, split: int, codec: str | None = None) -> float:
        """What the profile says the server spends on option (level, split) when idle: the
        payload's decode plus the tail (0 at s = N+1): what a server's reported time is compared with.
        ``codec``: the one the option sends with (default: the main one)."""
        if split not in self.candidates:
            raise SchedulerError(f"split {split} is not a candidate {self.candidates}")
        lv = self.edge.levels[level_index]
        cj = self.cloud.level_index(lv.policy, lv.alpha)
        if split > self.n:
            return 0.0
        return float(self.cloud.payload(cj, split, codec or self.codec).decode_ms + self.cloud.tail_ms(cj, split))

    def evaluate(self, level_index: int, split: int, bandwidth_mbps: float, rtt_ms: float = 0.0, *,
                 codec: str | None = None, cloud_factor: float = 1.0, cloud_extra_ms: float = 0.0) -> Decision:
        """The predicted latency of one given option (same cost model as :meth:`decide`);
        ``codec``: one of the scheduler's codecs (default: the main one)."""
        if split not in self.candidates:
            raise SchedulerError(f"split {split} is not a candidate {self.candidates}")
        if level_index in self._janus.rows:
            table = self._janus
        else:
            table = self._single.get(level_index)
            if table is None:
                table = self._single[level_index] = self._table([level_index], self.mode == "paper")
        want = None if split > self.n else (codec or self.codec)
        j = next((i for i, o in enumerate(table.cols) if o.split == split and o.codec == want), None)
        if j is None and split == 0 and not _is_frame(want) and want in self.codecs:  # the shared raw frame
            j = next((i for i, o in enumerate(table.cols) if o.split == 0 and not _is_frame(o.codec)), None)
        if j is None:  # a codec outside the scheduler's set (a baseline's): its own one-option table
            assert want is not None  # device only is a column of every table
            table, j = self._extra_option(level_index, split, want), 0
        return self._decision(table, table.rows.index(level_index), j, self._comm(table, bandwidth_mbps), rtt_ms,
                              load=_check_load(cloud_factor, cloud_extra_ms))

    def level_accuracy(self, level_index: int) -> float | None:
        """The accuracy table's value of a level (its own, without a codec's loss)."""
        return self._acc[level_index]

    def _extra_option(self, level_index: int, split: int, codec: str) -> _Table:
        key = (level_index, split, codec)
        t = self._extra.get(key)
        if t is None:
            self._check_codec(codec)
            if not (_has_payload(self.edge, codec, split) and _has_payload(self.cloud, codec, split)):
                raise SchedulerError(f"codec {codec} has no option at split {split} (frame codecs send at split 0 only)")
            t = self._extra[key] = self._table([level_index], self.mode == "paper", [Option(split, codec)])
        return t

    # ------------------------------------------------------------------ internals
    def _check_codec(self, codec: str) -> None:
        """``codec`` is one both profiles measured (SchedulerError naming it otherwise)."""
        try:
            self.edge.resolve_codec(codec)
            self.cloud.resolve_codec(codec)
        except ProfileError as exc:
            raise SchedulerError(str(exc)) from None

    def _const_table(self, codec: str) -> _Table:
        """The baselines' table with ``codec`` sending the frame at s = 0."""
        t = self._const_by_codec.get(codec)
        if t is None:
            self._check_codec(codec)
            cols = [Option(0, codec), Option(self.candidates[-1], None)]
            t = self._const_by_codec[codec] = self._table([self._const_index], False, cols)  # type: ignore[list-item]  # baseline() checked _const_index
        return t

    @staticmethod
    def _comm(t: _Table, bw: float) -> np.ndarray:
        """Transfer ms of every option at ``bw`` Mbit/s (an outage: inf wherever bytes are sent)."""
        if bw > 0:
            return t.model_kbits / bw if math.isfinite(bw) else np.zeros_like(t.model_kbits)
        return t.outage_comm

    def _load(self, t: _Table, factor: float, extra_ms: float) -> np.ndarray:
        """The server's load on top of the profile, per option (ms; 0 where nothing is sent)."""
        return ((factor - 1.0) * (t.tail + t.dec) + extra_ms) * t.sends

    def _decision(self, t: _Table, r: int, j: int, comm: np.ndarray, rtt_ms: float,
                  charge_rtt: bool | None = None, load: tuple[float, float] | None = None) -> Decision:
        li = t.rows[r]
        lv = self.edge.levels[li]
        if charge_rtt is None:
            charge_rtt = self.mode == "janus-deploy"
        rtt = float(rtt_ms) if charge_rtt and t.sends[j] else 0.0
        bd = {
            "edge_ms": float(t.head[r, j]), "encode_ms": float(t.enc[r, j]),
            "comm_ms": float(comm[r, j]), "rtt_ms": rtt, "decode_ms": float(t.dec[r, j]),
            "cloud_ms": float(t.tail[r, j]),
        }
        total = float(t.fixed[r, j]) + bd["comm_ms"] + rtt
        opt = t.cols[j]
        if load and self.mode == "janus-deploy" and t.sends[j]:
            extra = float((load[0] - 1.0) * (t.tail[r, j] + t.dec[r, j]) + load[1])
            bd["cloud_ms"] += extra  # the server's predicted share under its current load
            total += extra
        return Decision(lv.alpha, lv.policy, li, opt.split, total, total <= self.sla_ms,
                        bd, int(t.sent_bytes[r, j]), self._cell_acc(li, opt), opt.codec)
