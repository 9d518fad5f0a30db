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
from dataclasses import dataclass, field
from pathlib import Path

from janus_deploy import JanusError
from janus_deploy.schedule.runlog import RequestRecord
from janus_deploy.sim.simulator import RequestLog, SystemResult

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


def plot_simulation(results: Mapping[str, SystemResult], path: str | Path, trace_name: str, edge, cloud, cfg,
                    accuracy=None, rtt_ms: float = 0.0) -> list[Path]:
    """Every picture of one ``simulate`` run: the Fig. 7 bars (``path``), the Fig. 8 series
    (``<stem>-timeseries``) and, when janus-deploy ran, its decision map (``<stem>-decisions``) drawn
    over the same controller the simulation used (``cfg``: the run's :class:`SimConfig`)."""
    from janus_deploy.schedule.controller import build_controller

    title = f"{trace_name}, SLA {cfg.sla_ms:g} ms"
    out = plot_all(results, path, cfg.sla_ms, title=title, accuracy=accuracy is not None, num_blocks=edge.num_blocks)
    if "janus-deploy" in results:
        base = Path(path) if Path(path).suffix else Path(path).with_suffix(".png")
        deploy = build_controller(edge, cloud, cfg.controller, accuracy=accuracy, sla_ms=cfg.sla_ms, codec=cfg.codec,
                                  frame_bytes=cfg.frame_bytes, codecs=cfg.codecs).deploy
        series = DecisionSeries.from_request_log(results["janus-deploy"].log)
        out.append(plot_decision_map(series, deploy, base.with_name(f"{base.stem}-decisions{base.suffix}"),
                                     margin=cfg.controller.margin, rtt_ms=rtt_ms,
                                     title=f"janus-deploy over {trace_name}, SLA {cfg.sla_ms:g} ms", measured="simulated"))
    return out


# --------------------------------------------------------------------------- decision map

KIND_COLOURS = {"frame": "#1f77b4", "split": "#9467bd", "device": "#7f7f7f"}


@dataclass
class DecisionSeries:
    """Per request of one run (real or simulated): when it started, the link, the bandwidth the
    scheduler was given, what it chose (profile level index, split), the predicted and the
    measured (or simulated) latency, and whether it fell back to the device."""

    t: list[float]
    link_mbps: list[float | None]
    est_mbps: list[float]
    level_index: list[int]
    split: list[int]
    predicted_ms: list[float]
    latency_ms: list[float]
    fallback: list[bool]
    probe_t: list[float] = field(default_factory=list)  # when a probe measured the link

    @classmethod
    def from_request_log(cls, log: RequestLog) -> DecisionSeries:
        """A simulated system's :class:`~janus_deploy.sim.simulator.RequestLog`."""
        n = len(log)
        return cls(list(log.start_s), list(log.bw_mbps), list(log.est_mbps), list(log.level_index), list(log.split),
                   list(log.predicted_ms), list(log.latency_ms), [False] * n)

    @classmethod
    def from_run_records(cls, records: Sequence[RequestRecord], trace=None) -> DecisionSeries:
        """The request records of a run log (``run --log``, the demo's ``requests.jsonl``);
        forced and failed requests are left out. ``trace``: the run's link trace (the link at
        each request's start; else what the records saw, nothing for device-only requests)."""
        rows = [r for r in records if r.error is None and r.replayed]
        link = ([trace.value_at(r.t) for r in rows] if trace is not None
                else [r.link.trace_mbps if r.link is not None else None for r in rows])
        probes = [r.t + r.measured.total_ms / 1e3 for r in rows if r.probe is not None]
        nan = float("nan")
        return cls([r.t for r in rows], link,
                   [r.controller.bandwidth_mbps if r.controller is not None else nan for r in rows],
                   [r.decision.profile_level for r in rows if r.decision is not None],
                   [r.decision.split for r in rows if r.decision is not None],
                   [nan if r.predicted is None or r.predicted.total_ms is None else r.predicted.total_ms for r in rows],
                   [r.measured.total_ms for r in rows],
                   [r.fallback is not None for r in rows], probes)


def _kind(split: int, n_blocks: int) -> str:
    return "frame" if split == 0 else "device" if split > n_blocks else "split"


def _kind_text(kind: str, split: int | None = None) -> str:
    return {"frame": "send the frame (s=0)", "device": "device only",
            "split": "split" if split is None else f"split at s={split}"}[kind]


