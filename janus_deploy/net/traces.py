"""Network traces: one :class:`Trace` type and readers for the formats in use.

A trace is a sequence of samples, each holding for ``interval_s`` seconds, looping at the end.
Throughput traces are in Mbit/s; ping traces (RTT) in ms. Samples of 0 (outages) are allowed and
never divided by.

Formats:

* ``5g-lte``: the shipped 5G-MeMU uplink traces (package data, :func:`shipped_traces_dir`): runs started by
  an optional line of 31 ``#`` and a line ``Run <n>``, then comma-separated numbers (possibly over
  several lines, possibly with a trailing comma). Throughput and ping files share the format.
* ``pensieve``: Pensieve "cooked" traces, one ``<seconds> <Mbit/s>`` pair per line.
* ``mahimahi``: packet-delivery traces, one integer ms timestamp per line at which one 1500-byte
  packet can be delivered; binned into ``interval_s`` samples of Mbit/s (the trace loops at the
  last timestamp, as mahimahi does).

A path can be a file, a directory (its ``*.list`` files, recursively, never those of the other
kind of trace: see :func:`expand_paths`) or a glob; several files
are pooled (concatenated in sorted path order). A relative path that starts with
``uplink-5g-lte/`` and does not exist where it is given names a file of the shipped set
(:func:`resolve_shipped`): ``--trace uplink-5g-lte/throughput/driving/lte`` works from any folder.
"""

from __future__ import annotations

import glob as _glob
import math
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from janus_deploy import JanusError

FORMATS = ("auto", "5g-lte", "pensieve", "mahimahi")
MBPS = "Mbit/s"
MS = "ms"
MAHIMAHI_PACKET_BYTES = 1500
_RUN = re.compile(r"^run\s+(\d+)\s*$", re.IGNORECASE)
SHIPPED = "uplink-5g-lte"  # the name of the shipped set, also the prefix of its trace names
TRACES_ENV = "JANUS_TRACES"
_PACKAGE_TRACES = Path(__file__).resolve().parent / "traces_data" / SHIPPED


class TraceError(JanusError):
    """A trace file is missing, malformed or unusable."""


