"""Figures in the style of the Janus paper: Fig. 7 (bars per system) and Fig. 8 (time series).

matplotlib is optional (``pip install 'janus-deploy[plot]'``) and imported only here.
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path
from typing import Mapping, Sequence

from janus_deploy import JanusError
from janus_deploy.sim.simulator import SystemResult


class PlotError(JanusError):
    """Plotting is unavailable or was asked for something impossible."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plots need matplotlib: pip install 'janus-deploy[plot]'") from None
    return plt


def plot_bars(results: Mapping[str, SystemResult], path: str | Path, title: str = "") -> Path:
    """Fig. 7 style: latency-violation ratio (%) and throughput (requests/s) per system."""
    plt = _pyplot()
    names = list(results)
    viol = [100 * (results[n].metrics["violation_ratio"] or 0.0) for n in names]
    thr = [results[n].metrics["throughput_rps"] or 0.0 for n in names]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = [f"C{i}" for i in range(len(names))]
    a1.bar(names, viol, color=colors)
    a1.set_ylabel("SLA violation ratio (%)")
    a1.set_ylim(0, 105)
    a2.bar(names, thr, color=colors)
    a2.set_ylabel("throughput (requests/s)")
    for ax, vals, fmt in ((a1, viol, "{:.1f}"), (a2, thr, "{:.2f}")):
        ax.tick_params(axis="x", rotation=25)
        for i, v in enumerate(vals):
            ax.text(i, v, fmt.format(v), ha="center", va="bottom", fontsize=8)
    return _save(fig, plt, path, title, dpi=120)


def plot_timeseries(results: Mapping[str, SystemResult], path: str | Path, sla_ms: float,
                    systems: Sequence[str] | None = None, window_s: float = 180.0,
                    title: str = "") -> Path:
    """Fig. 8 style, per system: link bandwidth (and the estimate), chosen α, chosen split and
    latency against the SLA, over the first ``window_s`` simulated seconds (paper mode: the
    cumulative latency is the time axis)."""
    plt = _pyplot()
    names = [s for s in (systems or [n for n in results if n.startswith("janus")] or list(results))
             if s in results]
    if not names:
        raise PlotError("no simulated system to plot")
    fig, axes = plt.subplots(4, len(names), figsize=(5.5 * len(names), 8), sharex="col",
                             squeeze=False)
    for col, name in enumerate(names):
        log = results[name].log
        k = max(1, bisect_right(log.start_s, window_s))
        x = log.start_s[:k]
        ax_bw, ax_a, ax_s, ax_l = axes[:, col]
        ax_bw.step(x, log.bw_mbps[:k], where="post", label="link", lw=0.9)
        ax_bw.plot(x, log.est_mbps[:k], label="scheduler input", lw=0.9, alpha=0.8)
        ax_bw.set_ylabel("Mbit/s")
        ax_bw.legend(fontsize=7, loc="upper right")
        ax_bw.set_title(name)
        ax_a.plot(x, log.alpha[:k], ".", ms=2)
        ax_a.set_ylabel("α")
        ax_s.plot(x, log.split[:k], ".", ms=2, color="C2")
        ax_s.set_ylabel("split s")
        ax_l.plot(x, log.latency_ms[:k], lw=0.8, color="C3", label="latency")
        ax_l.axhline(sla_ms, color="k", ls="--", lw=0.8, label="SLA")
        ax_l.set_ylabel("ms")
        ax_l.set_ylim(0, max(2 * sla_ms, 1))
        ax_l.set_xlabel("time (s)")
        ax_l.legend(fontsize=7, loc="upper right")
    return _save(fig, plt, path, title, dpi=110)


def _save(fig, plt, path: str | Path, title: str, dpi: int) -> Path:
    """Title, layout, write (creating folders) and close a figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def plot_all(results: Mapping[str, SystemResult], path: str | Path, sla_ms: float,
             title: str = "") -> list[Path]:
    """``path`` gets the Fig. 7 bars; ``<stem>-timeseries<suffix>`` the Fig. 8 series."""
    out = Path(path)
    if out.suffix == "":
        out = out.with_suffix(".png")
    series = out.with_name(f"{out.stem}-timeseries{out.suffix}")
    return [plot_bars(results, out, title), plot_timeseries(results, series, sla_ms, title=title)]
