"""Torch side: creating supported timm ViTs, exportable ToMe merging, pruned forward, segments."""

from janus_deploy.model.load import (
    ModelError,
    ModelInfo,
    ModelSpec,
    create_from_spec,
    create_model,
    load_checkpoint,
    model_info,
)
from janus_deploy.model.merge import match, merge
from janus_deploy.model.pruned import PrunedViT, Segment, build_segments, run_chain

__all__ = [
    "ModelError", "ModelInfo", "ModelSpec", "create_from_spec", "create_model", "load_checkpoint",
    "model_info", "match", "merge", "PrunedViT", "Segment", "build_segments", "run_chain",
]
