"""The exportable merge against a straightforward ToMe reference (argsort + scatter_reduce)."""

import pytest
import torch

from janus_deploy.model.merge import merge, merge_dynamic


def reference_merge(x, size, metric, r, num_prefix):
    """ToMe bipartite soft matching written plainly: prefix protected, A = even / B = odd
    non-prefix tokens, cosine of keys, merge r best A into B by size-weighted mean."""
    prefix_x, prefix_s = x[:, :num_prefix], size[:, :num_prefix]
    t, s, m = x[:, num_prefix:], size[:, num_prefix:], metric[:, num_prefix:]
    m = m / m.norm(dim=-1, keepdim=True)
    scores = m[:, ::2] @ m[:, 1::2].transpose(1, 2)
    node_max, node_idx = scores.max(dim=-1)
    order = node_max.argsort(dim=-1, descending=True, stable=True)
    src, unm = order[:, :r], order[:, r:].sort(dim=-1).values
    dst = node_idx.gather(1, src)
    a_t, b_t, a_s, b_s = t[:, ::2], t[:, 1::2], s[:, ::2], s[:, 1::2]
    d = x.shape[-1]
    wb = (b_t * b_s).scatter_reduce(1, dst[..., None].expand(-1, -1, d),
                                    (a_t * a_s).gather(1, src[..., None].expand(-1, -1, d)), reduce="sum")
    sb = b_s.scatter_reduce(1, dst[..., None], a_s.gather(1, src[..., None]), reduce="sum")
    out_x = torch.cat([prefix_x, a_t.gather(1, unm[..., None].expand(-1, -1, d)), wb / sb], 1)
    out_s = torch.cat([prefix_s, a_s.gather(1, unm[..., None]), sb], 1)
    return out_x, out_s


@pytest.mark.parametrize("tokens,prefix", [(65, 1), (66, 2), (37, 4)])
@pytest.mark.parametrize("r_frac", [0.0, 0.1, 0.35, 1.0])  # 1.0 = the cap (half the non-prefix tokens)
def test_merge_equals_reference(tokens, prefix, r_frac):
    g = torch.Generator().manual_seed(tokens * 10 + prefix)
    b, d, c = 3, 24, 16
    x = torch.randn(b, tokens, d, generator=g)
    size = torch.randint(1, 5, (b, tokens, 1), generator=g).float()
    metric = torch.randn(b, tokens, c, generator=g)
    r = int(r_frac * ((tokens - prefix) // 2))
    got_x, got_s = merge(x, size, metric, r, prefix)
    assert got_x.shape == (b, tokens - r, d) and got_s.shape == (b, tokens - r, 1)
    if r == 0:
        assert torch.equal(got_x, x)
        return
    ref_x, ref_s = reference_merge(x, size, metric, r, prefix)
    torch.testing.assert_close(got_x, ref_x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_s, ref_s)


def test_merge_conserves_mass_and_protects_prefix():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 41, 8, generator=g)
    size = torch.ones(2, 41, 1)
    out_x, out_s = merge(x, size, torch.randn(2, 41, 8, generator=g), 12, 1)
    assert torch.equal(out_x[:, 0], x[:, 0]) and torch.equal(out_s[:, 0], size[:, 0])
    assert out_s.sum().item() == size.sum().item()  # every patch still counted once
    torch.testing.assert_close((out_x * out_s).sum(1), (x * size).sum(1), atol=1e-4, rtol=1e-5)


def test_merge_beyond_cap_rejected():
    x = torch.randn(1, 11, 4)
    with pytest.raises(ValueError, match="cannot merge"):
        merge(x, torch.ones(1, 11, 1), x, 6, 1)


@pytest.mark.parametrize("tokens,prefix", [(65, 1), (37, 4), (2, 1)])  # (2, 1): one non-prefix token left
def test_merge_dynamic_equals_reference_for_every_r(tokens, prefix):
    """The level-free graphs' merge (r a tensor) equals the reference for every r, and returns
    the input unchanged at r = 0 (as merge does)."""
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(2, tokens, 16, generator=g)
    size = torch.randint(1, 5, (2, tokens, 1), generator=g).float()
    metric = torch.randn(2, tokens, 8, generator=g)
    for r in range((tokens - prefix) // 2 + 1):
        got_x, got_s = merge_dynamic(x, size, metric, torch.tensor(r), prefix)
        if r == 0:
            assert torch.equal(got_x, x) and torch.equal(got_s, size)
            continue
        want_x, want_s = reference_merge(x, size, metric, r, prefix)
        torch.testing.assert_close(got_x, want_x, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_s, want_s)
    with pytest.raises(ValueError, match="cannot merge"):
        merge_dynamic(x, size, metric, torch.tensor((tokens - prefix) // 2 + 1), prefix)


def test_match_equals_reference_ranking():
    """match's (src, dst, unmerged) are the reference's stable-sort ranking."""
    from janus_deploy.model.merge import match

    g = torch.Generator().manual_seed(7)
    metric = torch.randn(2, 40, 8, generator=g)
    metric[:, 4] = metric[:, 6]  # two A tokens with equal scores: ties go to the lower index
    for r in (1, 7, 20):
        src, dst, unm = match(metric, r)
        m = metric / metric.norm(dim=-1, keepdim=True)
        node_max, node_idx = (m[:, ::2] @ m[:, 1::2].transpose(1, 2)).max(dim=-1)
        order = node_max.argsort(dim=-1, descending=True, stable=True)
        assert torch.equal(src, order[:, :r]) and torch.equal(dst, node_idx.gather(1, order[:, :r]))
        assert torch.equal(unm, order[:, r:].sort(dim=-1).values)
