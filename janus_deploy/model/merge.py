"""ToMe bipartite soft matching, written so that it exports to ONNX and runs in ONNX Runtime and
TensorRT >= 10. ``merge`` (``r`` an int) gives per-level graphs with static token counts;
``merge_dynamic`` (``r`` a tensor) gives level-free graphs whose token counts are symbolic.

Prefix tokens (class, distillation, register) are never merged. The non-prefix tokens are split
alternately into set A (even positions) and set B (odd positions); each A token is scored against
every B token by the cosine similarity of its attention key (summed over heads: ToMe's mean up to
a scale the cosine ignores); the ``r`` A tokens with the best match are merged into their B
partner by size-weighted average. Output order: ``[prefix, unmerged A (original order), B]``.

What the graph does per merging block (docs/pruning-efficiency.md has the measured cost): besides
the key sum (one MatMul over the keys), only one Concat and one row gather touch every token; the
rest works on r rows, on one key per token or on the [Na, Nb] score matrix.

* matching: one TopK(1) gives every A token's best score and partner, TopK(r) ranks them (ties
  to the lower index, as a stable sort);
* merging: the r merged rows are computed from the r source and r destination rows alone (an
  [r, r] "same destination" matmul sums several sources of one destination) and appended to the
  tokens; a third TopK sorts one key per row into the output order, so the output is **one row
  gather** (GatherND, batch_dims = 1) from ``[tokens, merged rows]``.

No ScatterElements or ScatterND, no NonZero, no GatherElements over whole token tensors.
"""

from __future__ import annotations

import torch

#: the exported merge graph's revision; plan export keys include it, so re-exporting into an old
#: plan directory replaces graphs of an earlier revision (same results, slower graph)
GRAPH_REVISION = 2


class _Rows(torch.autograd.Function):
    """``x[b, idx[b, i, 0], :]`` for x [B, T, C] and idx [B, n, 1]: one row copy per index.
    Exported as GatherND with ``batch_dims = 1``; GatherElements would need the index expanded to
    [B, n, C] and read an int64 per element."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, idx: torch.Tensor, count: int | None) -> torch.Tensor:  # noqa: ARG004 - ctx is autograd.Function's protocol, unused here
        return x.gather(1, idx.expand(-1, -1, x.shape[-1]))

    @staticmethod
    def symbolic(g, x, idx, count):
        out = g.op("GatherND", x, idx, batch_dims_i=1)
        # [batch, count, C]: the batch stays symbolic, a static count a constant (without a type
        # the exporter would bake all traced sizes in, batch included)
        out.setType(x.type().with_sizes([None, count, *x.type().varyingSizes()[2:]]))
        return out


def rows(x: torch.Tensor, idx: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` [B, count, 1] of ``x`` [B, T, C], per batch element (GatherND in ONNX).
    ``count`` is idx's row count: an int in per-level graphs, a tensor in level-free ones."""
    return _Rows.apply(x, idx, count if isinstance(count, int) else None)


def key_metric(k: torch.Tensor, tokens: int | torch.Tensor) -> torch.Tensor:
    """The matching metric from attention keys [B, H, T, hd]: their sum over heads [B, T, hd]
    (the cosine does not see the 1/H of ToMe's mean). One MatMul with a row of ones in the graph:
    ReduceMean over the head axis took ONNX Runtime 4x longer. ``tokens`` is T, an int where the
    graph's token count is static (constant reshapes)."""
    h, hd = int(k.shape[1]), int(k.shape[3])
    ones = torch.ones(1, h, dtype=k.dtype, device=k.device)
    return (ones @ k.reshape(-1, h, tokens * hd)).reshape(-1, tokens, hd)


def match(metric: torch.Tensor, r: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bipartite soft matching on the non-prefix ``metric`` [B, T, C].

    Returns ``(src_idx [B, r], dst_idx [B, r], unm_idx [B, Na - r])``: the A tokens merged, the B
    token each one merges into, and the unmerged A tokens in ascending order. Ties rank the lower
    index first (stable sort; ONNX TopK has the same rule).
    """
    src_idx, dst_idx = _pairs(metric, r, 0)
    num_a = _count(metric[:, ::2], isinstance(r, torch.Tensor))
    # unmerged A tokens in original order: sort the A positions with the merged ones pushed last
    positions = torch.arange(num_a, device=metric.device)
    merged = (src_idx == positions).sum(dim=1, keepdim=True)  # [B, 1, Na]
    key = (positions + num_a * merged).to(torch.float32)
    return src_idx[..., 0], dst_idx[..., 0], _smallest(key, num_a - r, 2)[:, 0]


def _pairs(metric: torch.Tensor, r: int | torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(src_idx, dst_idx)`` [B, r, 1]: the r best-matched A tokens of ``metric`` [B, T, C] past
    its ``p`` prefix tokens and their B partners (indices within A and B)."""
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, p::2] @ metric[:, p + 1::2].transpose(-1, -2)  # [B, Na, Nb]
    if isinstance(r, torch.Tensor):
        # A level-free graph also meets blocks left with one non-prefix token (Nb = 0, r = 0):
        # a never-chosen column (cosines are >= -1) keeps the max defined.
        scores = torch.nn.functional.pad(scores, (0, 1), value=-2.0)
    node_max, node_idx = _row_max(scores)
    src_idx = _largest(node_max, r)
    return src_idx, node_idx.gather(1, src_idx)


