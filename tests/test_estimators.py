"""Bandwidth estimators on known sequences (expected values worked out by hand)."""

from __future__ import annotations

import pytest

from janus_deploy.schedule.estimators import (EWMA, EstimatorError, HarmonicMean, RobustMPC,
                                              make_estimator, rate_mbps)


def test_rate_from_bytes_and_seconds():
    assert rate_mbps(1_250_000, 1.0) == pytest.approx(10.0)  # 10 Mbit in 1 s
    assert rate_mbps(125_000, 0.05) == pytest.approx(20.0)  # 1 Mbit in 50 ms


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_durations_rejected(seconds):
    est = HarmonicMean(10.0)
    with pytest.raises(EstimatorError, match="positive"):
        est.observe(1000, seconds)
    assert est.observations == 0


def test_harmonic_mean_window():
    est = HarmonicMean(cold_start_mbps=7.0, window=3)
    assert est.estimate() == 7.0  # cold start
    for v in (10.0, 20.0, 40.0):
        est.observe_rate(v)
    assert est.estimate() == pytest.approx(3 / (1 / 10 + 1 / 20 + 1 / 40))  # 17.142857
    est.observe(10_000_000, 1.0)  # 80 Mbit/s pushes 10 out of the window
    assert est.estimate() == pytest.approx(3 / (1 / 20 + 1 / 40 + 1 / 80))  # 34.285714


def test_harmonic_mean_outage_gives_zero_without_dividing():
    est = HarmonicMean(10.0, window=2)
    est.observe_rate(0.0)
    assert est.estimate() == 0.0
    est.observe_rate(8.0)
    assert est.estimate() == 0.0  # the outage is still in the window
    est.observe_rate(8.0)
    assert est.estimate() == pytest.approx(8.0)


def test_recent_error_is_max_relative_error_over_window():
    est = HarmonicMean(cold_start_mbps=10.0, window=2)
    est.observe_rate(20.0)  # predicted 10 → |10-20|/20 = 0.5
    assert est.recent_error() == pytest.approx(0.5)
    est.observe_rate(10.0)  # predicted 20 → 1.0
    assert est.recent_error() == pytest.approx(1.0)
    est.observe_rate(40.0)  # predicted HM(20,10) = 13.333 → 0.6667; window keeps [1.0, 0.667]
    assert est.recent_error() == pytest.approx(1.0)
    est.observe_rate(16.0)  # predicted HM(10,40) = 16 → 0; window [0.667, 0]
    assert est.recent_error() == pytest.approx(2 / 3)


def test_ewma():
    est = EWMA(cold_start_mbps=100.0, alpha=0.5)
    assert est.estimate() == 100.0
    est.observe_rate(10.0)  # the first sample replaces the cold start
    assert est.estimate() == 10.0
    est.observe_rate(30.0)
    assert est.estimate() == pytest.approx(20.0)
    est.observe_rate(40.0)
    assert est.estimate() == pytest.approx(30.0)
    with pytest.raises(EstimatorError, match="alpha"):
        EWMA(10.0, alpha=0.0)


def test_robust_mpc_discounts_by_max_error():
    est = RobustMPC(cold_start_mbps=10.0, window=2)
    assert est.estimate() == 10.0  # no error yet
    est.observe_rate(20.0)  # harmonic predicted 10 → error 0.5; HM = 20
    assert est.estimate() == pytest.approx(20 / 1.5)
    est.observe_rate(10.0)  # harmonic predicted 20 → error 1.0; HM(20, 10) = 13.333
    assert est.estimate() == pytest.approx((2 / (1 / 20 + 1 / 10)) / 2.0)
    assert est.discounts_error and not HarmonicMean(1.0).discounts_error


def test_factory_and_parameter_errors():
    assert isinstance(make_estimator("harmonic", 5.0), HarmonicMean)
    assert isinstance(make_estimator("robustmpc", 5.0), RobustMPC)
    assert isinstance(make_estimator("ewma", 5.0, ewma_alpha=0.2), EWMA)
    with pytest.raises(EstimatorError, match="unknown estimator"):
        make_estimator("kalman", 5.0)
    with pytest.raises(EstimatorError, match="cold-start"):
        HarmonicMean(0.0)
    with pytest.raises(EstimatorError, match="window"):
        HarmonicMean(5.0, window=0)
    with pytest.raises(EstimatorError, match="sample"):
        HarmonicMean(5.0).observe_rate(-1.0)
