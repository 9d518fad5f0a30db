"""Profile data model, linear synthesis and the shipped presets (paper's Table I / Fig. 5)."""

from __future__ import annotations

import json

import pytest

from janus_deploy.profile.table import (ProfileError, load_preset, load_profile, parse_linear,
                                        preset_names, profile_from_dict, profile_from_linear,
                                        resolve_profile, save_profile)

VIT_L_JETSON = "vit_large_patch16_384-jetson-orin-nano"
VIT_L_V100 = "vit_large_patch16_384-v100"


# ---------------------------------------------------------------- presets vs the paper
def test_presets_shipped():
    assert {VIT_L_JETSON, VIT_L_V100, "vit_base_patch16_224-jetson-orin-nano",
            "vit_base_patch16_224-v100"} <= set(preset_names())


def test_vit_large_jetson_matches_table1():
    p = load_preset(VIT_L_JETSON)
    assert p.candidates == [0, 1, 2, 3, 4, 5, 7, 9, 11, 13, 15, 18, 21, 24, 25]  # Eq. 3, k = 5
    expo = p.levels_of("exponential")
    assert len(expo) == 30  # α = 0, 0.01, ..., 0.29 (αmax ≈ 0.294)
    assert p.levels[expo[-1]].alpha == pytest.approx(0.29)
    unpruned = p.total_ms(p.level_index("exponential", 0.0))
    assert unpruned == pytest.approx(653.3, rel=0.01)  # Table I, no pruning
    # Table I, exponential policy: 403.2 ms. The preset level closest to it is α = 0.24.
    totals = {p.levels[i].alpha: p.total_ms(i) for i in expo}
    best = min(totals, key=lambda a: abs(totals[a] - 403.2))
    assert best == pytest.approx(0.24)
    assert totals[best] == pytest.approx(403.2, rel=0.03)


def test_vit_large_constant_level_is_tome_r23():
    p = load_preset(VIT_L_JETSON)
    (i,) = p.levels_of("constant")
    lv = p.levels[i]
    assert lv.alpha == 23 and lv.tokens == [577 - 23 * l for l in range(25)]
    # Σ_l (a + b·(577 − 23(l−1))) with 24·a + 24·577·b = 653.3 → 653.3 − 0.0486·23·276 = 344.8
    assert p.total_ms(i) == pytest.approx(653.3 - 0.0486 * 23 * 276, abs=0.01)


def test_v100_and_vit_base():
    v100 = load_preset(VIT_L_V100)
    assert v100.total_ms(0) == pytest.approx(32.3, rel=0.01)  # Table I cloud, no pruning
    vb = load_preset("vit_base_patch16_224-jetson-orin-nano")
    assert vb.candidates == [0, 1, 2, 3, 5, 7, 9, 12, 13]  # k = 3
    # Fig. 5 ViT-B Jetson fit used as read: 12 · (0.41 + 0.0235·197)
    assert vb.total_ms(vb.level_index("exponential", 0.0)) == pytest.approx(12 * (0.41 + 0.0235 * 197))
    assert vb.levels[vb.levels_of("constant")[0]].alpha == 16
    # payload at s = 0 is the uint8 frame, 3·224·224
    assert vb.payload_bytes(0, 0, "fp32") == 3 * 224 * 224


# ---------------------------------------------------------------- linear synthesis
TINY = {"name": "tiny", "num_blocks": 3, "embed_dim": 4, "num_tokens": 9,
        "num_prefix_tokens": 1, "img_size": 2}