def _count(t: torch.Tensor, dynamic: bool) -> int | torch.Tensor:
    """t's token count: symbolic in level-free graphs, else a Python int, which the exported
    per-level graph holds as a constant instead of computing it from shapes."""
    return t.shape[1] if dynamic else int(t.shape[1])


def _row_max(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best value and its column (the first of equal ones) per row, both [B, rows, 1]. One TopK
    in the exported graph (ReduceMax + ArgMax would read the scores twice)."""
    if torch.onnx.is_in_onnx_export():
        return torch.topk(scores, 1, dim=-1)
    return scores.max(dim=-1, keepdim=True)


def _largest(values: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Indices [B, k, 1] of the ``k`` largest of ``values`` [B, n, 1], ties to the lower index.
    Eager PyTorch gets this from a stable sort; the exported graph from ONNX TopK, whose spec
    breaks ties the same way."""
    if torch.onnx.is_in_onnx_export():
        return torch.topk(values, k, dim=1).indices
    return torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]


def _smallest(values: torch.Tensor, k: int | torch.Tensor, dim: int) -> torch.Tensor:
    """Indices of the ``k`` smallest of ``values`` along ``dim``, ascending (distinct values)."""
    return torch.topk(values, k, dim=dim, largest=False).indices


def merge(
    x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int, num_prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove ``r`` tokens from ``x`` [B, T, D] by merging; ``size`` [B, T, 1] counts the patches
    each token stands for. ``metric`` [B, T, C] are the keys used for matching.

    ``r`` must be at most half the non-prefix tokens (see ``janus_deploy.levels.merge_cap``).
    A block with ``r = 0`` gets no merge ops at all.
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
    return _merged(x, size, metric, r, num_prefix)


def _check_cap(x: torch.Tensor, r: int, num_prefix: int) -> None:
    num_tokens = x.shape[1] - num_prefix
    if r > num_tokens // 2:
        raise ValueError(f"cannot merge {r} of {num_tokens} non-prefix tokens (max {num_tokens // 2})")


def _merged(x, size, metric, r, num_prefix) -> tuple[torch.Tensor, torch.Tensor]:
    """The merge proper; every token count in it may be symbolic (see ``merge_dynamic``)."""
    dynamic = isinstance(r, torch.Tensor)
    p, d, n = num_prefix, int(x.shape[-1]), _count(x, dynamic)
    src_j, dst_j = _pairs(metric, r, p)
    t = torch.arange(n, device=x.device)
    src, dst = t[p::2][src_j], t[p + 1::2][dst_j]  # [B, r, 1] positions in x
    # The merged rows from the r source and destination rows alone: sources sharing a destination
    # are summed by an [r, r] "same destination" matrix, so each source's row is its
    # destination's whole result (equal rows for sources of one destination).
    dst_row = dst.transpose(1, 2)  # [B, 1, r]
    same = (dst == dst_row).to(x.dtype)
    src_s, dst_s = rows(size, src, r), rows(size, dst, r)
    total = same @ torch.cat([rows(x, src, r) * src_s, src_s], dim=-1)  # [B, r, D + 1]
    new_s = dst_s + total[..., d:]
    new_x = (rows(x, dst, r) * dst_s + total[..., :d]) / new_s
    # The output is one row gather from [x, merged rows], in the order of one sort of a key per
    # row (float, as TopK takes it): prefix and unmerged A tokens keep their position t, B tokens
    # follow (t + T), a merged row takes its destination's key. Cut off (keys >= 2T): merged A
    # tokens, destinations, and all but the last merged row of a destination. With r = 0
    # (level-free graphs) nothing moves: the B offset is switched off.
    f = torch.float32
    is_b = ((t >= p) & ((t - p) % 2 == 1)).to(f)
    if dynamic:
        is_b = is_b * (r > 0).to(f)
    cut = (torch.cat([src, dst], dim=1) == t).to(f).sum(dim=1, keepdim=True)  # [B, 1, T]
    i = torch.arange(_count(src, dynamic), device=x.device)
    later = (same * (i.unsqueeze(-1) > i).to(x.dtype)).sum(dim=1, keepdim=True)  # [B, 1, r]
    key = torch.cat([t.to(f) + n * is_b + 2 * n * cut, dst_row.to(f) + n + 2 * n * later.to(f)], dim=2)
    order = _smallest(key, n - r, 2).reshape(-1, n - r, 1)  # [B, T - r, 1]
    return rows(torch.cat([x, new_x], dim=1), order, n - r), rows(torch.cat([size, new_s], dim=1), order, n - r)
