"""The plan a benchmark runs on: the one given (``--plan``/``--engines``), else a fresh export
with ONNX Runtime engines in a temporary folder. Shared by tools/bench_load.py and
tools/bench_serving.py."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Callable


def bench_plan(plan: str | None, engines: str | None, make: Callable[[], tuple[Any, Any]], prefix: str):
    """``(manifest, plan_dir, engine_dir)``; ``make()`` gives ``(ModelSpec, ExportConfig)`` and is
    called only when there is no plan to load (it imports torch)."""
    from janus_deploy.backends import build_engines
    from janus_deploy.plan.manifest import Manifest

    if plan:
        if not engines:
            sys.exit("--plan needs --engines")
        return Manifest.load(plan), Path(plan), Path(engines)
    from janus_deploy.plan.export import export_plan

    spec, cfg = make()
    root = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"exporting {spec.name} {cfg} to {root} ...", file=sys.stderr)
    manifest, _ = export_plan(spec, root / "plan", cfg)
    build_engines(manifest, root / "engines", "ort")
    return manifest, root / "plan", root / "engines"