def test_profile_from_linear_hand_computed():
    # α = 1 on x0 = 9, N = 3: raw [4, 2, 1] (all within the merge cap) → tokens [9, 5, 3, 2];
    # block costs 1 + 0.5·x_in: 5.5, 3.5, 2.5
    p = profile_from_linear(TINY, [0, 1, 2, 3, 4], [("exponential", 1.0)], 1.0, 0.5)
    lv = p.levels[0]
    assert lv.tokens == [9, 5, 3, 2]
    assert lv.head_ms == {0: 0.0, 1: 5.5, 2: 9.0, 3: 11.5, 4: 11.5}
    assert lv.tail_ms == {0: 11.5, 1: 6.0, 2: 2.5, 3: 0.0, 4: 0.0}
    assert p.head_ms(0, 2) == 9.0 and p.tail_ms(0, 1) == 6.0
    # payloads: frame 3·2·2 = 12 B; fp32 x·4·4 + x·4; fp16 x·4·2 + x·2; int8 x·4 + x·4 + x·2
    assert p.payload_bytes(0, 0, "fp32") == 12
    assert p.payload_bytes(0, 1, "fp32") == 5 * 16 + 5 * 4
    assert p.payload_bytes(0, 2, "fp16") == 3 * 8 + 3 * 2
    assert p.payload_bytes(0, 3, "int8") == 2 * 4 + 2 * 4 + 2 * 2
    assert p.payload_bytes(0, 4, "int8") == 0
    assert p.encode_ms(0, 1, "fp16") == 0.0 and p.decode_ms(0, 1, "fp16") == 0.0


def test_negative_intercept_is_floored():
    # a = -3, b = 0.5, α = 1 inputs 9, 5, 3 → 1.5, max(-0.5, 0), max(-1.5, 0)
    p = profile_from_linear(TINY, [0, 1, 2, 3, 4], [("exponential", 1.0)], -3.0, 0.5)
    assert p.levels[0].head_ms == {0: 0.0, 1: 1.5, 2: 1.5, 3: 1.5, 4: 1.5}


def test_parse_linear():
    assert parse_linear("0.41,0.0235") == (0.41, 0.0235)
    assert parse_linear(" -0.5 , 0.0486 ") == (-0.5, 0.0486)
    for bad in ("a,b", "1", "1,2,3", "nan,1"):
        with pytest.raises(ProfileError, match="a,b"):
            parse_linear(bad)


# ---------------------------------------------------------------- JSON contract
@pytest.fixture
def tiny_dict():
    p = profile_from_linear(TINY, [0, 1, 2, 3, 4], [("exponential", 0.0), ("exponential", 1.0)],
                            1.0, 0.5)
    return json.loads(json.dumps(p.to_dict()))


def test_round_trip(tmp_path, tiny_dict):
    p = profile_from_dict(tiny_dict)
    path = save_profile(p, tmp_path / "p.json")
    q = load_profile(path)
    assert q.to_dict() == p.to_dict()
    assert resolve_profile(str(path)).levels[1].tokens == [9, 5, 3, 2]
    with pytest.raises(ProfileError, match="available presets"):
        resolve_profile("no-such-preset")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(kind="janus-deploy/accuracy"), "expected 'janus-deploy/profile'"),
    (lambda d: d.update(format_version=2), "format_version 2"),
    (lambda d: d.pop("candidates"), "missing the key 'candidates'"),
    (lambda d: d["levels"][1].update(tokens=[9, 5, 6, 2]), "not non-increasing"),
    (lambda d: d["levels"][1].update(tokens=[9, 6, 3, 2]), "disagree with"),
    (lambda d: d["levels"][0]["head_ms"].pop("2"), "missing [2]"),
    (lambda d: d["levels"][0]["head_ms"].update({"2": 1.0}), "head_ms decreases"),
    (lambda d: d["levels"][0]["payload"]["fp16"]["4"].update(bytes=5), "must send 0 bytes"),
    (lambda d: d.update(default_codec="zstd"), "default_codec 'zstd'"),
    (lambda d: d.update(segments=[[1, 3]]), "do not match"),
])
def test_validation_errors(tiny_dict, mutate, message):
    mutate(tiny_dict)
    with pytest.raises(ProfileError) as exc:
        profile_from_dict(tiny_dict)
    assert message in str(exc.value)


def test_load_errors(tmp_path):
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(bad)
