"""Small helpers shared by the CLI command modules (console, progress bars, JSON output)."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


PLAIN_PROGRESS_INTERVAL_S = 10.0  # pipes, logs, CI: one progress line at most this often


@contextmanager
def progress_bars():
    """Yields ``update(key, done, total=None, text="")`` for one or more progress tasks (one per
    ``key``: a stage, a simulated system). On a terminal: rich bars on stderr, removed when the
    command fails (so its error stays the one line). Elsewhere (pipes, logs, CI): a plain line on
    stderr at most every :data:`PLAIN_PROGRESS_INTERVAL_S` seconds, so a long run is never silent
    and a short one prints nothing."""
    if not err_console.is_terminal:
        yield _PlainProgress(PLAIN_PROGRESS_INTERVAL_S)
        return
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[text]}"), console=err_console, transient=False,
    ) as prog:
        tasks: dict[str, Any] = {}

        def update(key: str, done: int, total: int | None = None, text: str = "") -> None:
            if key not in tasks:
                tasks[key] = prog.add_task(key, total=total, text="")
            prog.update(tasks[key], completed=done, text=text, **({"total": total} if total is not None else {}))

        try:
            yield update
        except BaseException:
            prog.live.transient = True  # the error line is all that is left
            raise


@contextmanager
def progress_bar(description: str, total: int | None = None):
    """Yields ``update(done, total=None, text="")`` for one task (see :func:`progress_bars`)."""
    with progress_bars() as update:
        yield lambda done, total_=None, text="": update(description, done, total_ if total_ is not None else total, text)


class _PlainProgress:
    """Progress for a stderr that is not a terminal: ``key: done/total (pct), elapsed, text``."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.t0 = self.last = time.monotonic()

    def __call__(self, key: str, done: int, total: int | None = None, text: str = "") -> None:
        now = time.monotonic()
        if now - self.last < self.interval_s:
            return
        self.last = now
        of = f"/{total:,} ({100 * done / total:.0f} %)" if total else ""
        if text:
            from rich.errors import MarkupError
            from rich.text import Text

            try:
                text = Text.from_markup(text).plain
            except MarkupError:
                pass
        err_console.print(f"{key}: {done:,}{of}, {format_seconds(now - self.t0)} elapsed" + (f", {text}" if text else ""),
                          markup=False, highlight=False)


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 04 min``."""
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def narrow_table(title: str | None, *columns: str, left: int = 1):
    """A table that stays readable at 60-80 columns: no vertical rules, numbers right-aligned
    and never cut (``no_wrap``), headers wrap onto two lines instead. The first ``left`` columns
    are left-aligned labels."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1),
              collapse_padding=True, title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i < left else "right", no_wrap=True)
    return t


def print_chunked(out: Console, title: str, label: str, columns: list[str], rows: list[tuple[str, list[str]]]) -> None:
    """A table of many numeric columns (one per split point, say) printed as several narrow
    tables side by side in reading order, each as wide as the console allows: no number is ever
    cut, whatever the terminal width."""
    def width(text: str) -> int:
        return max(len(line) for line in text.split("\n"))

    label_w = max([width(label), *(width(r[0]) for r in rows)]) + 1
    widths = [max([width(c), *(width(r[1][i]) for r in rows)]) + 2 for i, c in enumerate(columns)]
    chunks: list[list[int]] = []
    cur: list[int] = []
    used = label_w
    for i, w in enumerate(widths):
        if cur and used + w > out.width:
            chunks.append(cur)
            cur, used = [], label_w
        cur.append(i)
        used += w
    if cur:
        chunks.append(cur)
    for n, chunk in enumerate(chunks):
        t = narrow_table(title if n == 0 else None, label, *(columns[i] for i in chunk))
        for name, cells in rows:
            t.add_row(name, *(cells[i] for i in chunk))
        out.print(t)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    print(json.dumps(data, indent=1, default=str))


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs, values parsed as JSON where possible (``img_size=64``, ``qk_norm=true``)."""
    from janus_deploy import JanusError

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise JanusError(f"override {item!r} must look like key=value (e.g. img_size=384)")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ---------------------------------------------------------------- controller options
# `simulate`, `run`, `demo` and `testbed` take the same controller settings, with the
# controller's own defaults (janus_deploy.schedule.controller.ControllerConfig).
def controller_config(*, estimator: str, window: int, margin: float, rtt_estimate: str, no_deflate: bool,
                      breaker_failures: int | None = None, **extra: Any):
    """A validated ControllerConfig from the CLI's controller options."""
    from janus_deploy.schedule.controller import ControllerConfig

    changes = dict(estimator=estimator, window=window, margin=margin, rtt_estimate=rtt_estimate,
                   deflate=not no_deflate, **extra)
    if breaker_failures is not None:
        changes["breaker_failures"] = breaker_failures
    return ControllerConfig().with_(**changes)


# ---------------------------------------------------------------- the run report
REPORT_LEGEND = ("configuration = level@split: level is α (exponential), rN is ToMe's constant r; "
                 "split s runs blocks 1..s on the edge, s = N+1 is device-only, s = 0 sends the frame")


