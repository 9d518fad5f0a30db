"""The token-merging forward of a timm ViT, built explicitly from the model's own modules
(no class patching, no shared mutable state), and its slicing into segments.

A segment boundary carries ``(tokens [B, x_s, D], size [B, x_s, 1])``; the first segment takes the
normalised image [B, 3, H, W], the last returns the logits [B, num_classes].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from janus_deploy.levels import Schedule, segment_ranges
from janus_deploy.model.merge import key_metric, merge, merge_dynamic


def attention(
    attn: nn.Module, x: torch.Tensor, size: torch.Tensor | None, static: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm ``Attention`` with proportional attention (``log size`` added to the logits).

    Returns the attention output and the keys summed over heads (the merge metric).
    Honours qkv bias, q/k-norm, scale-norm and the output gate; ``size=None`` skips the
    log-size term (no token has been merged yet). ``static``: the token count is a constant of
    the exported graph (per-level graphs), so its reshapes have constant shapes and ONNX Runtime
    knows every shape without first fusing shape arithmetic; level-free graphs pass False.
    """
    n = int(x.shape[1]) if static else x.shape[1]
    gate = attn.gate(x).sigmoid() if attn.gate is not None else None
    # [B, N, 3·H·hd] -> three [B, H, N, hd]: one Reshape, Transpose and Split in the exported graph
    qkv = attn.qkv(x).reshape(-1, n, 3 * attn.num_heads, attn.head_dim).transpose(1, 2)
    q, k, v = qkv.split(attn.num_heads, dim=1)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if size is not None:
        logits = logits + size.log().reshape(-1, 1, 1, n)  # [B, T, 1] -> [B, 1, 1, T], no copy
    out = logits.softmax(dim=-1) @ v
    out = out.transpose(1, 2).reshape(-1, n, attn.attn_dim)
    out = attn.norm(out)
    if gate is not None:
        out = out * gate
    return attn.proj(out), key_metric(k, n)


