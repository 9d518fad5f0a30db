"""Figures in the style of the Janus paper: Fig. 7 (bars per system) and Fig. 8 (time series).

Every figure uses the same colour per system (:data:`SYSTEM_COLOURS`), the same y-scale across
the systems' columns, a logarithmic latency axis (spikes are shown, never clipped; the largest is
annotated), marks the device-only (s = N+1) and cloud-only (s = 0) splits, adds an accuracy panel
when the run had an accuracy table, and states the time window it shows.

matplotlib is optional (``pip install 'janus-deploy[plot]'``) and imported only here.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from pathlib import Path

from janus_deploy import JanusError
from janus_deploy.sim.simulator import SystemResult

# one colour per system in every figure (matplotlib's tab10 entries)
SYSTEM_COLOURS = {
    "device-only": "#7f7f7f",
    "cloud-only": "#8c564b",
    "mixed": "#bcbd22",
    "janus-paper": "#1f77b4",
    "janus-deploy": "#d62728",
}
LINK_COLOUR, ESTIMATE_COLOUR, SLA_COLOUR = "#2ca02c", "#ff7f0e", "black"


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


def colour(system: str) -> str:
    return SYSTEM_COLOURS.get(system, "#9467bd")


def _has_accuracy(results: Mapping[str, SystemResult]) -> bool:
    return any(r.metrics.get("accuracy") is not None for r in results.values())


def plot_bars(results: Mapping[str, SystemResult], path: str | Path, title: str = "",
              accuracy: bool | None = None) -> Path:
    """Fig. 7 style: SLA violation ratio (%), throughput (requests/s) and, with an accuracy
    table, the mean accuracy of the chosen levels, per system (one colour per system)."""
    plt = _pyplot()
    names = list(results)
    with_acc = _has_accuracy(results) if accuracy is None else accuracy
    panels = [("SLA violation ratio (%)", [100 * (results[n].metrics["violation_ratio"] or 0.0) for n in names], "{:.1f}"),
              ("throughput (requests/s)", [results[n].metrics["throughput_rps"] or 0.0 for n in names], "{:.2f}")]
    if with_acc:
        panels.append(("mean accuracy of the chosen levels",
                       [results[n].metrics.get("accuracy") for n in names], "{:.3f}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False)
    for ax, (label, vals, fmt) in zip(axes[0], panels):
        shown = [0.0 if v is None else v for v in vals]
        ax.bar(range(len(names)), shown, color=[colour(n) for n in names])
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
        ax.set_ylabel(label)
        for i, v in enumerate(vals):
            ax.text(i, shown[i], "n/a" if v is None else fmt.format(v), ha="center", va="bottom", fontsize=8)
        if label.startswith("SLA"):
            ax.set_ylim(0, 105)
        elif label.startswith("mean accuracy"):
            known = [v for v in vals if v is not None]
            lo = min(known) if known else 0.0
            ax.set_ylim(max(0.0, lo - 0.1 * (1 - lo) - 0.02), 1.0)
    counts = ", ".join(f"{n} {len(results[n].log):,} ({results[n].log.elapsed_s:,.0f} s)" for n in names)
    fig.text(0.5, 0.005, f"each bar: every request of the run; requests (simulated time): {counts}",
             ha="center", va="bottom", fontsize=7, color="0.25")
    return _save(fig, plt, path, title, dpi=120, bottom=0.05)


def plot_timeseries(results: Mapping[str, SystemResult], path: str | Path, sla_ms: float,
                    systems: Sequence[str] | None = None, window_s: float = 180.0,
                    title: str = "", num_blocks: int | None = None, accuracy: bool | None = None) -> Path:
    """Fig. 8 style, one column per system: link bandwidth (and the scheduler's estimate),
    chosen α, chosen split (device-only and cloud-only marked), latency against the SLA (log
    scale, the window's largest latency annotated) and, with an accuracy table, the accuracy of
    the chosen level; the first ``window_s`` simulated seconds (paper mode: the cumulative
    latency is the time axis). Rows share their y-scale across the columns."""
    plt = _pyplot()
    names = [s for s in (systems or [n for n in results if n.startswith("janus")] or list(results))
             if s in results]
    if not names:
        raise PlotError("no simulated system to plot")
    with_acc = _has_accuracy(results) if accuracy is None else accuracy
    rows = 5 if with_acc else 4
    fig, axes = plt.subplots(rows, len(names), figsize=(5.6 * len(names), 1.9 * rows + 0.9), sharex="all",
                             sharey="row", squeeze=False)
    n_blocks = num_blocks if num_blocks is not None else max(max(results[n].log.split, default=1) for n in names) - 1
    windows = []
    lat_max = 0.0
    for col, name in enumerate(names):
        log = results[name].log
        k = max(1, bisect_right(log.start_s, window_s))
        x = log.start_s[:k]
        windows.append((k, len(log), log.elapsed_s))
        c = colour(name)
        ax_bw, ax_a, ax_s, ax_l = axes[:4, col]
        ax_bw.step(x, log.bw_mbps[:k], where="post", label="link", lw=0.9, color=LINK_COLOUR)
        ax_bw.plot(x, log.est_mbps[:k], label="scheduler input", lw=0.9, alpha=0.85, color=ESTIMATE_COLOUR)
        ax_bw.set_title(name, color=c, fontweight="bold")
        ax_a.plot(x, log.alpha[:k], ".", ms=2.5, color=c)
        ax_s.plot(x, log.split[:k], ".", ms=2.5, color=c)
        for s, text in ((0, "cloud only (s=0)"), (n_blocks + 1, f"device only (s={n_blocks + 1})")):
            ax_s.axhline(s, color="0.6", ls=":", lw=0.8)
            ax_s.text(0.01, s, text, transform=ax_s.get_yaxis_transform(), fontsize=7, va="bottom", color="0.35")
        lat = log.latency_ms[:k]
        ax_l.plot(x, lat, lw=0.8, color=c)
        ax_l.axhline(sla_ms, color=SLA_COLOUR, ls="--", lw=0.8)
        ax_l.text(0.99, sla_ms, f"SLA {sla_ms:g} ms", transform=ax_l.get_yaxis_transform(), ha="right",
                  va="bottom", fontsize=7)
        over = sum(1 for v in lat if v > sla_ms + 1e-9)
        i_max = max(range(len(lat)), key=lat.__getitem__)
        lat_max = max(lat_max, lat[i_max])
        ax_l.plot([x[i_max]], [lat[i_max]], "o", ms=4, mfc="none", color=c)
        ax_l.annotate(f"max {lat[i_max]:,.0f} ms", (x[i_max], lat[i_max]), textcoords="offset points",
                      xytext=(7, 0), va="center", fontsize=7)
        ax_l.text(0.99, 0.03, f"{over} of {len(lat):,} over the SLA", transform=ax_l.transAxes, ha="right",
                  fontsize=7)
        if with_acc:
            acc = [math.nan if a is None else a for a in log.accuracy[:k]]
            axes[4, col].plot(x, acc, ".", ms=2.5, color=c)
        axes[-1, col].set_xlabel("simulated time (s)")
    axes[0, 0].set_ylabel("uplink (Mbit/s)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", ncol=2, fontsize=8, frameon=False)
    axes[1, 0].set_ylabel("α (exponential)")
    axes[2, 0].set_ylabel("split s")
    axes[2, 0].set_ylim(-1.5, n_blocks + 2.5)
    axes[3, 0].set_ylabel("latency (ms, log)")
    axes[3, 0].set_yscale("log")
    axes[3, 0].set_ylim(bottom=None, top=max(lat_max, sla_ms) * 2.5)
    if with_acc:
        axes[4, 0].set_ylabel("accuracy of the level")
    end = min(window_s, max(elapsed for _, _, elapsed in windows))
    shown = ", ".join(f"{name}: requests 1-{k:,} of {n:,} ({elapsed:,.1f} s simulated)"
                      for name, (k, n, elapsed) in zip(names, windows))
    window_note = (f"time window shown: simulated seconds 0 to {end:,.1f}"
                   + (" (the whole run)" if end < window_s else f" (the first {window_s:g} s)") + f"; {shown}")
    fig.text(0.5, 0.005, window_note, ha="center", va="bottom", fontsize=8, color="0.25")
    return _save(fig, plt, path, title, dpi=110, bottom=0.03)


def _save(fig, plt, path: str | Path, title: str, dpi: int, bottom: float = 0.0) -> Path:
    """Title, layout, write (creating folders) and close a figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def plot_all(results: Mapping[str, SystemResult], path: str | Path, sla_ms: float,
             title: str = "", accuracy: bool | None = None, num_blocks: int | None = None,
             window_s: float = 180.0) -> list[Path]:
    """``path`` gets the Fig. 7 bars; ``<stem>-timeseries<suffix>`` the Fig. 8 series.
    ``accuracy``: add the accuracy panels (default: when the results carry accuracies)."""
    out = Path(path)
    if out.suffix == "":
        out = out.with_suffix(".png")
    series = out.with_name(f"{out.stem}-timeseries{out.suffix}")
    return [plot_bars(results, out, title, accuracy=accuracy),
            plot_timeseries(results, series, sla_ms, title=title, num_blocks=num_blocks, accuracy=accuracy,
                            window_s=window_s)]