def plot_decision_map(series: DecisionSeries, scheduler, path: str | Path, *, margin: float = 0.0,
                      rtt_ms: float = 0.0, title: str = "", measured: str = "measured") -> Path:
    """What the scheduler chose and why, in three panels.

    1. The map: against the bandwidth the scheduler is given (log x), the predicted latency
       (log y) of sending the frame, of every intermediate split and of device-only, each at
       the level chosen most often in the run (the scheduler's own cost model,
       :meth:`Scheduler.evaluate`, at ``rtt_ms``); the background says what
       :meth:`Scheduler.decide` picks at each bandwidth (frame / split / device only, with the
       crossing bandwidths marked), the SLA and the budget ``SLA·(1 − margin)`` are lines; the
       run's requests are dots at (bandwidth given, ``measured`` latency), coloured by what they
       chose, fallbacks crossed.
    2. Over the run's time: the link and the bandwidth given to the scheduler, the background
       coloured by the chosen configuration.
    3. Predicted and ``measured`` latency per request against the SLA.
    """
    import numpy as np

    plt = _pyplot()
    if not series.t:
        raise PlotError("no request to draw in the decision map")
    sla = scheduler.sla_ms
    n = scheduler.n
    kinds = [_kind(s, n) for s in series.split]
    top_level = max(set(series.level_index), key=series.level_index.count)
    lv = scheduler.edge.levels[top_level]
    level_text = f"level {lv.label}"
    est = np.asarray(series.est_mbps, dtype=float)
    pos = est[est > 0]
    lo = max(0.05, min(0.3, float(pos.min()) / 2)) if pos.size else 0.3
    hi = max(300.0, float(pos.max()) * 2) if pos.size else 300.0
    grid = np.geomspace(lo, hi, 400)
    zero_x = lo * 1.25  # where requests given 0 Mbit/s (an outage seen, offloading off) are drawn
    x_of = np.where(est > 0, np.maximum(est, zero_x), zero_x)  # (estimates below the axis: at its edge too)

    fig = plt.figure(figsize=(10.5, 11.5))
    gs = fig.add_gridspec(3, 1, height_ratios=[2.3, 1.0, 1.2])
    ax = fig.add_subplot(gs[0])
    ax_bw = fig.add_subplot(gs[1])
    ax_lat = fig.add_subplot(gs[2], sharex=ax_bw)

    # 1. the map: what decide() picks at each bandwidth, as background bands
    picks = [scheduler.decide(float(b), rtt_ms, margin) for b in grid]
    pick_kind = [_kind(d.split, n) for d in picks]
    start = 0
    for i in range(1, len(grid) + 1):
        if i == len(grid) or pick_kind[i] != pick_kind[start] or picks[i].label != picks[start].label:
            k = pick_kind[start]
            ax.axvspan(grid[start], grid[min(i, len(grid) - 1)], color=KIND_COLOURS[k], alpha=0.10, lw=0)
            if i < len(grid):
                ax.axvline(grid[i], color="0.4", lw=0.7, ls=":")
                ax.text(grid[i], 0.45, f"{grid[i]:.3g} Mbit/s", transform=ax.get_xaxis_transform(), rotation=90,
                        va="center", ha="right", fontsize=7.5, color="0.2",
                        bbox=dict(fc="white", ec="none", alpha=0.8, pad=1))
            mid = math.sqrt(grid[start] * grid[min(i, len(grid) - 1)])
            ax.text(mid, 0.80, f"picks {picks[start].label}\n({_kind_text(k, picks[start].split)})",
                    transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8,
                    color=KIND_COLOURS[k], fontweight="bold")
            start = i
    # the options it weighs, at the level chosen most often
    curves = []
    for s in scheduler.candidates:
        y = np.asarray([scheduler.evaluate(top_level, s, float(b), rtt_ms).predicted_ms for b in grid])
        k = _kind(s, n)
        style = {"frame": dict(lw=2.0, ls="-"), "device": dict(lw=2.0, ls="-"), "split": dict(lw=1.0, ls="--")}[k]
        ax.plot(grid, y, color=KIND_COLOURS[k], label=f"predicted: {_kind_text(k, s)}", **style)
        curves.append(y)
    ax.axhline(sla, color=SLA_COLOUR, ls="--", lw=1.0)
    ax.text(grid[0], sla, f" SLA {sla:g} ms", ha="left", va="bottom", fontsize=8)
    if margin > 0:
        ax.axhline(sla * (1 - margin), color=SLA_COLOUR, ls=":", lw=0.8)
        ax.text(grid[0], sla * (1 - margin), f" budget SLA·(1−{margin:g})", ha="left", va="top", fontsize=7)
    lat = np.asarray(series.latency_ms, dtype=float)
    for k in ("frame", "split", "device"):
        idx = [i for i, kk in enumerate(kinds) if kk == k and not series.fallback[i]]
        if idx:
            ax.plot(x_of[idx], lat[idx], "o", ms=3.5, alpha=0.7, color=KIND_COLOURS[k], mec="none",
                    label=f"{measured}: {_kind_text(k)} ({len(idx)})")
    fb = [i for i, f in enumerate(series.fallback) if f]
    if fb:
        ax.plot(x_of[fb], lat[fb], "x", ms=6, color="#d62728", label=f"{measured}: fell back ({len(fb)})")
    zeros = int(np.sum(est < zero_x))
    if zeros:
        ax.annotate(f"{zeros} given ≤ {zero_x:.2g} Mbit/s\n(an outage seen,\nor offloading off)",
                    (zero_x, float(np.median(lat[est < zero_x]))),
                    textcoords="offset points", xytext=(8, 18), fontsize=7, color="0.25",
                    arrowprops=dict(arrowstyle="-", color="0.5", lw=0.6))
    if "split" not in pick_kind:
        ax.text(0.5, 0.93, "no split is ever picked at this RTT: at every bandwidth a dashed split curve lies above "
                "the lower of\nsending the frame and device only (payload of the tokens at s ≥ 1 ≥ the frame's, "
                "plus the edge's head)", transform=ax.transAxes, ha="center", va="top", fontsize=7.5,
                color=KIND_COLOURS["split"], bbox=dict(fc="white", ec=KIND_COLOURS["split"], lw=0.6, alpha=0.9))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    finite = np.concatenate([c[np.isfinite(c)] for c in curves] + [lat])
    ax.set_ylim(max(0.5, float(finite.min()) / 1.5), max(float(lat.max()), sla) * 4)
    ax.set_xlabel("bandwidth the scheduler is given (Mbit/s, log; 0 is drawn at the left edge)")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title(f"decision map: options at {level_text} (chosen most often), RTT {rtt_ms:.2g} ms; background: "
                 "what the scheduler picks", fontsize=9)
    ax.legend(fontsize=7, loc="lower left", ncol=2, framealpha=0.9)

    # 2. over time: link, estimate, chosen kind as background
    t = np.asarray(series.t, dtype=float)
    ends = np.append(t[1:], t[-1] + lat[-1] / 1e3)
    for i, k in enumerate(kinds):
        ax_bw.axvspan(t[i], ends[i], color=KIND_COLOURS[k], alpha=0.18, lw=0)
    link = [math.nan if v is None else v for v in series.link_mbps]
    ax_bw.step(t, link, where="post", color=LINK_COLOUR, lw=0.9, label="link (trace)")
    ax_bw.step(t, est, where="post", color=ESTIMATE_COLOUR, lw=1.1, label="given to the scheduler")
    for i, pt in enumerate(series.probe_t):
        ax_bw.axvline(pt, color="black", lw=0.8, ls="-.", label="probe of the link" if i == 0 else None)
    ax_bw.set_yscale("symlog", linthresh=1.0)
    ax_bw.set_ylim(bottom=0)
    ax_bw.set_ylabel("Mbit/s")
    handles = [plt.Rectangle((0, 0), 1, 1, color=KIND_COLOURS[k], alpha=0.4) for k in ("frame", "split", "device")]
    counts = {k: kinds.count(k) for k in ("frame", "split", "device")}
    leg1 = ax_bw.legend(fontsize=7, loc="upper left")
    ax_bw.add_artist(leg1)
    ax_bw.legend(handles, [f"chose: {_kind_text(k)} ({counts[k]})" for k in ("frame", "split", "device")],
                 fontsize=7, loc="upper right", ncol=3)
    ax_bw.tick_params(labelbottom=False)

    # 3. predicted vs measured latency
    ax_lat.plot(t, series.predicted_ms, ".", ms=3, color="0.2", label="predicted")
    ax_lat.plot(t, lat, ".", ms=3, color="#d62728", alpha=0.7, label=measured)
    ax_lat.axhline(sla, color=SLA_COLOUR, ls="--", lw=0.8)
    over = int(np.sum(lat > sla + 1e-9))
    ax_lat.text(0.99, 0.03, f"{over} of {len(lat)} over the {sla:g} ms SLA", transform=ax_lat.transAxes,
                ha="right", fontsize=8)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency (ms, log)")
    ax_lat.set_xlabel("time (s)")
    ax_lat.legend(fontsize=7, loc="upper left", ncol=2)
    return _save(fig, plt, path, title, dpi=100)