def block_forward(
    blk: nn.Module, x: torch.Tensor, size: torch.Tensor, r: int | torch.Tensor, num_prefix: int, proportional: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pre-norm timm Block with a ToMe merge of ``r`` tokens between attention and MLP
    (``r`` a 0-d tensor: see ``merge_dynamic``)."""
    dynamic = isinstance(r, torch.Tensor)
    attn_out, metric = attention(blk.attn, blk.norm1(x), size if proportional else None, static=not dynamic)
    x = x + blk.ls1(attn_out)
    if dynamic:
        x, size = merge_dynamic(x, size, metric, r, num_prefix)
    else:
        x, size = merge(x, size, metric, r, num_prefix)
    x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return x, size


def embed(model: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch embedding, prefix tokens and position embedding; every token starts with size 1."""
    x = model.patch_embed(image)
    x = model._pos_embed(x)
    x = model.norm_pre(model.patch_drop(x))
    return x, torch.ones_like(x[..., :1])


def head(model: nn.Module, x: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Final norm, pooling and classifier. Averaging pools weight each token by its size, so a
    merged token counts for the patches it stands for (equal to timm's pooling at size 1)."""
    x = model.norm(x)
    prefix = model.num_prefix_tokens
    if hasattr(model, "head_dist"):  # DeiT distilled: average of class and distillation heads
        return (model.head(model.head_drop(x[:, 0])) + model.head_dist(model.head_drop(x[:, 1]))) / 2
    pool = model.global_pool
    if pool == "token":
        pooled = x[:, 0]
    else:
        start = 0 if model.pool_include_prefix else prefix
        t, s = x[:, start:], size[:, start:]
        mean = (t * s).sum(dim=1) / s.sum(dim=1)
        if pool == "avg":
            pooled = mean
        elif pool == "max":
            pooled = t.amax(dim=1)
        else:  # avgmax
            pooled = 0.5 * (t.amax(dim=1) + mean)
    return model.head(model.head_drop(model.fc_norm(pooled)))


class Segment(nn.Module):
    """Blocks ``start..end`` (1-based, inclusive) of the pruned model; the first segment also
    embeds the image, the last also applies the head."""

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule,
        start: int,
        end: int,
        *,
        first: bool,
        last: bool,
    ) -> None:
        super().__init__()
        self.model = model  # shared, not copied: all segments and levels use the same weights
        self.start, self.end, self.first, self.last = start, end, first, last
        self.reductions = schedule.reductions
        self.num_prefix = model.num_prefix_tokens
        # Proportional attention is needed in block l only once an earlier block merged.
        self.merged_before = [sum(schedule.reductions[: l - 1]) > 0 for l in range(1, len(schedule.reductions) + 1)]
        self.in_tokens = schedule.tokens[start - 1]  # tokens entering the segment (x_0 for the first)
        self.out_tokens = schedule.tokens[max(end, start - 1)]  # a head-only segment keeps x_N
        self.takes_reductions = False

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.first:
            x, size = embed(self.model, inputs[0])
        else:
            x, size = inputs
        for l in range(self.start, self.end + 1):
            x, size = block_forward(
                self.model.blocks[l - 1], x, size, self.reductions[l - 1], self.num_prefix, self.merged_before[l - 1]
            )
        if self.last:
            return head(self.model, x, size)
        return x, size


class LevelFreeSegment(nn.Module):
    """Blocks ``start..end`` with the per-block reductions as an input (int64 [end - start + 1],
    after the image or the tokens and size), so that one graph serves every pruning level: token
    counts are symbolic. Proportional attention is always on; before any merge every size is 1
    and ``log 1 = 0``, so the result equals ``Segment``'s at every level. A head-only segment
    takes no reductions."""

    def __init__(self, model: nn.Module, start: int, end: int, *, first: bool, last: bool) -> None:
        super().__init__()
        self.model = model
        self.start, self.end, self.first, self.last = start, end, first, last
        self.num_prefix = model.num_prefix_tokens
        self.num_blocks = max(0, end - start + 1)
        self.in_tokens, self.out_tokens = "tokens_in", "tokens_out"  # symbolic in the exported graph
        self.takes_reductions = self.num_blocks > 0

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        reductions = inputs[-1] if self.num_blocks else None
        if self.first:
            x, size = embed(self.model, inputs[0])
        else:
            x, size = inputs[0], inputs[1]
        for i, l in enumerate(range(self.start, self.end + 1)):
            x, size = block_forward(self.model.blocks[l - 1], x, size, reductions[i], self.num_prefix, True)
        if self.last:
            return head(self.model, x, size)
        return x, size


def build_level_free_segments(model: nn.Module, candidates: Sequence[int]) -> list[LevelFreeSegment]:
    """The level-free counterparts of ``build_segments`` (same cuts)."""
    ranges = segment_ranges(len(model.blocks), list(candidates))
    return [LevelFreeSegment(model, a, b, first=i == 0, last=i == len(ranges) - 1) for i, (a, b) in enumerate(ranges)]


def build_segments(model: nn.Module, schedule: Schedule, candidates: Sequence[int]) -> list[Segment]:
    """The pruned model cut at every inner candidate split point (see ``policy.segment_ranges``)."""
    if schedule.num_blocks != len(model.blocks):
        raise ValueError(f"schedule has {schedule.num_blocks} blocks, model {len(model.blocks)}")
    ranges = segment_ranges(len(model.blocks), list(candidates))
    return [
        Segment(model, schedule, a, b, first=i == 0, last=i == len(ranges) - 1) for i, (a, b) in enumerate(ranges)
    ]


class PrunedViT(nn.Module):
    """The whole pruned model (one segment spanning all blocks): image -> logits."""

    def __init__(self, model: nn.Module, schedule: Schedule) -> None:
        super().__init__()
        self.segment = Segment(model, schedule, 1, len(model.blocks), first=True, last=True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.segment(image)


def run_chain(segments: Sequence[Segment], image: torch.Tensor) -> torch.Tensor:
    """Run segments in sequence, as edge + cloud would."""
    out: tuple[torch.Tensor, ...] = (image,)
    for seg in segments:
        res = seg(*out)
        out = res if isinstance(res, tuple) else (res,)
    return out[0]
