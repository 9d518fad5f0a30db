import math

import pytest

from janus_deploy import levels


def test_candidates_match_paper_examples():
    assert levels.candidate_splits(12, 3) == [0, 1, 2, 3, 5, 7, 9, 12, 13]
    assert levels.candidate_splits(24, 5) == [0, 1, 2, 3, 4, 5, 7, 9, 11, 13, 15, 18, 21, 24, 25]


def test_candidates_k1_every_gap_grows_by_one():
    # s_i = s_{i-1} + i: 1, 3, 6, 10
    assert levels.candidate_splits(10, 1) == [0, 1, 3, 6, 10, 11]


@pytest.mark.parametrize("x0,n,expected", [(197, 12, 0.545), (577, 24, 0.294)])
def test_alpha_max_reference_values(x0, n, expected):
    amax = levels.alpha_max(x0, n)
    assert amax == pytest.approx(expected, abs=0.002)
    # definition: total uncapped reduction leaves >= 1 token at amax, not slightly above it
    total = lambda a: sum(math.floor(2 ** (a * (n - l))) for l in range(1, n + 1))  # noqa: E731
    assert total(amax) <= x0 - 1 < total(amax + 0.002)


def test_exponential_first_blocks_vit_l():
    s = levels.schedule("exponential", 0.25, 577, 24)
    assert s.reductions[:4] == (53, 45, 38, 32)
    assert s.tokens[0] == 577 and s.tokens[1] == 524
    assert all(a - r == b for a, r, b in zip(s.tokens, s.reductions, s.tokens[1:]))


def test_alpha_zero_removes_nothing():
    s = levels.schedule("exponential", 0.0, 197, 12)
    assert s.reductions == (0,) * 12 and s.tokens == (197,) * 13


def test_linear_and_constant_policies():
    assert levels.raw_reductions("linear", 2.5, 4) == [7, 5, 2, 0]  # floor(2.5 * (4 - l))
    assert levels.schedule("constant", 23, 577, 24).reductions == (23,) * 24
    with pytest.raises(levels.PolicyError, match="integer"):
        levels.raw_reductions("constant", 2.5, 4)


def test_merge_cap_limits_reduction():
    # 11 tokens, 1 prefix, r = 3: 10 -> 7 -> 4 mergeable; the last block may remove only 4 // 2 = 2
    s = levels.schedule("constant", 3, 11, 3, num_prefix=1)
    assert s.reductions == (3, 3, 2)
    assert s.capped == (3,)
    assert s.tokens == (11, 8, 5, 3)
    # alpha_max of ViT-B: the uncapped request in the last block (1) exceeds the cap (2 tokens, 1 prefix -> 0)
    b = levels.schedule("exponential", levels.alpha_max(197, 12), 197, 12)
    assert b.capped == (12,) and b.tokens[-1] == 2


def test_level_grid_by_levels_and_step():
    grid = levels.level_grid(197, 12, levels=8)
    assert len(grid) == 8 and grid[0] == 0.0
    assert grid[-1] <= levels.alpha_max(197, 12)
    assert grid[-1] == pytest.approx(0.545, abs=0.001)
    step = levels.level_grid(577, 24, step=0.01)
    assert len(step) == 30 and step[-1] == pytest.approx(0.29)
    with pytest.raises(levels.PolicyError, match="exactly one"):
        levels.level_grid(197, 12)


def test_bad_input():
    with pytest.raises(levels.PolicyError, match="k must be"):
        levels.candidate_splits(12, 0)
    with pytest.raises(levels.PolicyError, match="outside"):
        levels.check_level(0.6, 197, 12)
    with pytest.raises(levels.PolicyError, match="outside"):
        levels.check_level(-0.1, 197, 12)
    with pytest.raises(levels.PolicyError, match="unknown policy"):
        levels.schedule("cubic", 0.1, 197, 12)
    with pytest.raises(levels.PolicyError, match="at least 2 blocks"):
        levels.alpha_max(197, 1)


def test_segment_ranges_and_edge_counts():
    c = levels.candidate_splits(12, 3)
    ranges = levels.segment_ranges(12, c)
    assert ranges == [(1, 1), (2, 2), (3, 3), (4, 5), (6, 7), (8, 9), (10, 12), (13, 12)]
    assert levels.edge_segment_count(0, 12, c) == 0
    assert levels.edge_segment_count(5, 12, c) == 4
    assert levels.edge_segment_count(12, 12, c) == 7
    assert levels.edge_segment_count(13, 12, c) == 8
    with pytest.raises(levels.PolicyError, match="not a candidate"):
        levels.edge_segment_count(4, 12, c)
