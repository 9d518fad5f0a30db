"""The pruned forward against timm, the segment chain against the whole model, and ONNX parity."""


import numpy as np
import onnxruntime as ort
import pytest
import torch

from janus_deploy import levels
from janus_deploy.model import (ModelError, PrunedViT, build_level_free_segments, build_segments, create_model,
                                model_info, run_chain)
from janus_deploy.plan.export import export_graph, segment_io

# small configurations of every supported family (depth reduced so CI stays fast)
FAMILIES = {
    "vit": ("vit_tiny_patch16_224", {"depth": 4}),
    "deit": ("deit_tiny_patch16_224", {"depth": 4}),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", {"depth": 4}),
    "layerscale_qknorm": ("vit_small_patch16_224", {"depth": 3, "init_values": 0.1, "qk_norm": True}),
    "registers_avgpool": ("vit_small_patch16_224", {"depth": 3, "reg_tokens": 4, "global_pool": "avg", "class_token": False, "fc_norm": True}),
    "no_qkv_bias_384": ("vit_tiny_patch16_384", {"depth": 2, "qkv_bias": False}),
}


def _model(name, kw):
    torch.manual_seed(0)
    m = create_model(name, **kw)
    # random LayerScale / norm parameters so the test exercises them (timm inits them to constants)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "ls" in n or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    return m


@pytest.mark.parametrize("family", list(FAMILIES))
def test_alpha0_equals_timm(family):
    name, kw = FAMILIES[family]
    m = _model(name, kw)
    info = model_info(m)
    sched = levels.schedule("exponential", 0.0, info.num_tokens, info.num_blocks, info.num_prefix_tokens)
    x = torch.randn(2, 3, info.img_size, info.img_size)
    with torch.no_grad():
        ref = m(x)
        out = PrunedViT(m, sched)(x)
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", ["vit", "deit_distilled", "registers_avgpool"])
@pytest.mark.parametrize("k", [1, 3])
def test_chain_equals_whole_and_tokens_follow_schedule(family, k):
    name, kw = FAMILIES[family]
    m = _model(name, {**kw, "depth": 6})
    info = model_info(m)
    cands = levels.candidate_splits(info.num_blocks, k)
    amax = levels.alpha_max(info.num_tokens, info.num_blocks)
    for alpha in (0.3 * amax, amax):
        sched = levels.schedule("exponential", alpha, info.num_tokens, info.num_blocks, info.num_prefix_tokens)
        segs = build_segments(m, sched, cands)
        x = torch.randn(2, 3, info.img_size, info.img_size)
        with torch.no_grad():
            whole = PrunedViT(m, sched)(x)
            chain = run_chain(segs, x)
            assert (whole - chain).abs().max().item() <= 1e-5
            out = (x,)
            for seg in segs[:-1]:
                out = seg(*out)
                assert out[0].shape[1] == sched.tokens[seg.end]
                assert out[1].sum(1).flatten().tolist() == [info.num_tokens] * 2  # every patch counted once


