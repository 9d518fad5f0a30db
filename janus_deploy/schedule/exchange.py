"""The exchange policy: the one home of the rules that bound an edge-to-cloud exchange.

The runtime's transport and edge (``janus_deploy.runtime``) and the simulator
(``janus_deploy.sim``) both read this object, so the deadline they apply, the shortest timeout
and the probe's size are the same rule, not the same convention. (The probe *interval* is the
controller's: ``ControllerConfig.probe_interval_s``, which both already share.)

The deadline rule: an exchange is cancelled ``sla_ms·timeout_factor`` after its request
started, never sooner than ``min_timeout_ms`` after sending. A probe is not part of a request:
its limit is ``max(sla_ms·timeout_factor, min_timeout_ms)`` from sending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from janus_deploy import JanusError

MIN_TIMEOUT_MS = 20.0
PROBE_BYTES = 32768
TIMEOUT_FACTOR = 1.0


class ExchangePolicyError(JanusError):
    """Bad exchange-policy settings."""


@dataclass(frozen=True)
class ExchangePolicy:
    timeout_factor: float = TIMEOUT_FACTOR
    min_timeout_ms: float = MIN_TIMEOUT_MS
    probe_bytes: int = PROBE_BYTES

    def validate(self) -> ExchangePolicy:
        if not (math.isfinite(self.timeout_factor) and self.timeout_factor > 0):
            raise ExchangePolicyError(f"--timeout-factor must be > 0, got {self.timeout_factor}")
        if not (math.isfinite(self.min_timeout_ms) and self.min_timeout_ms >= 0):
            raise ExchangePolicyError(f"min_timeout_ms must be >= 0, got {self.min_timeout_ms}")
        if self.probe_bytes < 1:
            raise ExchangePolicyError(f"the probe size must be >= 1 byte, got {self.probe_bytes}")
        return self

    def timeout_ms(self, sla_ms: float, elapsed_ms: float) -> float:
        """How long an exchange sent ``elapsed_ms`` after its request started may take."""
        return max(sla_ms * self.timeout_factor - elapsed_ms, self.min_timeout_ms)

    def deadline_ms(self, sla_ms: float, elapsed_ms: float) -> float:
        """The same rule from the request's start: when the exchange is cancelled."""
        return elapsed_ms + self.timeout_ms(sla_ms, elapsed_ms)

    def probe_timeout_ms(self, sla_ms: float) -> float:
        """How long a probe may take."""
        return self.timeout_ms(sla_ms, 0.0)
