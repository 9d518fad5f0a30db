"""The Python half of libjanus_embed (``libjanus/include/janus_embed.h``): the C entry point's
calls land here and drive one :class:`~janus_deploy.runtime.edge.EdgeRuntime`.

Kept to plain types at the boundary (str, bytes, int, float, tuples), so the C side needs only a
few CPython calls. The runtime is built exactly as ``janus-deploy run`` builds it (same controller
and transport options, same edge slowdown wrapper), so the same inputs give the same answers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from janus_deploy import JanusError
from janus_deploy.runtime.edge import EdgeRuntime
from janus_deploy.runtime.transport import TransportOptions
from janus_deploy.schedule.controller import ControllerConfig


class EmbedError(JanusError):
    """Bad options given to janus_rt_open."""


def _profile(spec: str):
    from janus_deploy.profile.table import resolve_profile

    return resolve_profile(spec)


def open_runtime(plan: str, engines: str, edge_profile: str, cloud_profile: str, server_url: str, sla_ms: float,
                 accuracy: str | None, codec: str | None, log: str | None, options_json: str | None) -> EdgeRuntime:
    """An EdgeRuntime as `janus-deploy run` makes it; ``options_json`` holds the rest (see the header)."""
    from janus_deploy.plan.manifest import Manifest

    try:
        opts: dict[str, Any] = json.loads(options_json) if options_json else {}
    except json.JSONDecodeError as exc:
        raise EmbedError(f"options_json does not parse: {exc}") from None
    if not isinstance(opts, dict):
        raise EmbedError("options_json must be a JSON object")
    unknown = set(opts) - {"controller", "transport", "threads", "edge_slowdown"}
    if unknown:
        raise EmbedError(f"options_json has unknown keys {sorted(unknown)} "
                         "(known: controller, transport, threads, edge_slowdown)")
    try:
        controller = ControllerConfig(**opts["controller"]).validate() if "controller" in opts else None
        transport = TransportOptions(**opts.get("transport", {}))
    except TypeError as exc:
        raise EmbedError(f"options_json: {exc}") from None
    threads = int(opts.get("threads", 0))
    manifest = Manifest.load(plan)
    runner: Any = engines
    slowdown = float(opts.get("edge_slowdown", 1.0))
    if slowdown > 1:
        from janus_deploy.backends import load_runner
        from janus_deploy.backends.base import SlowedRunner

        runner = SlowedRunner(load_runner(manifest, engines, threads=threads), slowdown)
    return EdgeRuntime(manifest, runner, _profile(edge_profile), _profile(cloud_profile), server_url=server_url,
                       sla_ms=sla_ms, accuracy=accuracy, codec=codec, controller=controller, transport=transport,
                       log=log, threads=threads)


def infer(rt: EdgeRuntime, frame: memoryview, height: int, width: int) -> tuple:
    """One frame (uint8 bytes, [height, width, 3]) -> (id, top1, logits float32 bytes | None, level,
    split, alpha, label, model, predicted_ms, total_ms, fallback_kind, error, record JSON)."""
    arr = np.frombuffer(frame, dtype=np.uint8)
    if arr.size != height * width * 3:
        raise EmbedError(f"the frame has {arr.size} bytes, {height}x{width}x3 needs {height * width * 3}")
    res = rt.infer(arr.reshape(height, width, 3))
    rec = res.record
    d = rec.decision
    pred = rec.predicted.total_ms if rec.predicted is not None else None
    logits = None if res.logits is None else np.ascontiguousarray(res.logits, dtype=np.float32).tobytes()
    nan = float("nan")
    return (int(res.id), -1 if res.top1 is None else int(res.top1), logits, -1 if d is None else d.level,
            -1 if d is None else d.split, nan if d is None else d.alpha, None if d is None else d.label,
            None if d is None else d.model, nan if pred is None else float(pred), float(rec.measured.total_ms),
            rec.fallback.kind if rec.fallback else None, rec.error, rec.to_json())


def summary(rt: EdgeRuntime) -> str:
    return json.dumps(rt.summary(), default=str)


def close(rt: EdgeRuntime) -> None:
    rt.close()


__all__ = ["EmbedError", "close", "infer", "open_runtime", "summary"]
