"""ToMe bipartite soft matching, written so that it exports to ONNX and runs in ONNX Runtime and
TensorRT >= 10: the ranking is a stable sort (exported as TopK), merging is a one-hot matmul,
gathers are GatherElements. No ScatterElements-with-reduction, no NonZero. ``merge`` (``r`` an int)
gives per-level graphs with static token counts and few nodes; ``merge_dynamic`` (``r`` a tensor)
gives level-free graphs whose token counts are symbolic.

Prefix tokens (class, distillation, register) are never merged. The non-prefix tokens are split
alternately into set A (even positions) and set B (odd positions); each A token is scored against
every B token by the cosine similarity of its attention key (mean over heads); the ``r`` A tokens
with the best match are merged into their B partner by size-weighted average.
Output order: ``[prefix, unmerged A (original order), B]``.
"""

from __future__ import annotations

import torch


def match(metric: torch.Tensor, r: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bipartite soft matching on the non-prefix ``metric`` [B, T, C].

    Returns ``(src_idx [B, r], dst_idx [B, r], unm_idx [B, Na - r])``: the A tokens merged, the B
    token each one merges into, and the unmerged A tokens in ascending order. Ties rank the lower
    index first (stable sort; ONNX TopK has the same rule).
    """
    dynamic = isinstance(r, torch.Tensor)
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    num_a = _count(a, dynamic)
    scores = a @ b.transpose(-1, -2)  # [B, Na, Nb]
    if dynamic:
        # A level-free graph also meets blocks left with one non-prefix token (Nb = 0, r = 0):
        # a never-chosen column (cosines are >= -1) keeps the max defined.
        scores = torch.nn.functional.pad(scores, (0, 1), value=-2.0)
    node_max, node_idx = scores.max(dim=-1)
    src_idx = _top_stable(node_max, r)
    dst_idx = node_idx.gather(1, src_idx)
    # Unmerged A tokens in original order, without a data-dependent shape: rank by -index,
    # with merged tokens pushed below every unmerged one (distinct keys, so no ties).
    positions = torch.arange(num_a, device=metric.device)
    merged = (src_idx.unsqueeze(-1) == positions).to(metric.dtype)
    key = -positions.to(metric.dtype) - num_a * merged.sum(dim=1)
    unm_idx = torch.topk(key, num_a - r, dim=-1).indices
    return src_idx, dst_idx, unm_idx


def _count(t: torch.Tensor, dynamic: bool) -> int | torch.Tensor:
    """t's token count: symbolic in level-free graphs, else a Python int, which the exported
    per-level graph holds as a constant instead of computing it from shapes."""
    return t.shape[1] if dynamic else int(t.shape[1])


def _top_stable(values: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Indices of the ``k`` largest values, ties to the lower index. Eager PyTorch gets this from
    a stable sort; the exported graph from ONNX TopK, whose spec breaks ties the same way."""
    if torch.onnx.is_in_onnx_export():
        return torch.topk(values, k, dim=-1).indices
    return torch.sort(values, dim=-1, descending=True, stable=True).indices[:, :k]


def _take(x: torch.Tensor, idx: torch.Tensor, width: int) -> torch.Tensor:
    """x[b, idx[b, i], :] for every b, i (GatherElements). ``width`` is x's last dimension as a
    Python int, so the exported graph needs no shape arithmetic for it."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, width))


def merge(
    x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int, num_prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove ``r`` tokens from ``x`` [B, T, D] by merging; ``size`` [B, T, 1] counts the patches
    each token stands for. ``metric`` [B, T, C] are the keys used for matching.

    ``r`` must be at most half the non-prefix tokens (see ``janus_deploy.levels.merge_cap``).
    """
    if r <= 0:
        return x, size
    _check_cap(x, r, num_prefix)
    return _merged(x, size, metric, r, num_prefix)


def merge_dynamic(
    x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: torch.Tensor, num_prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``merge`` with ``r`` a 0-d int64 tensor, for graphs that serve every pruning level: ``r``
    and the token counts stay symbolic when traced. Same result as ``merge``, ``r = 0`` included
    (the input comes back unchanged, in its order)."""
    if not torch.onnx.is_in_onnx_export():
        _check_cap(x, int(r), num_prefix)
    out_x, out_s = _merged(x, size, metric, r, num_prefix)
    keep = x.shape[1] - r
    unchanged = r == 0  # _merged reorders the tokens even when it merges none
    return torch.where(unchanged, x[:, :keep], out_x), torch.where(unchanged, size[:, :keep], out_s)


def _check_cap(x: torch.Tensor, r: int, num_prefix: int) -> None:
    num_tokens = x.shape[1] - num_prefix
    if r > num_tokens // 2:
        raise ValueError(f"cannot merge {r} of {num_tokens} non-prefix tokens (max {num_tokens // 2})")


def _merged(x, size, metric, r, num_prefix) -> tuple[torch.Tensor, torch.Tensor]:
    """The merge proper; every token count in it may be symbolic (see ``merge_dynamic``)."""
    d = int(x.shape[-1])  # the embedding width: a constant even in level-free graphs
    # Size-weighted tokens with the size as one more channel: one gather and one matmul move both.
    w = torch.cat([x * size, size], dim=-1)[:, num_prefix:]
    src_idx, dst_idx, unm_idx = match(metric[:, num_prefix:], r)
    a, b = w[:, ::2], w[:, 1::2]
    nb = _count(b, isinstance(r, torch.Tensor))
    one_hot = (dst_idx.unsqueeze(-1) == torch.arange(nb, device=x.device)).to(x.dtype)
    new_b = b + one_hot.transpose(1, 2) @ _take(a, src_idx, d + 1)  # [B, Nb, r] @ [B, r, D+1]
    rest = torch.cat([_take(a, unm_idx, d + 1), new_b], dim=1)
    rest_s = rest[..., d:]
    out_x = torch.cat([x[:, :num_prefix], rest[..., :d] / rest_s], dim=1)
    out_s = torch.cat([size[:, :num_prefix], rest_s], dim=1)
    return out_x, out_s
