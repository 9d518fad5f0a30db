"""Small helpers shared by the CLI command modules (console, progress bars, JSON output)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


@contextmanager
def progress_bar(description: str, total: int | None = None):
    """Yields ``update(done, total, text=None)`` driving a rich progress bar on stderr."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[text]}"), console=err_console, transient=False,
    ) as prog:
        task = prog.add_task(description, total=total, text="")

        def update(done: int, total_: int | None = None, text: str = "") -> None:
            prog.update(task, completed=done, total=total_ if total_ is not None else total, text=text)

        yield update


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