def render_report(rep: dict[str, Any], title: str = "janus-deploy run", out: Console | None = None) -> None:
    """The run report (janus_deploy.report) as two small tables and a one-line verdict."""
    from rich.table import Table

    out = out or console

    def f(v: Any, fmt: str = "{:.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    t = Table(title=title, show_header=False)
    t.add_column("metric", style="bold")
    t.add_column("value")
    t.add_row("requests", f"{rep['requests']} ({rep['answered']} answered, {rep['errors']} errors)")
    kinds = ", ".join(f"{k}: {v}" for k, v in rep["fallback_kinds"].items())
    t.add_row("fallbacks", f"{rep['fallbacks']}" + (f" ({kinds})" if kinds else ""))
    vr = rep["violation_ratio"]
    t.add_row("SLA violations", f"{f(None if vr is None else vr * 100, '{:.1f} %')} of {rep['sla_ms']:g} ms")
    t.add_row("throughput", f(rep["throughput_rps"], "{:.2f} req/s"))
    t.add_row("latency p50 / p95 / max", " / ".join(f(rep[k]) for k in ("latency_ms_p50", "latency_ms_p95",
                                                                        "latency_ms_max")) + " ms")
    err = f(rep.get("median_abs_pred_err_pct"), "{:.1f} %")
    if "median_abs_pred_err_pct_no_fallback" in rep:
        err += f" ({f(rep['median_abs_pred_err_pct_no_fallback'], '{:.1f} %')} without fallbacks)"
    t.add_row("median |prediction error|", err)
    if rep.get("mean_bytes") is not None:
        t.add_row("mean bytes sent", f(rep["mean_bytes"], "{:.0f}"))
    out.print(t)
    if rep["choices"]:
        c = Table(title="chosen configurations (level@split)")
        c.add_column("configuration")
        c.add_column("requests", justify="right")
        c.add_column("share", justify="right")
        total = sum(rep["choices"].values())
        for k, v in list(rep["choices"].items())[:12]:
            c.add_row(k, str(v), f"{v / total * 100:.1f} %")
        if len(rep["choices"]) > 12:
            c.add_row(f"({len(rep['choices']) - 12} more)", "", "")
        out.print(c)
        out.print(f"[dim]{REPORT_LEGEND}[/]", soft_wrap=False)
    out.print(verdict(rep))


def verdict(rep: dict[str, Any]) -> str:
    """One line: did the run meet its SLA, and what went wrong."""
    if not rep["answered"]:
        return "[red]verdict: no request was answered[/]"
    if rep.get("server_reachable") is False and not rep.get("server_answers"):
        return (f"[red]verdict: the server was never reached: all {rep['answered']} answered requests ran on "
                "this device only[/]")
    vr = rep["violation_ratio"] or 0.0
    tail = []
    if rep["fallbacks"]:
        tail.append(f"{rep['fallbacks']} fell back to the device")
    if rep["errors"]:
        tail.append(f"{rep['errors']} errors")
    colour = "green" if vr <= 0.05 and not rep["errors"] else "yellow"
    return (f"[{colour}]verdict: {100 * (1 - vr):.1f} % of answered requests within the {rep['sla_ms']:g} ms SLA"
            + (f"; {', '.join(tail)}" if tail else "") + "[/]")


def streams_table(con: Console, reports: list[tuple[str, dict[str, Any]]], title: str) -> None:
    """Camera streams' figures (``simulate --streams``, ``run --stream``): per report (a system,
    a run) the totals, then one row per stream."""

    def fmt(v: Any, nd: int) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    rows = []
    for name, m in reports:
        per_stream = [(f"  {k}", v) for k, v in m["streams"].items()] if len(m["streams"]) > 1 else []
        for label, s in [(name, m), *per_stream]:
            rows.append((label, [f"{s['frames']:,}", fmt(s["goodput_fps"], 2), pct(s["drop_ratio"]),
                                 pct(s["violation_ratio"]), fmt(s["latency_ms_p50"], 1),
                                 fmt(s["latency_ms_p95"], 1), fmt(s["latency_ms_p99"], 1),
                                 ", ".join(f"{k} {v}" for k, v in s["drop_reasons"].items()) or "-"]))
    print_chunked(con, title, "stream", ["frames", "goodput\nfps", "dropped", "late\n(answered)",
                                         "p50\nms", "p95\nms", "p99\nms", "drops by reason"], rows)
    con.print(f"[dim]{STREAMS_LEGEND}[/]")


STREAMS_LEGEND = (
    "goodput: frames answered within their stream's SLA per second (first arrival to last answer); dropped: "
    "share of frames dropped (superseded: a newer frame of the stream arrived while it waited; queue-full; late: "
    "no option could meet the SLA when the edge took it; busy: it arrived while the serial loop was busy; error); "
    "late (answered): share of answered frames over their SLA; p50/p95/p99: latency from the frame's arrival "
    "(capture), answered frames.")
