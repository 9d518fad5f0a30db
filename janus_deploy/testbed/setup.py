"""A testbed run from files, for library users and the CLI alike: the trace and ping windows
read from trace files, the frames from a folder of images, checked into one
:class:`~janus_deploy.testbed.run.TestbedConfig` (``janus-deploy testbed`` parses its options
into :func:`testbed_config` and prints what :func:`~janus_deploy.testbed.run.run_testbed` returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from janus_deploy.net.traces import FORMATS, Trace, load_ping, load_trace
from janus_deploy.testbed.netns import TestbedError
from janus_deploy.testbed.run import TestbedConfig, window

MAX_IMAGES = 256  # frames read from --images at most (sent in turn)


@dataclass(frozen=True)
class TraceWindow:
    """Where a run's trace comes from: ``paths`` (files, folders or globs, pooled), their
    ``fmt``, only ``Run <run>`` of each 5G/LTE file, resampled at ``interval_s``, the window
    starting ``start_s`` seconds in (it still loops over the whole trace), or with ``seconds``
    only that long (a fleet runs for its window's duration)."""

    paths: Sequence[str | Path]
    fmt: str = "auto"
    run: int | None = None
    interval_s: float = 1.0
    start_s: float = 0.0
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise TestbedError(f"unknown trace format {self.fmt!r}; choose one of {', '.join(FORMATS)}")
        if not self.interval_s > 0:
            raise TestbedError(f"--sample-interval must be > 0 s, got {self.interval_s}")

    def throughput(self) -> Trace:
        """The uplink's bandwidth window (Mbit/s)."""
        return self._cut(window(load_trace(self.paths, fmt=self.fmt, run=self.run, interval_s=self.interval_s),
                                self.start_s))

    def rtt(self) -> Trace:
        """The RTT window (ms, 5G/LTE ping files)."""
        return self._cut(window(load_ping(self.paths, run=self.run, interval_s=self.interval_s), self.start_s))

    def _cut(self, trace: Trace) -> Trace:
        if self.seconds is None:
            return trace
        if not (self.seconds > 0):
            raise TestbedError(f"--trace-seconds must be > 0, got {self.seconds}")
        if self.seconds > trace.duration_s:
            raise TestbedError(f"--trace-seconds {self.seconds:g} is longer than trace {trace.name} "
                               f"({trace.duration_s:g} s); give at most that")
        return trace.window(0.0, self.seconds)


def image_frames(plan: str | Path, images: str | Path, limit: int = MAX_IMAGES) -> list[tuple[str, np.ndarray]]:
    """Up to ``limit`` frames from a folder of images, sized for the plan's model."""
    from janus_deploy.plan.manifest import Manifest
    from janus_deploy.runtime.edge import frames_from_images

    frames = list(frames_from_images(images, Manifest.load(plan).model_info.img_size, limit=limit))
    if not frames:
        raise TestbedError(f"--images {images} holds no images")
    return frames


def testbed_config(plan: str | Path, engines: str | Path, *, edge_profile: Any, cloud_profile: Any, trace: TraceWindow,
                   sla_ms: float, requests: int, ping: TraceWindow | None = None, images: str | Path | None = None,
                   **settings: Any) -> TestbedConfig:
    """The checked :class:`TestbedConfig` of one run from files: ``trace`` and ``ping`` windows
    loaded, ``images`` read (default: the run's 16 synthetic frames); ``settings`` are the other
    :class:`TestbedConfig` fields (``controller``, ``codec``, ``fps``, ``edge_timing``, ...)."""
    frames = image_frames(plan, images) if images is not None else None
    cfg = TestbedConfig(plan=Path(plan), engines=Path(engines), edge_profile=edge_profile, cloud_profile=cloud_profile,
                        trace=trace.throughput(), ping=ping.rtt() if ping is not None else None, sla_ms=sla_ms,
                        requests=requests, frames=frames, **settings)
    return cfg.validate()


__all__ = ["MAX_IMAGES", "TraceWindow", "image_frames", "testbed_config"]
