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

Janus modes choose only among exponential levels. The baselines (device-only, cloud-only,
mixed) use the profile's constant-policy level (ToMe's r), see :meth:`Scheduler.baseline`.

All (level, split) costs are precomputed as numpy arrays, so :meth:`Scheduler.decide` is a few
vector operations (~10 µs for 30 levels × 15 splits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.levels import LevelKey, config_label
from janus_deploy.profile.dominance import dominated_options
from janus_deploy.profile.table import Profile, ProfileError
from janus_deploy.schedule.accuracy_view import accuracy_by_level

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

    @property
    def label(self) -> str:
        """``"0.24@5"`` for α levels, ``"r23@25"`` for the constant policy (:func:`config_label`)."""
        return config_label(self.policy, self.alpha, self.split)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha, "policy": self.policy, "level_index": self.level_index,
            "split": self.split, "predicted_ms": self.predicted_ms, "meets_sla": self.meets_sla,
            "bytes": self.bytes, "accuracy": self.accuracy, "breakdown": dict(self.breakdown),
        }


@dataclass
class _Table:
    """Cost arrays of one set of levels (rows) × the candidate splits (columns)."""

    rows: list[int]  # profile level indices
    head: np.ndarray
    tail: np.ndarray
    enc: np.ndarray
    dec: np.ndarray
    model_kbits: np.ndarray  # bytes·8/1000 the latency model charges (comm ms = kbits / Mbit/s)
    sent_bytes: np.ndarray  # bytes actually sent
    fixed: np.ndarray = field(init=False)
    outage_comm: np.ndarray = field(init=False)  # comm ms at 0 Mbit/s: inf wherever bytes > 0

    def __post_init__(self) -> None:
        self.fixed = self.head + self.enc + self.dec + self.tail
        self.edge_side = self.head + self.enc  # the edge's share (pipeline waits: docs/scheduler.md)
        self.cloud_side = self.dec + self.tail
        self.outage_comm = np.where(self.model_kbits > 0, np.inf, 0.0)


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
                 baseline_level: float | None = None, frame_bytes: int | None = None) -> None:
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
            self.codec = edge.resolve_codec(codec)
            cloud.resolve_codec(self.codec)
        except ProfileError as exc:
            raise SchedulerError(str(exc)) from None
        # the paper's deployment sends fp32 tokens; fall back to the chosen codec if absent
        self._wire_codec = self.codec if mode == "janus-deploy" else (
            "fp32" if "fp32" in edge.codec_names and "fp32" in cloud.codec_names else self.codec)
        made_for = accuracy.get("plan_hash") if isinstance(accuracy, dict) else None
        if made_for is not None and edge.plan_hash is not None and made_for != edge.plan_hash:
            raise SchedulerError(f"the accuracy table was made for plan {made_for[:12]}, but the profiles are of "
                                 f"plan {edge.plan_hash[:12]}; calibrate the plan you profiled")
        acc, self.accuracy_metric = accuracy_by_level(accuracy)
        self._acc = [acc.get(LevelKey.of(lv.policy, lv.alpha)) for lv in edge.levels]
        self._sends = (self._cands <= self.n).astype(float)  # anything crosses the network

        rows = edge.levels_of("exponential")
        if not rows:
            raise SchedulerError("the profiles have no exponential-policy levels; Janus chooses "
                                 "among exponential levels (make the plan with --policy exponential)")
        self._janus = self._table(rows, paper_model=mode == "paper")
        self._janus_rank = self._ranks(rows)
        self._dominated = (dominated_options(self._janus.fixed, self._janus.model_kbits, self._janus_rank)
                           if mode == "janus-deploy" else np.zeros(self._janus.fixed.shape, dtype=bool))
        self._janus_penalty = np.where(self._dominated, np.inf, self._janus_rank * _RANK_OFFSET)
        self._const_index = self._pick_baseline(baseline_level)
        self._const = (self._table([self._const_index], paper_model=False)
                       if self._const_index is not None else None)
        self._single: dict[int, _Table] = {}  # evaluate()'s tables of non-exponential levels

    # ------------------------------------------------------------------ construction helpers
    def _table(self, rows: list[int], paper_model: bool) -> _Table:
        """Cost arrays; ``paper_model``: Algorithm 1's costs (fp32 tokens, no codec time)."""
        e, c, n = self.edge, self.cloud, self.n
        shape = (len(rows), self._ncand)
        head, tail, enc, dec, kb, sent = (np.zeros(shape) for _ in range(6))
        for r, li in enumerate(rows):
            lv = e.levels[li]
            cj = c.level_index(lv.policy, lv.alpha)
            for j, s in enumerate(self.candidates):
                head[r, j] = e.head_ms(li, s)
                tail[r, j] = c.tail_ms(cj, s)
                wire = e.payload(li, s, self._wire_codec)
                sent[r, j] = self.frame_bytes if s == 0 and self.frame_bytes is not None else wire.bytes
                if paper_model:
                    # Algorithm 1: x_s · D_M with D_M = 4·D (x_0 at s = 0), nothing at N+1
                    kb[r, j] = 0.0 if s > n else lv.tokens[s] * e.model.embed_dim * 4 * 8 / 1e3
                else:
                    enc[r, j] = wire.encode_ms
                    dec[r, j] = c.payload(cj, s, self.codec).decode_ms
                    kb[r, j] = sent[r, j] * 8 / 1e3
        return _Table(rows, head, tail, enc, dec, kb, sent)

    def _ranks(self, rows: list[int]) -> np.ndarray:
        """Rank of each row, 0 = preferred: by accuracy (equal accuracies share a rank); rows
        without an accuracy value after all others; without a table, by increasing α."""
        known = sorted({self._acc[li] for li in rows if self._acc[li] is not None}, reverse=True)
        if not known:
            return np.arange(len(rows), dtype=float)[:, None]  # rows are sorted by α
        pos = {a: i for i, a in enumerate(known)}
        ranks = [pos[self._acc[li]] if self._acc[li] is not None else len(known) + r
                 for r, li in enumerate(rows)]
        return np.asarray(ranks, dtype=float)[:, None]

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
        return {li: [self.candidates[j] for j in np.flatnonzero(row)]
                for li, row in zip(self._janus.rows, self._dominated) if row.any()}

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
        that sends nothing: ``edge_wait + head``), so a busy uplink pushes the choice toward
        lighter payloads or the device. ``sla_ms``: this frame's SLA (default: the scheduler's).
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
               else t.fixed + comm + rtt_ms * self._sends)
        if load:
            lat = lat + self._load(t, *load)
        budget = sla * (1.0 - margin)
        score = np.where(lat <= budget, lat + self._janus_penalty, np.inf)
        k = int(score.argmin())
        if score.flat[k] == np.inf:
            k = int(lat.argmin())
        r, j = divmod(k, self._ncand)
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
        uplink = np.where(self._sends > 0, float(uplink_wait_ms), 0.0)
        return np.maximum(edge_wait_ms + t.edge_side, uplink) + comm + rtt_ms * self._sends + t.cloud_side

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

    def baseline(self, system: str, bandwidth_mbps: float, rtt_ms: float = 0.0, *,
                 cloud_factor: float = 1.0, cloud_extra_ms: float = 0.0) -> Decision:
        """Decision of a baseline at the constant-policy level: ``device-only`` (s = N+1),
        ``cloud-only`` (s = 0, the frame is sent) or ``mixed`` (whichever of the two is
        predicted faster). Predictions use the janus-deploy latency model (real bytes, RTT,
        the server's load as in :meth:`decide`)."""
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
        t = self._const
        comm = self._comm(t, bandwidth_mbps)
        dev_j, cloud_j = self._ncand - 1, 0
        if system == "device-only":
            j = dev_j
        elif system == "cloud-only":
            j = cloud_j
        else:
            lat = t.fixed[0] + comm[0] + rtt_ms * self._sends
            if load:
                lat = lat + self._load(t, *load)[0]
            j = cloud_j if lat[cloud_j] < lat[dev_j] else dev_j
        return self._decision(t, 0, j, comm, rtt_ms, charge_rtt=True, load=load)

    def server_ms(self, level_index: int, split: int) -> float:
        """What the profile says the server spends on option (level, split) when idle: the
        payload's decode plus the tail (0 at s = N+1): what a server's reported time is compared with."""
        if split not in self.candidates:
            raise SchedulerError(f"split {split} is not a candidate {self.candidates}")
        lv = self.edge.levels[level_index]
        cj = self.cloud.level_index(lv.policy, lv.alpha)
        if split > self.n:
            return 0.0
        return float(self.cloud.payload(cj, split, self.codec).decode_ms + self.cloud.tail_ms(cj, split))

    def evaluate(self, level_index: int, split: int, bandwidth_mbps: float, rtt_ms: float = 0.0, *,
                 cloud_factor: float = 1.0, cloud_extra_ms: float = 0.0) -> Decision:
        """The predicted latency of one given option (same cost model as :meth:`decide`)."""
        if split not in self.candidates:
            raise SchedulerError(f"split {split} is not a candidate {self.candidates}")
        if level_index in self._janus.rows:
            table = self._janus
        else:
            table = self._single.get(level_index)
            if table is None:
                table = self._single[level_index] = self._table([level_index], self.mode == "paper")
        return self._decision(table, table.rows.index(level_index), self.candidates.index(split),
                              self._comm(table, bandwidth_mbps), rtt_ms,
                              load=_check_load(cloud_factor, cloud_extra_ms))

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _comm(t: _Table, bw: float) -> np.ndarray:
        """Transfer ms of every option at ``bw`` Mbit/s (an outage: inf wherever bytes are sent)."""
        if bw > 0:
            return t.model_kbits / bw if math.isfinite(bw) else np.zeros_like(t.model_kbits)
        return t.outage_comm

    def _load(self, t: _Table, factor: float, extra_ms: float) -> np.ndarray:
        """The server's load on top of the profile, per option (ms; 0 where nothing is sent)."""
        return ((factor - 1.0) * (t.tail + t.dec) + extra_ms) * self._sends

    def _decision(self, t: _Table, r: int, j: int, comm: np.ndarray, rtt_ms: float,
                  charge_rtt: bool | None = None, load: tuple[float, float] | None = None) -> Decision:
        li = t.rows[r]
        lv = self.edge.levels[li]
        if charge_rtt is None:
            charge_rtt = self.mode == "janus-deploy"
        rtt = float(rtt_ms) if charge_rtt and self._sends[j] else 0.0
        bd = {
            "edge_ms": float(t.head[r, j]), "encode_ms": float(t.enc[r, j]),
            "comm_ms": float(comm[r, j]), "rtt_ms": rtt, "decode_ms": float(t.dec[r, j]),
            "cloud_ms": float(t.tail[r, j]),
        }
        total = float(t.fixed[r, j]) + bd["comm_ms"] + rtt
        if load and self.mode == "janus-deploy" and self._sends[j]:
            extra = float((load[0] - 1.0) * (t.tail[r, j] + t.dec[r, j]) + load[1])
            bd["cloud_ms"] += extra  # the server's predicted share under its current load
            total += extra
        return Decision(lv.alpha, lv.policy, li, self.candidates[j], total, total <= self.sla_ms,
                        bd, int(t.sent_bytes[r, j]), self._acc[li])
