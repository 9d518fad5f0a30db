"""What the controller knows about the server's current load: its one estimate of the cloud.

The profiles say what the server spends on each option when it is idle (decode + tail,
:meth:`Scheduler.server_ms`). Under a fleet's load the server's queue and batching add to that,
minute by minute. Every answer that reports the server's own time (the built-in server's
``janus_server_ms``, the Triton tail models' ``janus_server_ms`` output) is one sample: the
reported time next to the profile's expectation for the same option (an :class:`Observation`'s
``server_ms`` and ``expected_ms``). :class:`CloudLoad` turns the recent samples into the load the
scheduler adds to every option that sends (``Scheduler.decide(..., cloud_factor=,
cloud_extra_ms=)``):

* ``factor`` (the controller's default): a multiplier, ``server_ms / expected_ms`` of the
  profile's decode + tail. It moves decisions to later splits (smaller tails) as well as to the
  device, so a loaded server also gets *lighter* requests; in the fleet simulator it keeps
  violations far lower than ``extra`` at the same load (docs/scale-out.md);
* ``extra``: an additive wait, ``server_ms − expected_ms``: the same for every option that sends
  (what a queue adds, whichever tail a request runs): only "send or not", no lighter tails;
* ``off``: the profile's idle costs (the load-unaware controller, for comparison).

In ``factor`` mode the server's time has two parts, learnt apart when the answer says which is
which (an :class:`Observation`'s ``server_compute_ms``: the built-in server's
``janus_decode_ms + janus_compute_ms``): the **compute** (decode + tail, what the profile
measured) is compared with the profile as a ratio, the proportional part; the **rest** (parsing,
thread hops, the queue before the engine: ``janus_server_ms`` minus the compute) is a wait the
same for every option, the fixed part, charged as ``cloud_extra_ms``. Without the split (Triton's
tails, the fleet simulator, older logs) the whole reported time is the ratio's numerator, as
before. Measured on the demo's loopback server: the rest is 0.25-0.35 ms at every option while
the tails are 0.05-2.6 ms, so one ratio of the whole time read a 0.05 ms tail as a 6x load and a
2 ms tail as 1.5x; the parts predict both within the compute's own noise (docs/runtime.md, "What
the controller learns").

The ratio is taken over at least :data:`MIN_EXPECTED_MS`: without the split, a server's fixed
costs (parsing, a thread hop: a fraction of a ms) over a tail the profile puts at 0.1 ms would
otherwise read as a 10× load and push every option off the cloud.

The estimate is the largest of the last ``window`` samples, each decayed towards "no load" by
its age (half-life ``half_life_s``), never below "no load": a slowing server moves decisions
towards the device at once, and once the edge has stopped sending (no new samples), the old
samples fade, the cloud's options come back, and the next answers show whether the server has
recovered (a fresh low sample is not outvoted by an old high one: each sample fades on its own).

Time is the caller's clock (``t`` of the observations and of the decision), so the same
observations give the same load on every path: simulator, edge runtime and replay.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from janus_deploy import JanusError

CLOUD_LOAD_MODES = ("extra", "factor", "off")
MIN_EXPECTED_MS = 1.0  # factor: a ratio over at least this (a 0.1 ms tail's fixed costs are no load)
NEUTRAL = (1.0, 0.0)  # (factor, extra ms): the profile's costs


class CloudLoadError(JanusError):
    """Bad cloud-load settings or samples."""


@dataclass(frozen=True)
class CloudSample:
    t: float
    value: float  # extra: ms over the profile; factor: ratio - 1
    fixed: float = 0.0  # factor with the server's compute reported: the rest of its time (ms)


class CloudLoad:
    """The server's load learnt from its reported times (module docstring)."""

    def __init__(self, mode: str = "factor", window: int = 5, half_life_s: float = 4.0) -> None:
        if mode not in CLOUD_LOAD_MODES:
            raise CloudLoadError(f"unknown cloud-load mode {mode!r}; choose one of {', '.join(CLOUD_LOAD_MODES)}")
        if int(window) != window or window < 1:
            raise CloudLoadError(f"the cloud-load window must be an integer >= 1, got {window!r}")
        if not (math.isfinite(half_life_s) and half_life_s > 0):
            raise CloudLoadError(f"the cloud-load half-life must be > 0 s, got {half_life_s!r}")
        self.mode, self.half_life_s = mode, float(half_life_s)
        self.samples: deque[CloudSample] = deque(maxlen=int(window))
        self.count = 0

    def observe(self, t: float, server_ms: float, expected_ms: float,
                compute_ms: float | None = None) -> float | None:
        """Learn from one answer: the server reported ``server_ms`` where the profile expects
        ``expected_ms``, ``compute_ms`` of it its decode + tail (None: not reported); returns the
        sample (extra ms, or the ratio for ``factor``; None: ignored, as when the mode is off or
        the numbers are not usable)."""
        if self.mode == "off" or not (math.isfinite(server_ms) and server_ms >= 0
                                      and math.isfinite(expected_ms) and expected_ms >= 0):
            return None
        if self.mode == "factor":
            part, fixed = server_ms, 0.0  # without the split: the whole time over the profile
            if compute_ms is not None and math.isfinite(compute_ms) and compute_ms >= 0:
                part, fixed = compute_ms, max(server_ms - compute_ms, 0.0)
            ratio = part / max(expected_ms, MIN_EXPECTED_MS)
            self.samples.append(CloudSample(float(t), ratio - 1.0, fixed))
            self.count += 1
            return ratio
        extra = server_ms - expected_ms
        self.samples.append(CloudSample(float(t), extra))
        self.count += 1
        return extra

    def _decayed(self, t: float) -> tuple[float, float]:
        """The decayed maxima of the window's (value, fixed) parts, each on its own."""
        best, fixed = 0.0, 0.0
        for s in self.samples:
            if s.value > 0 or s.fixed > 0:
                decay = 0.5 ** (max(t - s.t, 0.0) / self.half_life_s)
                if s.value > 0:
                    best = max(best, s.value * decay)
                if s.fixed > 0:
                    fixed = max(fixed, s.fixed * decay)
        return best, fixed

    def estimate(self, t: float) -> tuple[float, float]:
        """(cloud_factor, cloud_extra_ms) for a decision at ``t``: :data:`NEUTRAL` when off or
        before any sample, else the decayed maximum of the window (never below no load); in
        ``factor`` mode with the compute reported, the ratio's and the rest's maxima apart."""
        if self.mode == "off" or not self.samples:
            return NEUTRAL
        v, fixed = self._decayed(t)
        if v == 0.0 and fixed == 0.0:
            return NEUTRAL
        return (1.0 + v, fixed) if self.mode == "factor" else (1.0, v)


__all__ = ["CLOUD_LOAD_MODES", "MIN_EXPECTED_MS", "CloudLoad", "CloudLoadError", "CloudSample", "NEUTRAL"]
