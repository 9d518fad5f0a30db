"""Pruning schedules, alpha_max, level grids and candidate split points (Janus, arXiv 2502.10047).

Pure Python, no torch: every other stage takes token counts from here (one source of truth).

Conventions
-----------
* ``N`` blocks, ``x0`` tokens entering block 1 (patches + prefix tokens), ``P`` prefix tokens
  (class / distillation / register tokens; never merged).
* ``reductions`` are the tokens removed *inside* block ``l`` (l = 1..N), list index ``l - 1``.
* ``tokens`` is ``[x0, x1, ..., xN]``: the token count leaving each block (``x_l = x_{l-1} - r_l``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from janus_deploy import JanusError

POLICIES = ("exponential", "linear", "constant")
LEVEL_TOLERANCE = 1e-6  # level values compare at this (JSON round trips and grid arithmetic)


@dataclass(frozen=True)
class LevelKey:
    """The one identity of a pruning level: policy + level value (α, or ToMe's r) rounded to
    :data:`LEVEL_TOLERANCE`. Profiles, plans, accuracy tables and the scheduler all look levels
    up by it, and :meth:`label` / :func:`config_label` are the one way to print them."""

    policy: str
    alpha: float

    @classmethod
    def of(cls, policy: str, alpha: float) -> LevelKey:
        return cls(str(policy), round(float(alpha), 6))

    @property
    def label(self) -> str:
        """``0.24`` for exponential levels, ``lin0.5`` for linear ones, ``r23`` for ToMe's constant r."""
        if self.policy == "constant":
            return f"r{int(self.alpha)}"
        return f"{self.alpha:g}" if self.policy == "exponential" else f"lin{self.alpha:g}"


def config_label(policy: str, alpha: float, split: int) -> str:
    """One configuration (level, split) as every report prints it: ``0.24@5``, ``r23@25``."""
    return f"{LevelKey.of(policy, alpha).label}@{split}"


class PolicyError(JanusError, ValueError):
    """A pruning-policy or split-point parameter is out of range."""


def _check_model(x0: int, num_blocks: int, num_prefix: int = 1) -> None:
    if num_blocks < 1:
        raise PolicyError(f"num_blocks must be >= 1, got {num_blocks}")
    if num_prefix < 0 or x0 <= num_prefix:
        raise PolicyError(f"x0 ({x0}) must exceed the number of prefix tokens ({num_prefix})")


def raw_reductions(policy: str, level: float, num_blocks: int) -> list[int]:
    """Tokens each block *asks* to remove, before the merge cap.

    exponential (Eq. 1): floor(2^(a (N - l))) for a > 0, 0 for a = 0;
    linear: floor(a (N - l)); constant (ToMe): ``int(level)`` in every block.
    """
    if policy not in POLICIES:
        raise PolicyError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if level < 0:
        raise PolicyError(f"pruning level must be >= 0, got {level}")
    n = num_blocks
    if policy == "exponential":
        if level == 0:
            return [0] * n
        return [int(math.floor(2.0 ** (level * (n - l)))) for l in range(1, n + 1)]
    if policy == "linear":
        return [int(math.floor(level * (n - l))) for l in range(1, n + 1)]
    if level != int(level):
        raise PolicyError(f"the constant policy takes an integer r, got {level}")
    return [int(level)] * n


def merge_cap(tokens: int, num_prefix: int) -> int:
    """Most tokens one bipartite merge can remove: half of the non-prefix tokens (rounded down)."""
    return max(tokens - num_prefix, 0) // 2


@dataclass(frozen=True)
class Schedule:
    """The effective token schedule of one pruning level."""

    policy: str
    level: float
    reductions: tuple[int, ...]  # r_l actually removed in block l (after the cap)
    tokens: tuple[int, ...]  # x_0 .. x_N
    capped: tuple[int, ...]  # blocks (1-based) where the cap lowered the request

    @property
    def num_blocks(self) -> int:
        return len(self.reductions)


def schedule(policy: str, level: float, x0: int, num_blocks: int, num_prefix: int = 1) -> Schedule:
    """Effective per-block schedule: requested reductions capped at :func:`merge_cap`.

    Raises :class:`PolicyError` for a level outside ``[0, alpha_max]``.
    """
    _check_model(x0, num_blocks, num_prefix)
    check_level(level, x0, num_blocks, policy)
    wanted = raw_reductions(policy, level, num_blocks)
    tokens = [x0]
    eff: list[int] = []
    capped: list[int] = []
    for l, r in enumerate(wanted, start=1):
        cap = merge_cap(tokens[-1], num_prefix)
        if r > cap:
            capped.append(l)
            r = cap
        eff.append(r)
        tokens.append(tokens[-1] - r)
    return Schedule(policy, float(level), tuple(eff), tuple(tokens), tuple(capped))


def alpha_max(x0: int, num_blocks: int, policy: str = "exponential", tol: float = 1e-6) -> float:
    """Largest level whose *uncapped* total reduction leaves at least one token (Eq. 2 with Eq. 1).

    For the constant policy this is the largest integer r with N * r <= x0 - 1.
    """
    _check_model(x0, num_blocks, 0)
    budget = x0 - 1
    if policy == "constant":
        return float(budget // num_blocks)
    if policy not in POLICIES:
        raise PolicyError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if num_blocks < 2:
        raise PolicyError(f"the {policy} policy needs at least 2 blocks: with one block the reduction "
                          "does not depend on the level")
    total = lambda a: sum(raw_reductions(policy, a, num_blocks))  # noqa: E731 - monotone in a
    lo, hi = 0.0, 1.0
    while total(hi) <= budget:  # grow the bracket (linear policy can go beyond 1)
        lo, hi = hi, hi * 2
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if total(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def level_grid(
    x0: int,
    num_blocks: int,
    policy: str = "exponential",
    *,
    step: float | None = None,
    levels: int | None = None,
) -> list[float]:
    """Pruning levels 0 .. alpha_max, either every ``step`` or ``levels`` evenly spaced values.

    Levels are rounded to 4 decimals, rounding down so no level exceeds alpha_max.
    For the constant policy levels are integers r.
    """
    if (step is None) == (levels is None):
        raise PolicyError("give exactly one of step (e.g. 0.01) or levels (e.g. 8)")
    amax = alpha_max(x0, num_blocks, policy)
    if step is not None:
        if step <= 0:
            raise PolicyError(f"step must be > 0, got {step}")
        count = int(math.floor(amax / step + 1e-9)) + 1
        grid = [i * step for i in range(count)]
    else:
        if levels is None or levels < 1:
            raise PolicyError(f"levels must be >= 1, got {levels}")
        grid = [0.0] if levels == 1 else [i * amax / (levels - 1) for i in range(levels)]
    if policy == "constant":
        out = sorted({int(math.floor(a + 1e-9)) for a in grid})
        return [float(r) for r in out]
    return [math.floor(a * 1e4 + 1e-6) / 1e4 for a in grid]


def check_plan_args(policy: str, k: int, *, step: float | None = None, levels: int | None = None,
                    baseline_r: int | None = None) -> None:
    """Check a plan's level grid and split density before any model exists (no x0, N needed):
    what :func:`level_grid`, :func:`candidate_splits` and the baseline level would refuse later
    on their own. Raises :class:`PolicyError` naming the value and the fix."""
    if policy not in POLICIES:
        raise PolicyError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if not isinstance(k, int) or k < 1:
        raise PolicyError(f"k must be an integer >= 1 (the split-point density of Eq. 3), got {k!r}; the paper uses 5")
    if step is not None and levels is not None:
        raise PolicyError("give exactly one of step (e.g. 0.01) or levels (e.g. 8), not both")
    if levels is not None and (not isinstance(levels, int) or levels < 1):
        raise PolicyError(f"levels must be >= 1 (the number of pruning levels), got {levels!r}; e.g. 8")
    if step is not None and not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise PolicyError(f"step must be > 0 (the pruning-level step), got {step!r}; e.g. 0.01")
    if baseline_r is not None and (not isinstance(baseline_r, int) or baseline_r < 0):
        raise PolicyError(f"the baseline r must be an integer >= 0 (ToMe's tokens merged per block), got "
                          f"{baseline_r!r}; e.g. 23 for ViT-L@384")


def check_level(level: float, x0: int, num_blocks: int, policy: str = "exponential") -> None:
    """Raise :class:`PolicyError` unless ``0 <= level <= alpha_max``."""
    if policy not in POLICIES:
        raise PolicyError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    amax = alpha_max(x0, num_blocks, policy)
    if not (0.0 <= level <= amax + 1e-9):
        raise PolicyError(
            f"pruning level {level} is outside [0, {amax:.4f}] (alpha_max of the {policy} policy "
            f"for x0={x0}, N={num_blocks}); pick a smaller level"
        )


def candidate_splits(num_blocks: int, k: int) -> list[int]:
    """Fine-to-coarse split candidates (Eq. 3): {0, N+1} and s_1 = 1, s_i = s_{i-1} + ceil(i/k).

    0 = cloud only, N + 1 = device only; 1..N = the edge runs blocks 1..s.
    """
    if k < 1:
        raise PolicyError(f"k must be >= 1, got {k}")
    if num_blocks < 1:
        raise PolicyError(f"num_blocks must be >= 1, got {num_blocks}")
    inner = []
    s, i = 1, 1
    while s <= num_blocks:
        inner.append(s)
        i += 1
        s += math.ceil(i / k)
    return [0, *inner, num_blocks + 1]


def segment_ranges(num_blocks: int, candidates: list[int]) -> list[tuple[int, int]]:
    """Block ranges (1-based, inclusive) of the segments that the inner split points cut the model
    into: one segment ending at every inner split point, plus a last one up to block N.

    Segment 0 also holds the embedding; the last segment also holds the final norm and head, and
    is head-only (an empty range ``(N+1, N)``) when N itself is a split point.
    """
    inner = sorted(s for s in set(candidates) if 1 <= s <= num_blocks)
    prev, ranges = 0, []
    for s in inner:
        ranges.append((prev + 1, s))
        prev = s
    ranges.append((prev + 1, num_blocks))
    return ranges


def edge_segment_count(split: int, num_blocks: int, candidates: list[int]) -> int:
    """How many segments the edge runs at split point ``split`` (the rest run in the cloud)."""
    if split not in candidates:
        raise PolicyError(f"split {split} is not a candidate split point {sorted(candidates)}")
    if split == 0:
        return 0
    ranges = segment_ranges(num_blocks, candidates)
    if split == num_blocks + 1:
        return len(ranges)
    return next(i + 1 for i, (_, b) in enumerate(ranges) if b == split)
