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
from janus_deploy.model.merge import match, merge, merge_dynamic
from janus_deploy.model.pruned import (
    LevelFreeSegment,
    PrunedViT,
    Segment,
    build_level_free_segments,
    build_segments,
    run_chain,
)

__all__ = [
    "ModelError", "ModelInfo", "ModelSpec", "create_from_spec", "create_model", "load_checkpoint",
    "model_info", "match", "merge", "merge_dynamic", "PrunedViT", "Segment", "LevelFreeSegment",
    "build_segments", "build_level_free_segments", "run_chain",
]
