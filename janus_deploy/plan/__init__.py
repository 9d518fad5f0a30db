"""Plans: per-level ONNX segment graphs sharing one weight file, described by ``manifest.json``.

``export_plan`` and friends load lazily: reading a manifest (every runtime does) must not import
torch (seconds and hundreds of MB before the first request).
"""

from janus_deploy.plan.manifest import Manifest, PlanError

__all__ = ["ExportConfig", "export_plan", "plan_size_bytes", "Manifest", "PlanError"]


def __getattr__(name: str):
    if name in ("ExportConfig", "export_plan", "plan_size_bytes"):
        from janus_deploy.plan import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
