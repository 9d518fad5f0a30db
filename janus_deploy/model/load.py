"""Creating supported timm ViTs (never from the network) and loading local checkpoints."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from janus_deploy import JanusError

SUPPORTED_PREFIXES = ("vit_", "deit_", "deit3_")
SUPPORTED_POOLS = ("token", "avg", "max", "avgmax")


class ModelError(JanusError):
    """The model name, architecture or checkpoint is not usable."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to re-create a model: timm name, constructor overrides, checkpoint."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about a model that the policy and the manifest need."""

    num_blocks: int
    embed_dim: int
    num_tokens: int  # x_0: patches + prefix tokens
    num_prefix_tokens: int
    img_size: int
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def supported_model_names() -> list[str]:
    """The timm model names janus-deploy accepts by name (architecture checks come after
    creation, :func:`check_supported`)."""
    import timm

    return sorted(n for n in timm.list_models() if n.startswith(SUPPORTED_PREFIXES))


def _check_name(name: str) -> None:
    """Raise :class:`ModelError` for a name janus-deploy cannot create, suggesting the closest
    supported names (a typo such as ``vit_tiny_patch16_22``)."""
    import difflib

    import timm

    base = name.split(".")[0]
    if base.startswith(SUPPORTED_PREFIXES) and timm.is_model(base):
        return
    close = difflib.get_close_matches(base, supported_model_names(), n=3, cutoff=0.8)
    rule = (f"janus-deploy handles timm ViT/DeiT models whose name starts with {', '.join(SUPPORTED_PREFIXES)} "
            "(e.g. vit_tiny_patch16_224, deit_small_distilled_patch16_224)")
    if close:
        more = f" (other close names: {', '.join(close[1:])})" if len(close) > 1 else ""
        raise ModelError(f"unknown model {name!r}; did you mean {close[0]}?{more}")
    if timm.is_model(base):
        raise ModelError(f"model {name!r} is not supported: {rule}")
    raise ModelError(f"unknown model {name!r}: {rule}; list them with "
                     "python -c \"import timm; print(timm.list_models('vit_*'))\"")


def check_supported(model: nn.Module) -> None:
    """Raise :class:`ModelError` naming what is unsupported in a timm model."""
    from timm.layers.attention import Attention
    from timm.models.vision_transformer import Block, VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise ModelError(f"{type(model).__name__} is not a timm VisionTransformer")
    if getattr(model, "attn_pool", None) is not None:
        raise ModelError("attention-pool heads (global_pool='map') are not supported; use 'token' or 'avg'")
    if model.global_pool not in SUPPORTED_POOLS:
        raise ModelError(f"global_pool={model.global_pool!r} is not supported ({', '.join(SUPPORTED_POOLS)})")
    if model.pos_embed is None:
        raise ModelError("models without absolute position embeddings (e.g. RoPE) are not supported")
    pe = model.patch_embed
    img, patch = tuple(pe.img_size), tuple(pe.patch_size)
    if any(i % p for i, p in zip(img, patch)) and not getattr(pe, "dynamic_img_pad", False):
        fit = img[0] // patch[0] * patch[0]
        raise ModelError(f"img_size {img[0]} is not a multiple of the patch size {patch[0]}: the last "
                         f"{img[0] % patch[0]} pixel rows and columns would be dropped; use {fit or patch[0]} "
                         f"or {fit + patch[0]}")
    for i, blk in enumerate(model.blocks):
        if type(blk) is not Block:
            raise ModelError(
                f"block {i} is a {type(blk).__name__}; only timm's standard pre-norm Block is supported"
            )
        if type(blk.attn) is not Attention:
            raise ModelError(f"block {i} attention is {type(blk.attn).__name__}; only timm Attention is supported")


def create_model(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    **overrides: Any,
) -> nn.Module:
    """Create a supported timm ViT in eval mode with ``pretrained=False``; load a local checkpoint.

    ``overrides`` go to ``timm.create_model`` (img_size, num_classes, depth, patch_size, ...).
    """
    import timm

    _check_name(name)
    try:
        model = timm.create_model(name, pretrained=False, **overrides)
    except TypeError as exc:
        raise ModelError(f"cannot create {name!r} with {overrides}: {exc}") from exc
    check_supported(model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()


def create_from_spec(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """Re-create a model; without a checkpoint its random initialisation is seeded, so the same
    spec always gives the same weights (plans of untrained models stay verifiable)."""
    if spec.checkpoint is None:
        torch.manual_seed(seed)
    return create_model(spec.name, checkpoint=spec.checkpoint, **spec.overrides)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a PyTorch/timm checkpoint (``state_dict``/``model``
    keys and a ``module.`` prefix are unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, wrong format
        raise ModelError(f"cannot read checkpoint {path}: {exc}") from exc
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"checkpoint {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint strictly; mismatches fail with the offending keys named."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape_bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape_bad:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        if shape_bad:
            k = shape_bad[0]
            parts.append(f"{len(shape_bad)} shape mismatches (e.g. {k}: checkpoint "
                         f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise ModelError(
            f"checkpoint {path} does not fit the model: {'; '.join(parts)}. Check --model and the "
            "overrides (img_size, num_classes, depth) the checkpoint was trained with"
        )
    model.load_state_dict(state, strict=True)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_info(model: nn.Module) -> ModelInfo:
    """Facts about a supported timm ViT."""
    grid = model.patch_embed.grid_size
    img = model.patch_embed.img_size
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return ModelInfo(
        num_blocks=len(model.blocks),
        embed_dim=model.embed_dim,
        num_tokens=int(grid[0] * grid[1]) + model.num_prefix_tokens,
        num_prefix_tokens=model.num_prefix_tokens,
        img_size=int(img[0]),
        num_classes=model.num_classes,
        mean=tuple(float(v) for v in cfg.get("mean", (0.5, 0.5, 0.5))),
        std=tuple(float(v) for v in cfg.get("std", (0.5, 0.5, 0.5))),
    )
