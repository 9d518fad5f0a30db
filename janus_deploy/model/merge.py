"""ToMe bipartite soft matching, written so that it exports to ONNX with static shapes and runs
in ONNX Runtime and TensorRT >= 10: the ranking is a stable sort (exported as TopK), merging is a
one-hot matmul, gathers are GatherElements. No ScatterElements-with-reduction, no NonZero.

Prefix tokens (class, distillation, register) are never merged. The non-prefix tokens are split
alternately into set A (even positions) and set B (odd positions); each A token is scored against
every B token by the cosine similarity of its attention key (mean over heads); the ``r`` A tokens
with the best match are merged into their B partner by size-weighted average.
Output order: ``[prefix, unmerged A (original order), B]``.
"""

from __future__ import annotations

import torch


def match(metric: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bipartite soft matching on the non-prefix ``metric`` [B, T, C].

    Returns ``(src_idx [B, r], dst_idx [B, r], unm_idx [B, Na - r])``: the A tokens merged, the B
    token each one merges into, and the unmerged A tokens in ascending order. Ties rank the lower
    index first (stable sort; ONNX TopK has the same rule).
    """
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    num_a = a.shape[1]
    scores = a @ b.transpose(-1, -2)  # [B, Na, Nb]
    node_max, node_idx = scores.max(dim=-1)
    src_idx = _top_stable(node_max, r)
    dst_idx = node_idx.gather(1, src_idx)
    # Unmerged A tokens in original order, without a data-dependent shape: rank by -index,
    # with merged tokens pushed below every unmerged one (distinct keys, so no ties).
    positions = torch.arange(num_a, device=metric.device, dtype=metric.dtype)
    merged = (src_idx.unsqueeze(-1) == torch.arange(num_a, device=metric.device)).to(metric.dtype)
    key = -positions - num_a * merged.sum(dim=1)
    unm_idx = torch.topk(key, num_a - r, dim=-1).indices
    return src_idx, dst_idx, unm_idx


def _top_stable(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest values, ties to the lower index. Eager PyTorch gets this from
    a stable sort; the exported graph from ONNX TopK, whose spec breaks ties the same way."""
    if torch.onnx.is_in_onnx_export():
        return torch.topk(values, k, dim=-1).indices
    return torch.sort(values, dim=-1, descending=True, stable=True).indices[:, :k]


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x[b, idx[b, i], :] for every b, i (GatherElements)."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def merge(
    x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int, num_prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove ``r`` tokens from ``x`` [B, T, D] by merging; ``size`` [B, T, 1] counts the patches
    each token stands for. ``metric`` [B, T, C] are the keys used for matching.

    ``r`` must be at most half the non-prefix tokens (see ``janus_deploy.policy.merge_cap``).
    """
    if r <= 0:
        return x, size
    num_tokens = x.shape[1] - num_prefix
    if r > num_tokens // 2:
        raise ValueError(f"cannot merge {r} of {num_tokens} non-prefix tokens (max {num_tokens // 2})")
    prefix_x, prefix_s = x[:, :num_prefix], size[:, :num_prefix]
    t, s = x[:, num_prefix:], size[:, num_prefix:]
    src_idx, dst_idx, unm_idx = match(metric[:, num_prefix:], r)

    a_t, a_s = t[:, ::2], s[:, ::2]
    b_t, b_s = t[:, 1::2], s[:, 1::2]
    src_s = _take(a_s, src_idx)
    src_w = _take(a_t, src_idx) * src_s
    one_hot = (dst_idx.unsqueeze(-1) == torch.arange(b_t.shape[1], device=x.device)).to(x.dtype)
    scatter = one_hot.transpose(1, 2)  # [B, Nb, r]: sums each src into its dst
    new_b_s = b_s + scatter @ src_s
    new_b_t = (b_t * b_s + scatter @ src_w) / new_b_s

    out_x = torch.cat([prefix_x, _take(a_t, unm_idx), new_b_t], dim=1)
    out_s = torch.cat([prefix_s, _take(a_s, unm_idx), new_b_s], dim=1)
    return out_x, out_s
