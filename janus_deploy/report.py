"""One run report for ``simulate``, ``run``, ``demo``, ``replay`` and ``testbed``, and the run log.

:func:`run_report` turns per-request outcomes into the one schema every command prints
(``docs/runtime.md``, "Run report"): ``requests``, ``answered``, ``errors``, ``fallbacks``,
``fallback_kinds``, ``sla_ms``, ``violation_ratio``, ``throughput_rps``, ``latency_ms_mean``,
``latency_ms_p50/p95/p99``, ``latency_ms_max``, ``deviation_rate``, ``accuracy``, ``mean_alpha``,
``choices`` (configuration label → requests, labels from :func:`janus_deploy.levels.config_label`),
``mean_bytes`` and ``median_abs_pred_err_pct``.

The run log (``run --log``, ``demo``) has its one home in :mod:`janus_deploy.schedule.runlog`
(typed records, writer, checked reader); its names are re-exported here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from janus_deploy.schedule.runlog import RUN_LOG_KIND, RUN_LOG_VERSION, RunLogError, dumps_line, read_run_log

REPORT_KEYS = ("requests", "answered", "errors", "fallbacks", "fallback_kinds", "sla_ms", "violation_ratio",
               "throughput_rps", "latency_ms_mean", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99",
               "latency_ms_max", "deviation_rate", "accuracy", "mean_alpha", "choices", "mean_bytes",
               "median_abs_pred_err_pct")


def run_report(latency_ms: Sequence[float], sla_ms: float, *, throughput_rps: float | None,
               labels: Sequence[str] = (), alphas: Sequence[float] = (), accuracies: Sequence[float | None] = (),
               sent_bytes: Sequence[float] | None = None, predicted_ms: Sequence[float] | None = None,
               fallback_kinds: Sequence[str] = (), errors: int = 0) -> dict[str, Any]:
    """The report of one run. ``latency_ms``: answered requests; ``alphas``: NaN for levels
    without an α (ToMe's constant policy); ``accuracies``: mean only when every request has one;
    ``predicted_ms``: per answered request, for the prediction error (non-finite ones skipped)."""
    lat = np.asarray(latency_ms, dtype=float)
    n = int(lat.size)
    al = np.asarray(alphas, dtype=float)
    al = al[~np.isnan(al)] if al.size else al
    acc = list(accuracies)
    err = None
    if predicted_ms is not None and n:
        p = np.asarray(predicted_ms, dtype=float)
        ok = np.isfinite(p) & (lat > 0)
        if ok.any():
            err = float(np.median(np.abs(p[ok] - lat[ok]) / lat[ok] * 100))

    def pct(q: float) -> float | None:
        return float(np.percentile(lat, q)) if n else None

    return {
        "requests": n + errors,
        "answered": n,
        "errors": errors,
        "fallbacks": len(fallback_kinds),
        "fallback_kinds": dict(Counter(fallback_kinds).most_common()),
        "sla_ms": float(sla_ms),
        "violation_ratio": float(np.mean(lat > sla_ms + 1e-9)) if n else None,
        "throughput_rps": throughput_rps,
        "latency_ms_mean": float(lat.mean()) if n else None,
        "latency_ms_p50": pct(50),
        "latency_ms_p95": pct(95),
        "latency_ms_p99": pct(99),
        "latency_ms_max": float(lat.max()) if n else None,
        "deviation_rate": float(np.mean(np.maximum(0.0, (lat - sla_ms) / sla_ms))) if n else None,
        "accuracy": float(np.mean(acc)) if acc and all(a is not None for a in acc) else None,
        "mean_alpha": float(al.mean()) if al.size else None,
        "choices": dict(Counter(labels).most_common()),
        "mean_bytes": float(np.mean(sent_bytes)) if sent_bytes is not None and len(sent_bytes) else None,
        "median_abs_pred_err_pct": err,
    }


def report_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``b − a`` for the headline figures, and the total variation distance of the choices."""
    out: dict[str, Any] = {}
    for k in ("violation_ratio", "throughput_rps", "latency_ms_p50", "latency_ms_p95"):
        x, y = a.get(k), b.get(k)
        out[k] = None if x is None or y is None else y - x
        if k != "violation_ratio" and x and y is not None:
            out[k + "_rel"] = (y - x) / x
    ca, cb = a.get("choices") or {}, b.get("choices") or {}
    ta, tb = sum(ca.values()) or 1, sum(cb.values()) or 1
    out["choices_tv_distance"] = 0.5 * sum(abs(ca.get(k, 0) / ta - cb.get(k, 0) / tb) for k in set(ca) | set(cb))
    return out


# --------------------------------------------------------------------------- comparison table

COMPARISON_WIDTH = 80


def format_comparison(comparison: dict[str, Any]) -> str:
    """The demo's comparison (:func:`janus_deploy.demo.compare_with_baselines`) as plain text
    that fits :data:`COMPARISON_WIDTH` columns: one row per system, then the legend."""
    import textwrap

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = f"{'system':<13} {'how':<8} {'over SLA':>8} {'goodput/s':>9} {'top-1':>7} {'bytes/req':>9}  most chosen"
    lines = [head, "-" * len(head)]
    for r in comparison["rows"]:
        top = "-" if r["most_chosen"] is None else f"{r['most_chosen']} {100 * r['most_chosen_share']:.0f}%"
        lines.append(f"{r['system']:<13} {r['how']:<8} {pct(r['violation_ratio']):>8} {num(r['goodput_rps'], '.1f'):>9} "
                     f"{pct(r['top1']):>7} {num(r['mean_bytes'], ',.0f'):>9}  {top}")
    legend = (f"Same {comparison['frames']} frames, same trace ({comparison['trace']}) from its start, SLA "
              f"{comparison['sla_ms']:g} ms. ran: this run, measured. replayed: the simulator's controller over the "
              f"trace with the run's profiles and settings, its median RTT sample ({comparison['rtt_ms']:.2f} ms) and "
              "the runtime's deadline; top-1 there is the chosen level's answer on that frame. device-only / "
              "cloud-only: ToMe's constant r, the whole model on the edge / every frame sent; janus-paper: "
              "Algorithm 1 (no RTT, fp32 tokens). goodput: answers within the SLA per second; bytes/req: mean "
              "payload sent.")
    lines += textwrap.wrap(legend, COMPARISON_WIDTH)
    return "\n".join(lines)


__all__ = ["COMPARISON_WIDTH", "format_comparison", "REPORT_KEYS", "RUN_LOG_KIND", "RUN_LOG_VERSION", "RunLogError", "dumps_line", "read_run_log",
           "report_differences", "run_report"]
