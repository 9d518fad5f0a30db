"""The small interface every backend implements, and the engine-set file (``engines.json``).

A backend has a *builder* (plan -> engine directory) and a *runner* (engine directory -> run a
(level, segment) on numpy arrays). Runners load engines lazily and keep them resident, so
switching level per request costs no reload once an engine has been used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from janus_deploy import JanusError, read_json
from janus_deploy.plan.manifest import Manifest

ENGINES_FILE = "engines.json"
ENGINES_KIND = "janus-deploy/engines"
ENGINES_VERSION = 1


class EngineError(JanusError):
    """Engines are missing, stale, or were built for another plan, library or GPU."""


class Runner(Protocol):
    """What every backend's runner offers (the server, the edge, verify and profile use only this)."""

    manifest: Manifest

    def load(self, level: int, segment: int) -> None:
        """Make one (level, segment) engine resident (runners also load lazily on first run)."""
        ...

    def preload(self, progress: Any = None) -> None:
        """Load every (level, segment) engine; ``progress(done, total)`` after each."""
        ...

    def check_files(self, progress: Any = None) -> None:
        """Check every file the runner may load against its recorded sha256 now (runners also
        check each file when they first load it); IntegrityError names the file that differs."""
        ...

    def run_segment(self, level: int, segment: int, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one segment; ``inputs`` are (image,) or (tokens, size)."""
        ...

    def run_unsplit(self, level: int, image: np.ndarray) -> np.ndarray:
        ...

    def loaded(self) -> int:
        """Number of engines resident."""
        ...

    def unload(self, level: int, segment: int) -> None:
        """Drop one engine (it is loaded again on next use)."""
        ...


def run_segments(runner: Runner, level: int, first: int, last: int, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run segments ``first .. last - 1`` of a level in sequence."""
    out = list(inputs)
    for seg in range(first, last):
        out = runner.run_segment(level, seg, out)
    return out


def batch_range(runner: Any) -> tuple[int, int | None]:
    """(smallest, largest) batch a runner takes: the TensorRT engines' optimization profile
    (``min_batch``/``max_batch`` of engines.json); (1, None) for runners without a limit."""
    inner = getattr(runner, "inner", None)  # SlowedRunner
    if inner is not None:
        return batch_range(inner)
    lo, hi = getattr(runner, "min_batch", 1), getattr(runner, "max_batch", None)
    return (int(lo) if isinstance(lo, int) else 1, int(hi) if isinstance(hi, int) else None)


def check_batch(runner: Any, batch: int, who: str) -> None:
    """EngineError in one line when ``who`` (which sends batches of ``batch``) cannot use the runner."""
    lo, hi = batch_range(runner)
    if batch < lo or (hi is not None and batch > hi):
        raise EngineError(f"the engines take batches {lo}..{hi}, and {who} runs batches of {batch}; rebuild them "
                          f"with `janus-deploy build-engines --min-batch {min(lo, batch)} --max-batch {max(hi or batch, batch)}`")


def write_engines_file(engine_dir: Path, data: dict[str, Any]) -> None:
    engine_dir.mkdir(parents=True, exist_ok=True)
    data = {"kind": ENGINES_KIND, "format_version": ENGINES_VERSION, **data}
    (engine_dir / ENGINES_FILE).write_text(json.dumps(data, indent=1))


def read_engines_file(engine_dir: str | Path, manifest: Manifest | None = None) -> dict[str, Any]:
    path = Path(engine_dir) / ENGINES_FILE
    data = read_json(path, EngineError, f"{engine_dir} holds no engines; run `janus-deploy build-engines`")
    if not isinstance(data, dict) or data.get("kind") != ENGINES_KIND or data.get("format_version") != ENGINES_VERSION:
        raise EngineError(f"{path} is not a janus-deploy engines file of version {ENGINES_VERSION}")
    if manifest is not None and data.get("plan_hash") != manifest.hash:
        raise EngineError(
            f"engines in {engine_dir} were built for plan {str(data.get('plan_hash'))[:12]}, not for this plan "
            f"({manifest.hash[:12]}); rebuild them with `janus-deploy build-engines`"
        )
    return data


class SlowedRunner:
    """Wraps a runner so every segment takes ``factor`` times as long (it sleeps the difference).

    Emulates an edge device slower than the machine at hand, e.g. a Jetson-class edge on a
    loopback run where edge and "cloud" share one machine. Profile the edge through the same
    wrapper so that what is profiled is what runs.
    """

    def __init__(self, runner: Runner, factor: float) -> None:
        if factor < 1:
            raise EngineError(f"a slowdown factor must be >= 1, got {factor}")
        self.inner, self.factor = runner, float(factor)
        self.manifest = runner.manifest

    def _slow(self, fn, *args):
        import time

        t0 = time.perf_counter()
        out = fn(*args)
        time.sleep((self.factor - 1) * (time.perf_counter() - t0))
        return out

    def run_segment(self, level: int, segment: int, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._slow(self.inner.run_segment, level, segment, inputs)

    def run_unsplit(self, level: int, image: np.ndarray) -> np.ndarray:
        return self._slow(self.inner.run_unsplit, level, image)

    def loaded(self) -> int:
        return self.inner.loaded()

    def load(self, level: int, segment: int) -> None:
        self.inner.load(level, segment)

    def preload(self, progress: Any = None) -> None:
        self.inner.preload(progress)

    def check_files(self, progress: Any = None) -> None:
        self.inner.check_files(progress)

    def unload(self, level: int, segment: int) -> None:
        self.inner.unload(level, segment)
