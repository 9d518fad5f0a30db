"""Uplink bandwidth estimators fed by observed transfers.

Every estimator is told about finished transfers with :meth:`Estimator.observe` (bytes, seconds)
or, when a throughput sample is observed directly (the paper's trace-driven setting), with
:meth:`Estimator.observe_rate`. :meth:`Estimator.estimate` is the prediction for the next
transfer in Mbit/s. Each observation is also scored against the prediction that was standing
when it arrived, and :meth:`Estimator.recent_error` returns the largest absolute relative error of
the last ``window`` predictions: the scheduler's safety margin.

* :class:`HarmonicMean`: harmonic mean of the last ``window`` throughputs (FESTIVE; what the Janus
  paper uses). Robust to single spikes; an outage sample (0 Mbit/s) drives it to 0.
* :class:`EWMA`: exponentially weighted moving average with weight ``alpha`` on the newest sample.
* :class:`RobustMPC`: the harmonic mean divided by ``1 + max relative error`` over the last
  ``window`` predictions (Yin et al., SIGCOMM 2015); already conservative, so
  :attr:`Estimator.discounts_error` is True and callers should not deflate it again.
"""

from __future__ import annotations

import math
from collections import deque

from janus_deploy import JanusError

#: Names accepted by :func:`make_estimator` (and the CLI's --estimator)
ESTIMATORS = ("harmonic", "ewma", "robustmpc")


class EstimatorError(JanusError):
    """A bandwidth observation or estimator parameter is invalid."""


def rate_mbps(nbytes: float, seconds: float) -> float:
    """Throughput of a transfer in Mbit/s; rejects non-positive or non-finite durations."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)) or seconds <= 0:
        raise EstimatorError(
            f"a transfer must take a positive, finite time to measure bandwidth, got {seconds!r} s "
            "(drop zero-byte / zero-duration transfers before observing them)"
        )
    if not math.isfinite(nbytes) or nbytes < 0:
        raise EstimatorError(f"transfer size must be a finite number of bytes >= 0, got {nbytes!r}")
    return nbytes * 8.0 / seconds / 1e6


class Estimator:
    """Base class: error tracking, cold start and the observe/estimate protocol."""

    #: True when :meth:`estimate` already accounts for prediction error (RobustMPC)
    discounts_error = False

    def __init__(self, cold_start_mbps: float, window: int = 5) -> None:
        if not math.isfinite(cold_start_mbps) or cold_start_mbps <= 0:
            raise EstimatorError(f"the cold-start bandwidth must be > 0 Mbit/s, got {cold_start_mbps}")
        if int(window) != window or window < 1:
            raise EstimatorError(f"the estimator window must be an integer >= 1, got {window}")
        self.cold_start_mbps = float(cold_start_mbps)
        self.window = int(window)
        self._errors: deque[float] = deque(maxlen=self.window)
        self._over: deque[float] = deque(maxlen=self.window)  # the same where the estimate overshot, else 0
        self._count = 0

    # ---- protocol
    def observe(self, nbytes: float, seconds: float) -> float:
        """Record a finished transfer; returns its throughput in Mbit/s."""
        rate = rate_mbps(nbytes, seconds)
        self.observe_rate(rate)
        return rate

    def observe_rate(self, mbps: float) -> None:
        """Record a directly observed throughput sample (Mbit/s, >= 0; 0 = outage)."""
        if not math.isfinite(mbps) or mbps < 0:
            raise EstimatorError(f"a throughput sample must be a finite Mbit/s >= 0, got {mbps!r}")
        # score the point prediction that was standing (the cold-start guess included)
        pred = self._raw_prediction()
        err = _rel_error(pred, mbps)
        self._errors.append(err)
        self._over.append(err if pred > mbps and self._count > 0 else 0.0)
        self._count += 1
        self._update(float(mbps))

    def estimate(self) -> float:
        """Predicted bandwidth for the next transfer (Mbit/s); the cold-start value until fed."""
        return self._raw_prediction()

    def recent_error(self) -> float:
        """Max absolute relative error of the last ``window`` point predictions (0 before any)."""
        return max(self._errors) if self._errors else 0.0

    def overshoot_error(self) -> float:
        """As :meth:`recent_error`, over the estimates that overshot the sample (predicted more
        than the link gave) and were made from samples (0 before any): what janus-deploy's
        deflation divides by. An overshoot makes a request late; an undershoot (an estimate of 0
        against a link that came back, a dip's low samples against the recovered link) only keeps
        the edge on the device, and counted, its error (up to 1) halved the bandwidth of a link that
        had come back for ``window`` more samples; the cold-start value is a guess, not an estimate."""
        return max(self._over) if self._over else 0.0

    @property
    def observations(self) -> int:
        return self._count

    # ---- to implement
    def _raw_prediction(self) -> float:
        """The point prediction (before any error discount)."""
        raise NotImplementedError

    def _update(self, mbps: float) -> None:
        raise NotImplementedError


def _rel_error(predicted: float, actual: float) -> float:
    """|predicted − actual| / actual, capped at 1e3 (an outage makes the ratio unbounded)."""
    if actual <= 0:
        return 0.0 if predicted <= 0 else 1e3
    return min(abs(predicted - actual) / actual, 1e3)


class HarmonicMean(Estimator):
    """Harmonic mean of the last ``window`` samples (FESTIVE). A zero sample gives 0."""

    def __init__(self, cold_start_mbps: float, window: int = 5) -> None:
        super().__init__(cold_start_mbps, window)
        self._samples: deque[float] = deque(maxlen=self.window)

    def _update(self, mbps: float) -> None:
        self._samples.append(mbps)

    def _raw_prediction(self) -> float:
        if not self._samples:
            return self.cold_start_mbps
        if any(s <= 0 for s in self._samples):
            return 0.0
        acc = 0.0  # a plain left-to-right sum: Python 3.12's sum() compensates, libjanus (C) does not
        for s in self._samples:
            acc += 1.0 / s
        return len(self._samples) / acc


class EWMA(Estimator):
    """``est ← alpha·sample + (1 − alpha)·est``; the first sample replaces the cold start."""

    def __init__(self, cold_start_mbps: float, alpha: float = 0.3, window: int = 5) -> None:
        super().__init__(cold_start_mbps, window)
        if not 0 < alpha <= 1:
            raise EstimatorError(f"the EWMA weight alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self._value: float | None = None

    def _update(self, mbps: float) -> None:
        self._value = mbps if self._value is None else self.alpha * mbps + (1 - self.alpha) * self._value

    def _raw_prediction(self) -> float:
        return self.cold_start_mbps if self._value is None else self._value


class RobustMPC(HarmonicMean):
    """Harmonic mean over ``window`` divided by ``1 + max relative error`` of the last ``window``
    harmonic-mean predictions (as in Pensieve's robustMPC: the errors scored are those of the
    undiscounted harmonic mean)."""

    discounts_error = True

    def estimate(self) -> float:
        return self._raw_prediction() / (1.0 + self.recent_error())


def make_estimator(name: str, cold_start_mbps: float, *, window: int = 5,
                   ewma_alpha: float = 0.3) -> Estimator:
    """Build an estimator by CLI name (``harmonic``, ``ewma``, ``robustmpc``)."""
    key = name.strip().lower()
    if key in ("harmonic", "harmonic-mean", "festive"):
        return HarmonicMean(cold_start_mbps, window)
    if key == "ewma":
        return EWMA(cold_start_mbps, ewma_alpha, window)
    if key in ("robustmpc", "robust-mpc", "mpc"):
        return RobustMPC(cold_start_mbps, window)
    raise EstimatorError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
