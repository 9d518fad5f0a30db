"""Plans: per-level ONNX segment graphs sharing one weight file, described by ``manifest.json``."""

from janus_deploy.plan.export import ExportConfig, export_plan, plan_size_bytes
from janus_deploy.plan.manifest import Manifest, PlanError

__all__ = ["ExportConfig", "export_plan", "plan_size_bytes", "Manifest", "PlanError"]