def test_segments_export_and_match_onnxruntime():
    m = _model("vit_tiny_patch16_224", {"depth": 6})
    info = model_info(m)
    cands = levels.candidate_splits(info.num_blocks, 3)
    amax_level = levels.level_grid(info.num_tokens, info.num_blocks, levels=3)[-1]
    for alpha in (0.0, amax_level):
        sched = levels.schedule("exponential", alpha, info.num_tokens, info.num_blocks, info.num_prefix_tokens)
        args = (torch.randn(2, 3, info.img_size, info.img_size),)
        for seg in build_segments(m, sched, cands):
            assert seg.in_tokens == sched.tokens[seg.start - 1]
            ins, outs = segment_io(seg, info)
            graph = export_graph(seg, args, ins, outs, 17)
            ops = {n.op_type for n in graph.graph.node}
            assert not ops & {"ScatterElements", "ScatterND", "NonZero", "Loop", "If"}
            sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
            feed = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
            got = sess.run(None, feed)
            with torch.no_grad():
                want = seg(*args)
            want = want if isinstance(want, tuple) else (want,)
            for g, w in zip(got, want):
                assert g.shape == tuple(w.shape)
                np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)
            # static token dimension in the exported interface
            for o, spec in zip(graph.graph.output, outs):
                dims = [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
                assert dims == spec["shape"]
            args = want


@pytest.mark.parametrize("family", ["vit", "registers_avgpool"])
def test_level_free_graphs_serve_every_level(family):
    """One exported level-free graph per segment, fed each level's reductions in ONNX Runtime,
    equals that level's static segment chain in PyTorch (levels that merge nothing, some, the most,
    and ToMe's constant r)."""
    name, kw = FAMILIES[family]
    m = _model(name, {**kw, "depth": 6})
    info = model_info(m)
    cands = levels.candidate_splits(info.num_blocks, 2)
    amax = levels.alpha_max(info.num_tokens, info.num_blocks)
    scheds = [levels.schedule("exponential", a, info.num_tokens, info.num_blocks, info.num_prefix_tokens)
              for a in (0.0, 0.4 * amax, amax)]
    scheds.append(levels.schedule("constant", 8, info.num_tokens, info.num_blocks, info.num_prefix_tokens))
    x = torch.randn(2, 3, info.img_size, info.img_size)
    trace = scheds[1]  # exported once, from one level's tensors
    sessions, args = [], (x,)
    for seg in build_level_free_segments(m, cands):
        red = (torch.tensor(trace.reductions[seg.start - 1: seg.end]),) if seg.num_blocks else ()
        ins, outs = segment_io(seg, info)
        graph = export_graph(seg, args + red, ins, outs, 17)
        assert not {n.op_type for n in graph.graph.node} & {"ScatterElements", "ScatterND", "NonZero", "Loop", "If"}
        sessions.append((seg, ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])))
        with torch.no_grad():
            res = seg(*args, *red)
        args = res if isinstance(res, tuple) else (res,)
    for sched in scheds:
        with torch.no_grad():
            want = run_chain(build_segments(m, sched, cands), x).numpy()
        out = [x.numpy()]
        for seg, sess in sessions:
            feed = out + ([np.array(sched.reductions[seg.start - 1: seg.end])] if seg.num_blocks else [])
            names = [i["name"] for i in segment_io(seg, info)[0]]
            wanted = {i.name for i in sess.get_inputs()}
            out = sess.run(None, {n: a for n, a in zip(names, feed) if n in wanted})
        np.testing.assert_allclose(out[0], want, atol=1e-4, rtol=0)


def test_bad_models_fail_clearly(tmp_path):
    with pytest.raises(ModelError, match="not supported"):
        create_model("resnet18")
    with pytest.raises(ModelError, match="unknown model .vit_nonexistent"):
        create_model("vit_nonexistent_patch3_999")
    with pytest.raises(ModelError, match="only timm's standard pre-norm Block"):
        create_model("vit_tiny_patch16_224", block_fn=__import__("timm").models.vision_transformer.ResPostBlock)
    with pytest.raises(ModelError, match="map"):
        create_model("vit_tiny_patch16_224", global_pool="map")


def test_checkpoint_loading(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = create_model("vit_tiny_patch16_224", depth=2, num_classes=5)
    path = tmp_path / "ok.safetensors"
    save_file(src.state_dict(), str(path))
    loaded = create_model("vit_tiny_patch16_224", checkpoint=path, depth=2, num_classes=5)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(src(x), loaded(x))
    pth = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, pth)
    create_model("vit_tiny_patch16_224", checkpoint=pth, depth=2, num_classes=5)
    with pytest.raises(ModelError, match="does not fit the model.*shape mismatch"):
        create_model("vit_tiny_patch16_224", checkpoint=path, depth=2, num_classes=7)
    with pytest.raises(ModelError, match="missing"):
        create_model("vit_tiny_patch16_224", checkpoint=path, depth=3, num_classes=5)
    with pytest.raises(ModelError, match="does not exist"):
        create_model("vit_tiny_patch16_224", checkpoint=tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        create_model("vit_tiny_patch16_224", checkpoint=bad)
