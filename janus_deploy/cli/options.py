"""The options several commands share, declared once (typer ``Annotated`` aliases), each with its
check at the edge: numbers finite and in range (``nan``, ``inf`` and out-of-range values are one
usage line, rc 2, before any work), names as real choices. A command gives its own default:
``sla: Sla = 300.0``; no default means required."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from janus_deploy.net.traces import FORMATS
from janus_deploy.schedule.cloud_load import CLOUD_LOAD_MODES
from janus_deploy.schedule.controller import RTT_ESTIMATES, ControllerConfig
from janus_deploy.schedule.estimators import ESTIMATORS

_C = ControllerConfig()

MAX_SLOWDOWN = 1000.0  # an emulated edge 1000x slower than this machine: beyond it a run only sleeps
MAX_THREADS = 1024


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           optional: bool = False) -> Callable[[object], object]:
    """A typer callback: the value is finite and within [lo, hi] (``lo_open``: > lo)."""

    def check(value):
        if value is None:
            return value
        v = float(value)
        if not math.isfinite(v):
            raise typer.BadParameter(f"must be a finite number, got {value}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise typer.BadParameter(f"must be {'>' if lo_open else '>='} {lo:g}, got {value}")
        if hi is not None and v > hi:
            raise typer.BadParameter(f"must be <= {hi:g}, got {value}")
        return value

    return check


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A real choice (an Enum typer lists in the help and checks) whose value reaches the command
    as the plain string."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]  # functional API


def _plain(value):
    return value.value if isinstance(value, Enum) else value


def _opt(*flags: str, help: str, check: Callable | None = None, **kw) -> typer.models.OptionInfo:
    return typer.Option(*flags, help=help, callback=check, **kw)


# typer's "required" default for an Annotated option that follows options with defaults (`sla: Sla = REQUIRED`);
# typed Any so that the type checker takes it for the option's type, as typer does
REQUIRED: Any = ...

# ---------------------------------------------------------------- the SLA and the controller
Sla = Annotated[float, _opt("--sla", help="Latency SLA in ms.", check=number(0, 3.6e6, lo_open=True))]
if TYPE_CHECKING:  # what a command receives is the plain string (_plain); typer sees the Enums below
    EstimatorName = str
    RttEstimateName = str
    TraceFormatName = str
    CloudLoadName = str
else:
    EstimatorName = choice("EstimatorName", ESTIMATORS)
    RttEstimateName = choice("RttEstimateName", tuple(RTT_ESTIMATES))
    TraceFormatName = choice("TraceFormatName", FORMATS)
    CloudLoadName = choice("CloudLoadName", CLOUD_LOAD_MODES)
Estimator = Annotated[EstimatorName, _opt("--estimator", help="Bandwidth estimator.", check=_plain)]
Window = Annotated[int, _opt("--window", help="Estimator window (samples).", min=1, max=10_000)]
Margin = Annotated[float, _opt("--margin", help="Fraction of the SLA held back when deciding.",
                               check=number(0.0, 1.0))]
RttEstimate = Annotated[RttEstimateName, _opt("--rtt-estimate", help="RTT estimate over the last RTTs.", check=_plain)]
NoDeflate = Annotated[bool, _opt("--no-deflate", help="Do not deflate the bandwidth estimate by its recent error.")]
CloudLoad = Annotated[CloudLoadName, _opt("--cloud-load", check=_plain,
                                          help="What the controller learns from the server's reported time: factor "
                                               "(a load factor over the profile's decode + tail), extra (an added wait) "
                                               "or off (load-unaware: the idle profile).")]
BreakerFailures = Annotated[int, _opt("--breaker-failures", min=0, max=1_000_000,
                                      help="Consecutive server failures that stop offloading until a probe "
                                           "succeeds (0 = never).")]
ProbeInterval = Annotated[float, _opt("--probe-interval", check=number(0.0, 86_400.0),
                                      help="Probe the uplink after this many seconds without a transfer "
                                           "(0 = never).")]
ColdStart = Annotated[float | None, _opt("--cold-start-mbps", check=number(0.0, 1e6, lo_open=True),
                                            help="Bandwidth (Mbit/s) assumed before the first transfer "
                                                 "(default: the trace mean).")]
Rtt = Annotated[float | None, _opt("--rtt", check=number(0.0, 3.6e6),
                                      help="Fixed round-trip time (ms) the scheduler assumes (run, testbed: default measured).")]

# ---------------------------------------------------------------- a fleet (simulate --fleet, testbed --fleet)
FleetModes = Annotated[str, _opt("--fleet-modes", help="--fleet: controllers to compare (aware: --cloud-load, "
                                                       "unaware: off).")]
Instances = Annotated[int, _opt("--instances", min=1, max=10_000,
                                help="--fleet: the server's parallel instances (the built-in server's --concurrency).")]
PerEdge = Annotated[bool, _opt("--per-edge", help="--fleet: one report line per edge too.")]

# ---------------------------------------------------------------- traces
TraceFormat = Annotated[TraceFormatName, _opt("--trace-format", help="Trace file format.", check=_plain)]
SampleInterval = Annotated[float, _opt("--sample-interval", help="Seconds per trace sample.",
                                       check=number(0.0, 3600.0, lo_open=True))]

# ---------------------------------------------------------------- the edge device
EdgeSlowdown = Annotated[float, _opt("--edge-slowdown", check=number(1.0, MAX_SLOWDOWN),
                                     help="Emulate an edge this many times slower than this machine (as the "
                                          "demo does; profile and run with the same factor).")]
Threads = Annotated[int, _opt("--threads", min=0, max=MAX_THREADS,
                              help="Intra-op threads per engine session (0 = the runtime's default).")]
TimeoutFactor = Annotated[float, _opt("--timeout-factor", check=number(0.0, 1000.0, lo_open=True),
                                      help="Cancel the server exchange at SLA x this (then finish locally).")]

# ---------------------------------------------------------------- the server's limits (MB, seconds)
def megabytes(flag: str, help: str):
    return Annotated[float, _opt(flag, help=help, check=number(0.0, 1024.0 * 1024, lo_open=True))]


def seconds(flag: str, help: str):
    return Annotated[float, _opt(flag, help=help, check=number(0.0, 86_400.0, lo_open=True))]


TokenFile = Annotated[Path | None, _opt("--token-file", help="Read the bearer token from this file.")]


# ---------------------------------------------------------------- payload codecs (issue 22)
def codec_list(value: str | None) -> list[str] | None:
    """``--codecs a,b,c`` as a list of known codec names (None: not given)."""
    if value is None:
        return None
    from janus_deploy.wire.codecs import CODECS

    names = [c.strip() for c in value.split(",") if c.strip()]
    unknown = [c for c in names if c not in CODECS]
    if not names or unknown:
        raise typer.BadParameter(f"unknown codec(s) {', '.join(unknown) or '(none given)'}; choose among "
                                 f"{', '.join(CODECS)}")
    return names


Codecs = Annotated[str | None, _opt("--codecs", help="janus-deploy chooses the payload codec per request among these "
                                    "(comma-separated, e.g. fp16,int8,int4,jpeg85,jpeg70; frame codecs send at s = 0 "
                                    "only); default: --codec alone. Needs an accuracy table calibrated with these "
                                    "codecs (calibrate --codecs) when one is given.")]