@dataclass
class Trace:
    """Piecewise-constant samples (``unit`` per ``interval_s`` seconds), looping at the end."""

    samples: list[float]
    interval_s: float
    name: str = "trace"
    unit: str = MBPS
    _cum: list[float] = field(init=False, repr=False)  # bits delivered by the start of sample i

    def __post_init__(self) -> None:
        self.samples = [float(v) for v in self.samples]
        if not self.samples:
            raise TraceError(f"trace {self.name} has no samples")
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise TraceError(f"trace {self.name}: the sample interval must be > 0 s, got {self.interval_s}")
        bad = next((v for v in self.samples if not math.isfinite(v) or v < 0), None)
        if bad is not None:
            raise TraceError(f"trace {self.name} has an invalid sample {bad!r} (samples must be >= 0)")
        cum, acc = [0.0], 0.0
        if self.unit == MBPS:
            for v in self.samples:
                acc += v * 1e6 * self.interval_s
                cum.append(acc)
        self._cum = cum

    # ---- basics
    def __len__(self) -> int:
        return len(self.samples)

    @property
    def duration_s(self) -> float:
        """Length of one pass through the trace."""
        return len(self.samples) * self.interval_s

    def index_at(self, t: float) -> int:
        """Sample index in force at time ``t`` (seconds; the trace loops)."""
        return int(math.floor(t / self.interval_s)) % len(self.samples)

    def value_at(self, t: float) -> float:
        """The sample in force at time ``t`` (Mbit/s or ms)."""
        return self.samples[self.index_at(t)]

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples)

    def median(self) -> float:
        s = sorted(self.samples)
        m = len(s) // 2
        return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2

    @property
    def cumulative_bits(self) -> list[float]:
        """Bits delivered by the start of each sample (``len + 1`` values; empty unless Mbit/s):
        the sums :meth:`delivered_bits` reads (the simulator's fast engine is handed these)."""
        return self._cum

    # ---- bandwidth integration
    def _need_mbps(self, what: str) -> None:
        if self.unit != MBPS:
            raise TraceError(f"{what} needs a throughput trace (Mbit/s); {self.name} is in {self.unit}")
        if self._cum[-1] <= 0:
            raise TraceError(f"trace {self.name} has no nonzero bandwidth sample: nothing can ever "
                             "be sent over it")

    def delivered_bits(self, t: float) -> float:
        """Bits the link can deliver from time 0 to ``t`` (looping)."""
        n, dt = len(self.samples), self.interval_s
        period = n * dt
        k = math.floor(t / period)
        rem = t - k * period
        i = min(int(rem / dt), n - 1)
        return k * self._cum[-1] + self._cum[i] + self.samples[i] * 1e6 * (rem - i * dt)

    def _time_reaching(self, bits: float) -> float:
        """Earliest time by which ``bits`` have been delivered since time 0."""
        total, dt = self._cum[-1], self.interval_s
        k = math.floor(bits / total)
        r = bits - k * total
        if r <= 0 and k > 0:  # exactly at a period boundary: finishes inside the previous period
            k, r = k - 1, total
        j = bisect_left(self._cum, r)
        if j == 0:
            return k * len(self.samples) * dt
        seg = j - 1  # cum[seg] < r <= cum[seg + 1], so samples[seg] > 0
        return k * len(self.samples) * dt + seg * dt + (r - self._cum[seg]) / (self.samples[seg] * 1e6)

    def transfer_time(self, start_s: float, nbytes: float) -> float:
        """Seconds to push ``nbytes`` starting at ``start_s``, integrating the bandwidth piecewise.

        A payload on a dropping link takes as long as the link needs; during an outage it waits
        until bandwidth returns (looping the trace if the outage runs to its end).
        """
        if nbytes <= 0:
            return 0.0
        self._need_mbps("transfer_time")
        if start_s < 0:
            raise TraceError(f"transfer start must be >= 0 s, got {start_s}")
        end = self._time_reaching(self.delivered_bits(start_s) + nbytes * 8.0)
        return max(end - start_s, 1e-12)

    def window(self, start_s: float = 0.0, seconds: float | None = None) -> Trace:
        """The samples from ``start_s`` for ``seconds`` (to the end when None), as a trace of its
        own (a shorter simulation: one pass of the window instead of the whole trace)."""
        if not (math.isfinite(start_s) and 0 <= start_s < self.duration_s):
            raise TraceError(f"the window start {start_s:g} s is outside trace {self.name} "
                             f"(0 to {self.duration_s:g} s); give a start below {self.duration_s:g} s")
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise TraceError(f"the window length must be > 0 s, got {seconds!r}")
        i = int(math.floor(start_s / self.interval_s + 1e-9))
        j = len(self.samples) if seconds is None else min(
            len(self.samples), max(i + 1, int(math.ceil((start_s + seconds) / self.interval_s - 1e-9))))
        t0, t1 = i * self.interval_s, j * self.interval_s
        return Trace(self.samples[i:j], self.interval_s, f"{self.name} [{t0:g}-{t1:g} s]", self.unit)

    def mean_rate(self, t0: float, t1: float) -> float:
        """Average bandwidth over ``[t0, t1]`` (Mbit/s); the sample at ``t0`` when t1 <= t0."""
        self._need_mbps("mean_rate")
        if t1 <= t0:
            return self.value_at(t0)
        return (self.delivered_bits(t1) - self.delivered_bits(t0)) / (t1 - t0) / 1e6


def pool(traces: Sequence[Trace], name: str | None = None) -> Trace:
    """Concatenate traces of the same unit and interval."""
    if not traces:
        raise TraceError("nothing to pool: no traces")
    first = traces[0]
    for t in traces[1:]:
        if t.unit != first.unit or not math.isclose(t.interval_s, first.interval_s):
            raise TraceError(f"cannot pool {t.name} ({t.unit}, {t.interval_s} s) with {first.name} "
                             f"({first.unit}, {first.interval_s} s)")
    if len(traces) == 1:
        return traces[0]
    samples = [v for t in traces for v in t.samples]
    return Trace(samples, first.interval_s, name or f"pooled({len(traces)} traces)", first.unit)


# --------------------------------------------------------------------------- where the shipped traces are


