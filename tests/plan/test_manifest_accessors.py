"""The manifest's typed accessors (issue 20: plan entries read through types, not string keys),
on a hand-written two-level manifest: every value below is written here, not computed."""

from __future__ import annotations

import pytest

from janus_deploy.plan.manifest import GraphEntry, Manifest, PlanError, PlanFile, PlanLevel, PlanModel, TensorSpec


def _io(name, shape, dtype="float32"):
    return {"name": name, "shape": shape, "dtype": dtype}


def _seg(i, blocks, file, inputs, outputs):
    return {"index": i, "blocks": blocks, "file": file, "key": f"k{i}", "sha256": "ab" * 32, "bytes": 100 + i,
            "inputs": inputs, "outputs": outputs}


SEGS = [[1, 1], [2, 3]]


def _level(i, policy, alpha, tokens, reductions):
    return {"index": i, "policy": policy, "alpha": alpha, "tokens": tokens, "reductions": reductions,
            "segments": [_seg(0, [1, 1], f"L{i:02d}_S00.onnx", [_io("image", ["batch", 3, 8, 8])],
                              [_io("tokens_out", ["batch", tokens[1], 4]), _io("size_out", ["batch", tokens[1], 1])]),
                         _seg(1, [2, 3], f"L{i:02d}_S01.onnx", [_io("tokens", ["batch", tokens[1], 4]),
                                                                 _io("size", ["batch", tokens[1], 1])],
                              [_io("logits", ["batch", 10])])],
            "unsplit": {"file": f"L{i:02d}_full.onnx", "sha256": "ef" * 32, "inputs": [_io("image", ["batch", 3, 8, 8])],
                        "outputs": [_io("logits", ["batch", 10])]},
            "payload": {"2": {"bytes": {"float32": 80}}}}


DATA = {
    "format_version": 2, "kind": "janus-deploy/plan",
    "model": {"name": "tiny", "num_blocks": 3, "embed_dim": 4, "num_tokens": 5, "num_prefix_tokens": 1, "img_size": 8,
              "num_classes": 10, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    "policy": {"name": "exponential", "k": 1}, "candidates": [0, 1, 3, 4], "segments": SEGS,
    "weights": {"file": "weights.bin", "bytes": 10, "sha256": "cd" * 32},
    "levels": [_level(0, "exponential", 0.0, [5, 5, 5, 5], [0, 0, 0]),
               _level(1, "constant", 1.0, [5, 4, 3, 2], [1, 1, 1])],
    "level_free_segments": [
        _seg(0, [1, 1], "G_S00.onnx", [_io("image", ["batch", 3, 8, 8]), _io("reductions", [1], "int64")], []),
        _seg(1, [2, 3], "G_S01.onnx", [_io("tokens", ["batch", "tokens_in", 4])], [_io("logits", ["batch", 10])])],
}


def test_model_info_is_typed():
    info = Manifest(DATA).model_info
    assert info == PlanModel("tiny", 3, 4, 5, 1, 8, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_levels_and_their_graphs():
    m = Manifest(DATA)
    lv = m.plan_level(1)
    assert isinstance(lv, PlanLevel) and (lv.index, lv.policy, lv.alpha, lv.label) == (1, "constant", 1.0, "r1")
    assert lv.tokens == (5, 4, 3, 2) and lv.reductions == (1, 1, 1) and lv.num_segments == 2
    seg = lv.segments[1]
    assert seg == GraphEntry("L01_S01.onnx", (TensorSpec("tokens", ("batch", 4, 4), "float32"),
                                              TensorSpec("size", ("batch", 4, 1), "float32")),
                             (TensorSpec("logits", ("batch", 10), "float32"),), (2, 3), 1, "ab" * 32, 101, "k1")
    assert seg.input_names == ["tokens", "size"] and seg.output_names == ["logits"] and not seg.takes_reductions
    assert lv.unsplit is not None and lv.unsplit.file == "L01_full.onnx" and lv.unsplit.blocks is None
    assert lv.payload == {"2": {"bytes": {"float32": 80}}}
    assert [x.label for x in m.plan_levels] == ["0", "r1"]
    assert m.find_level(1.0, "constant") == 1 and m.find_level(0.0) == 0


def test_segment_blocks_and_level_free_graphs():
    m = Manifest(DATA)
    assert m.segment_blocks == [(1, 1), (2, 3)]
    lf = m.level_free_graphs
    assert [g.file for g in lf] == ["G_S00.onnx", "G_S01.onnx"]
    assert lf[0].takes_reductions and not lf[1].takes_reductions


def test_out_of_range_level_is_a_plan_error():
    with pytest.raises(PlanError, match="level index 2 out of range"):
        Manifest(DATA).plan_level(2)


def test_file_checksums_cover_every_graph_and_the_weights():
    m = Manifest(DATA)
    sha = m.graph_sha256
    assert sha["L00_S01.onnx"] == "ab" * 32 and "G_S01.onnx" in sha and "L01_full.onnx" in sha
    assert len(sha) == 2 * 3 + 2  # two levels x (two segments + unsplit), two level-free segments
    assert m.files_sha256[-1] == ("weights.bin", "cd" * 32)


def test_weights_file_is_typed():
    assert Manifest(DATA).weights_file == PlanFile("weights.bin", "cd" * 32, 10)


def test_model_info_carries_how_the_export_made_the_network():
    data = {**DATA, "model": {**DATA["model"], "overrides": {"depth": 3}, "checkpoint": "ckpt/tiny.pt",
                              "checkpoint_sha256": "12" * 32, "init_seed": None, "weight_bytes": 4096,
                              "weights_key": "wk"}}
    info = Manifest(data).model_info
    assert (info.overrides, info.checkpoint, info.checkpoint_sha256) == ({"depth": 3}, "ckpt/tiny.pt", "12" * 32)
    assert (info.init_seed, info.weight_bytes, info.weights_key) == (None, 4096, "wk")
    bare = Manifest(DATA).model_info  # older or hand-written manifests: none of them recorded
    assert (bare.overrides, bare.checkpoint, bare.init_seed, bare.weight_bytes, bare.weights_key) == ({}, None, None, None, None)


def test_capped_blocks_default_to_none_capped():
    data = {**DATA, "levels": [{**DATA["levels"][0], "capped_blocks": [2]}, DATA["levels"][1]]}
    assert Manifest(data).plan_level(0).capped_blocks == (2,) and Manifest(DATA).plan_level(0).capped_blocks == ()
