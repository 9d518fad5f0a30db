"""Pruning levels that do not pay on a device: slower than a level with fewer merges.

Merging should buy latency at every level, but on a given device a light level can cost more in
matching and merging than the few tokens it removes save (docs/pruning-efficiency.md). A profile
records, per level, every level with fewer merges that runs faster on its device: overall
(device-only latency) and per split (the edge part ``head_ms[s]``, the cloud part ``tail_ms[s]``);
``janus-deploy profile`` and ``inspect --profile`` print it. The scheduler never picks an option
that another level beats at no loss of accuracy (:func:`dominated_options`).

Pure functions of token schedules and latencies; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class _Level(Protocol):
    policy: str
    alpha: float
    tokens: list[int]
    head_ms: Mapping[int, float]
    tail_ms: Mapping[int, float]


@dataclass(frozen=True)
class SlowerThan:
    """Where a level runs slower than ``(policy, alpha)``, a level with fewer merges."""

    policy: str
    alpha: float
    total: bool  # device-only latency (the whole model on this device)
    head: tuple[int, ...]  # splits at which the edge part (head_ms) is slower
    tail: tuple[int, ...]  # splits at which the cloud part (tail_ms) is slower

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "alpha": self.alpha, "total": self.total,
                "head": list(self.head), "tail": list(self.tail)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SlowerThan:
        return cls(str(d["policy"]), float(d["alpha"]), bool(d["total"]),
                   tuple(int(s) for s in d["head"]), tuple(int(s) for s in d["tail"]))


def fewer_merges(tokens: Sequence[int], than: Sequence[int]) -> bool:
    """True when schedule ``tokens`` merges fewer tokens than ``than``: it keeps at least as many
    tokens after every block and more after some."""
    return len(tokens) == len(than) and all(a >= b for a, b in zip(tokens, than)) and list(tokens) != list(than)


def slower_than(level: _Level, lighter: _Level) -> SlowerThan | None:
    """Where ``level`` is slower than ``lighter`` (overall and per split), or None if nowhere."""
    head = tuple(s for s in sorted(level.head_ms) if level.head_ms[s] > lighter.head_ms[s])
    tail = tuple(s for s in sorted(level.tail_ms) if level.tail_ms[s] > lighter.tail_ms[s])
    if not head and not tail:
        return None
    last = max(level.head_ms)  # N + 1: device only
    return SlowerThan(lighter.policy, lighter.alpha, level.head_ms[last] > lighter.head_ms[last], head, tail)


def slower_than_lighter(levels: Sequence[_Level]) -> list[list[SlowerThan]]:
    """For every level, each level with fewer merges that is faster somewhere on this device
    (lightest first)."""
    out = []
    for lv in levels:
        lighter = sorted((o for o in levels if fewer_merges(o.tokens, lv.tokens)), key=lambda o: -sum(o.tokens))
        out.append([f for o in lighter if (f := slower_than(lv, o)) is not None])
    return out


def describe(level: _Level, flags: Sequence[SlowerThan], levels: Sequence[_Level], label: Any = None) -> list[str]:
    """One line per lighter level (found in ``levels``) that beats ``level``: what is slower, with
    both device-only latencies when that is (``label(policy, alpha)`` names levels)."""
    name = label or (lambda p, a: f"r{int(a)}" if p == "constant" else f"α={a:.4g}")
    last = max(level.head_ms)
    lines = []
    for f in flags:
        lighter = next(o for o in levels if (o.policy, o.alpha) == (f.policy, f.alpha))
        parts = []
        if f.total:
            parts.append(f"device-only {level.head_ms[last]:.2f} vs {lighter.head_ms[last]:.2f} ms")
        if f.head:
            parts.append(f"edge part at s={','.join(map(str, f.head))}")
        if f.tail:
            parts.append(f"cloud part at s={','.join(map(str, f.tail))}")
        lines.append(f"{name(level.policy, level.alpha)} is slower than {name(f.policy, f.alpha)} "
                     f"(fewer merges): " + "; ".join(parts))
    return lines


def dominated_options(fixed: np.ndarray, cost_bytes: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Options (rows: levels, columns: splits) that another level beats at the same split: no
    more preferred by accuracy (``rank`` [rows] or [rows, 1], or per option [rows, columns]: 0 =
    most accurate; equal ranks tie), strictly less fixed latency (``fixed``: edge + codec + cloud
    ms) and no more bytes on the link, so it is faster at every bandwidth and RTT. Such an option
    can never be the better choice."""
    rank = np.asarray(rank, dtype=float)
    rank = rank.reshape(-1, 1) if rank.ndim < 2 else rank
    rank = np.broadcast_to(rank, fixed.shape)
    out = np.zeros(fixed.shape, dtype=bool)
    for i in range(fixed.shape[0]):
        for j in range(fixed.shape[0]):
            if j != i:
                out[i] |= (rank[j] <= rank[i]) & (fixed[j] < fixed[i]) & (cost_bytes[j] <= cost_bytes[i])
    return out