def shipped_traces_dir() -> Path:
    """The one answer to "where are the shipped 5G/LTE uplink traces": ``$JANUS_TRACES`` when
    set (a folder laid out like the shipped one), else the copy inside the package
    (``janus_deploy/net/traces_data/uplink-5g-lte``, package data: an installed janus-deploy
    has it). TraceError naming the fix when neither is a folder."""
    env = os.environ.get(TRACES_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise TraceError(f"{TRACES_ENV}={env} is not a folder; point it at a folder laid out like "
                             f"{SHIPPED}/ (throughput/, ping/) or unset it to use the shipped traces")
        return p
    if not _PACKAGE_TRACES.is_dir():
        raise TraceError(f"the shipped traces are missing from this installation ({_PACKAGE_TRACES}); "
                         f"reinstall janus-deploy, or set {TRACES_ENV} to an {SHIPPED} folder")
    return _PACKAGE_TRACES


def resolve_shipped(spec: str | Path) -> Path:
    """``uplink-5g-lte/REST`` → ``shipped_traces_dir() / REST`` when no such relative path exists
    here; every other spec unchanged (a real path always wins)."""
    p = Path(spec)
    parts = p.parts
    if p.is_absolute() or not parts or parts[0] != SHIPPED or p.exists() or _glob.glob(str(spec)):
        return p
    return shipped_traces_dir().joinpath(*parts[1:])


def shipped_trace(name: str) -> Path:
    """A path of the shipped set by its name below it (e.g. ``throughput/driving/lte``);
    TraceError listing the top folders when it is not there."""
    root = shipped_traces_dir()
    p = root / name
    if not p.exists() and not _glob.glob(str(p)):
        raise TraceError(f"the shipped traces ({root}) have no {name!r}; they hold "
                         f"{', '.join(sorted(d.name for d in root.iterdir() if d.is_dir()))}/...")
    return p


# --------------------------------------------------------------------------- shipped 5G/LTE format


def _numbers(text: str, path: Path, lineno: int) -> list[float]:
    out = []
    for tok in text.replace(";", ",").split(","):
        tok = tok.strip()
        if not tok:
            continue
        try:
            out.append(float(tok))
        except ValueError:
            raise TraceError(f"{path}:{lineno}: {tok[:30]!r} is not a number") from None
    return out


def _timed_pairs(lines: list[list[float]]) -> list[tuple[list[float], list[float]]] | None:
    """A run written as (timestamps, values) line pairs, as some shipped 5G files are: both lines
    of one length, the first a clock (at least 90 % of its steps forward; the shipped clocks step
    back now and then by a second). None for a plain run."""
    if len(lines) < 2 or len(lines) % 2:
        return None
    pairs = list(zip(lines[0::2], lines[1::2]))
    for t, v in pairs:
        if len(t) != len(v) or len(t) < 10 or min(t) < 0:
            return None
        if sum(b > a for a, b in zip(t, t[1:])) < 0.9 * (len(t) - 1):
            return None
    return pairs


def _resample(pairs: list[tuple[list[float], list[float]]], interval_s: float) -> list[float]:
    """Timed samples onto a grid of ``interval_s``: the mean of the samples in each bin (a bin
    without one repeats the previous value); the pairs follow each other in time."""
    out: list[float] = []
    for times, values in pairs:
        t0 = min(times)
        bins: dict[int, list[float]] = {}
        for t, v in zip(times, values):
            bins.setdefault(int((t - t0) / interval_s + 1e-9), []).append(v)
        prev = 0.0
        for k in range(max(bins) + 1):
            if k in bins:
                prev = sum(bins[k]) / len(bins[k])
            out.append(prev)
    return out


def read_runs(path: str | Path, interval_s: float = 1.0) -> list[tuple[int, list[float]]]:
    """``[(run number, samples), ...]`` of a 5G/LTE-format file. Numbers before any ``Run`` line
    form run 0. A run written as (timestamps, values) line pairs is resampled onto
    ``interval_s`` (:func:`_resample`); every other run's numbers are its samples, in order."""
    p = Path(path)
    runs: list[tuple[int, list[list[float]]]] = []
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        s = line.strip()
        if not s or set(s) == {"#"}:
            continue
        m = _RUN.match(s)
        if m:
            runs.append((int(m.group(1)), []))
            continue
        if not runs:
            runs.append((0, []))
        runs[-1][1].append(_numbers(s, p, lineno))
    out = []
    for n, lines in runs:
        pairs = _timed_pairs(lines)
        samples = _resample(pairs, interval_s) if pairs else [x for ln in lines for x in ln]
        if samples:
            out.append((n, samples))
    if not out:
        raise TraceError(f"{p} holds no samples")
    return out


def load_5g_lte(path: str | Path, *, run: int | None = None, interval_s: float = 1.0,
                unit: str = MBPS) -> Trace:
    """One run (``run``: its number as written in ``Run <n>``) or all runs concatenated."""
    p = Path(path)
    runs = read_runs(p, interval_s)
    if run is not None:
        pick = [v for n, v in runs if n == run]
        if not pick:
            raise TraceError(f"{p} has no run {run} (runs: {', '.join(str(n) for n, _ in runs)})")
        return Trace(pick[0], interval_s, f"{_short(p)}#run{run}", unit)
    return Trace([x for _, v in runs for x in v], interval_s, _short(p), unit)


# --------------------------------------------------------------------------- pensieve / mahimahi


def load_pensieve(path: str | Path) -> Trace:
    """Pensieve cooked trace (``<seconds> <Mbit/s>`` per line). The interval is the median time
    step; an irregular trace is resampled onto that grid (piecewise constant)."""
    p = Path(path)
    times, rates = [], []
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        parts = s.split()
        if len(parts) < 2:
            raise TraceError(f"{p}:{lineno}: expected '<seconds> <Mbit/s>', got {s[:40]!r}")
        try:
            times.append(float(parts[0]))
            rates.append(float(parts[1]))
        except ValueError:
            raise TraceError(f"{p}:{lineno}: expected two numbers, got {s[:40]!r}") from None
    if len(times) < 2:
        raise TraceError(f"{p} needs at least two samples to know the sample interval")
    steps = [b - a for a, b in zip(times, times[1:])]
    if any(d <= 0 for d in steps):
        raise TraceError(f"{p}: timestamps must increase")
    dt = sorted(steps)[len(steps) // 2]
    if max(steps) - min(steps) <= 0.1 * dt:
        return Trace(rates, dt, _short(p), MBPS)
    grid, j = [], 0
    count = int(round((times[-1] - times[0]) / dt)) + 1
    for i in range(count):
        t = times[0] + i * dt
        while j + 1 < len(times) and times[j + 1] <= t + 1e-9:
            j += 1
        grid.append(rates[j])
    return Trace(grid, dt, _short(p), MBPS)


def load_mahimahi(path: str | Path, *, interval_s: float = 1.0) -> Trace:
    """mahimahi packet-delivery trace → Mbit/s per ``interval_s`` bin."""
    p = Path(path)
    stamps: list[int] = []
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        try:
            v = int(s)
        except ValueError:
            raise TraceError(f"{p}:{lineno}: expected an integer ms timestamp, got {s[:30]!r}") from None
        if v < 0 or (stamps and v < stamps[-1]):
            raise TraceError(f"{p}:{lineno}: timestamps must be >= 0 and non-decreasing")
        stamps.append(v)
    if not stamps:
        raise TraceError(f"{p} holds no timestamps")
    if interval_s <= 0:
        raise TraceError(f"the mahimahi bin interval must be > 0 s, got {interval_s}")
    bin_ms = interval_s * 1000.0
    nbins = max(1, math.ceil(max(stamps[-1], 1) / bin_ms))
    counts = [0] * nbins
    for v in stamps:
        counts[min(int(v // bin_ms), nbins - 1)] += 1
    bits = MAHIMAHI_PACKET_BYTES * 8
    return Trace([c * bits / interval_s / 1e6 for c in counts], interval_s, _short(p), MBPS)


# --------------------------------------------------------------------------- dispatch


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its first data lines."""
    p = Path(path)
    lines = [l.strip() for l in _read_text(p).splitlines() if l.strip()][:20]
    if not lines:
        raise TraceError(f"{p} is empty")
    if any(l.startswith("#") or _RUN.match(l) or "," in l for l in lines):
        return "5g-lte"
    if all(len(l.split()) == 2 for l in lines):
        return "pensieve"
    if all(re.fullmatch(r"\d+", l) for l in lines):
        vals = [int(l) for l in lines]
        if vals == sorted(vals):
            return "mahimahi"
    return "5g-lte"  # one number per line: plain samples


# A folder named like this holds the other kind of trace: a throughput trace never pools RTT
# files (ms), a ping trace never pools throughput files (Mbit/s).
_OTHER_KIND = {MBPS: ("ping", "rtt"), MS: ("throughput",)}


def _kind_of(path: Path, unit: str, root: Path | None) -> str | None:
    """The folder that marks ``path`` as the other kind of trace (relative to ``root``), if any."""
    # a file given directly: only its nearest folders count (a home directory called ping/ does not)
    parts = path.relative_to(root).parts[:-1] if root is not None else path.parts[-5:-1]
    return next((d for d in parts if d.lower() in _OTHER_KIND[unit]), None)


def expand_paths(spec: str | Path, unit: str = MBPS) -> list[Path]:
    """A file, a directory or a glob. A directory means its ``*.list`` files (else all visible
    files), recursively, except those under a folder of the other kind of trace (``ping/`` or
    ``rtt/`` for throughput, ``throughput/`` for ping): ``--trace uplink-5g-lte`` pools the
    throughput files only. ``uplink-5g-lte/...`` names the shipped set (:func:`resolve_shipped`)."""
    p = resolve_shipped(spec)
    spec = str(p)
    if p.is_file():
        other = _kind_of(p.resolve(), unit, None)
        if other is not None:
            what = "RTT (ms)" if unit == MBPS else "throughput (Mbit/s)"
            raise TraceError(f"{p} lies under a {other}/ folder: it holds {what} samples, not "
                             f"{'throughput' if unit == MBPS else 'RTTs'}; pass it as "
                             f"{'--ping' if unit == MBPS else '--trace'}")
        return [p]
    if p.is_dir():
        other = _kind_of(p.resolve() / "-", unit, None)  # the folder itself or one of its nearest parents
        if other is not None:
            what = "RTT (ms)" if unit == MBPS else "throughput (Mbit/s)"
            raise TraceError(f"{p} is a {other}/ folder: its files hold {what} samples, not "
                             f"{'throughput' if unit == MBPS else 'RTTs'}; pass it as "
                             f"{'--ping' if unit == MBPS else '--trace'}")
        visible = [f for f in p.rglob("*") if f.is_file() and not any(x.startswith(".") for x in f.relative_to(p).parts)
                   and _kind_of(f, unit, p) is None]
        files = sorted(f for f in visible if f.suffix == ".list")
        if not files:
            files = sorted(f for f in visible if f.suffix.lower() not in (".md", ".png", ".json"))
        if not files:
            raise TraceError(f"directory {p} holds no {'throughput' if unit == MBPS else 'ping'} trace files")
        return files
    matches = []
    for m in sorted(_glob.glob(str(spec), recursive=True)):
        mp = Path(m)
        if mp.is_file():
            matches.append(mp)
        elif mp.is_dir():
            matches.extend(expand_paths(mp, unit))
    if not matches:
        raise TraceError(f"no trace file matches {spec!s} (give a file, a directory or a glob)")
    return matches


def load_trace(specs: str | Path | Iterable[str | Path], *, fmt: str = "auto",
               run: int | None = None, interval_s: float = 1.0, unit: str = MBPS) -> Trace:
    """Load and pool every file named by ``specs`` (files, directories, globs)."""
    if fmt not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r}; choose one of {', '.join(FORMATS)}")
    spec_list = [specs] if isinstance(specs, (str, Path)) else list(specs)
    if not spec_list:
        raise TraceError("no trace given")
    files = [f for s in spec_list for f in expand_paths(s, unit)]
    traces = []
    for f in files:
        kind = detect_format(f) if fmt == "auto" else fmt
        if kind == "5g-lte":
            traces.append(load_5g_lte(f, run=run, interval_s=interval_s, unit=unit))
        elif unit != MBPS:
            raise TraceError(f"{f}: {kind} traces hold throughput, not {unit}")
        elif kind == "pensieve":
            traces.append(load_pensieve(f))
        else:
            traces.append(load_mahimahi(f, interval_s=interval_s))
    name = traces[0].name if len(traces) == 1 else f"{_common_name(files)} ({len(files)} files)"
    return pool(traces, name)


def load_ping(specs: str | Path | Iterable[str | Path], *, run: int | None = None,
              interval_s: float = 1.0) -> Trace:
    """RTT samples (ms) in the shipped 5G/LTE format."""
    return load_trace(specs, fmt="5g-lte", run=run, interval_s=interval_s, unit=MS)


def _read_text(p: Path) -> str:
    if not p.is_file():
        raise TraceError(f"trace file {p} does not exist")
    try:
        return p.read_text()
    except UnicodeDecodeError:
        raise TraceError(f"{p} is not a text trace file") from None


def _short(p: Path) -> str:
    return "/".join(p.resolve().parts[-3:])


def _common_name(files: Sequence[Path]) -> str:
    parts = [f.resolve().parts for f in files]
    common = []
    for group in zip(*parts):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    return "/".join(common[-3:]) or "pooled"
