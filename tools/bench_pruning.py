"""Does every pruning level pay? Per level of an untrained (random-init, no download) timm ViT,
timed in ONNX Runtime on the CPU (unsplit graphs, batch 1, round-robin over all graphs so that a
change in machine load affects every level alike):

* speed-up: median latency at alpha = 0 / median latency at this level;
* FLOP ideal: the speed-up the multiply-accumulate count predicts, 12·x·D² + 2·x²·D per block for
  x tokens entering it, plus the patch embedding (x_patches·C·p²·D) and the classifier (D·classes),
  which pruning does not shrink; efficiency = speed-up / FLOP ideal;
* drop: the speed-up of a reference graph with the same token counts whose blocks simply keep
  their first x_l tokens (no matching, no averaging, no proportional attention): what a merge that
  cost nothing would give, so ideal -> drop is what the CPU's kernels lose on fewer tokens and
  drop -> speed-up is what the merge costs;
* merge share: (level - drop) / (level - embed and head), the merge's share of the block time.

``--ops I,J`` also profiles levels I, J with ONNX Runtime's profiler (SessionOptions.enable_profiling)
and prints kernel time per op type, level graph next to its drop reference.

Usage: python tools/bench_pruning.py [--models vit_small_patch16_224 vit_base_patch16_224]
       [--levels 8] [--runs 15] [--threads 1] [--ops 1,7] [--prepack]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEFAULT_MODELS = ("vit_small_patch16_224", "vit_base_patch16_224")


def block_macs(x: int, d: int) -> int:
    """Multiply-accumulates of one block entered by ``x`` tokens of width ``d``."""
    return 12 * x * d * d + 2 * x * x * d


def fixed_macs(model: nn.Module) -> int:
    """Multiply-accumulates pruning does not touch: patch embedding and classifier."""
    proj = model.patch_embed.proj
    d = proj.out_channels
    patch = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
    classes = model.head.out_features if isinstance(model.head, nn.Linear) else 0
    return model.patch_embed.num_patches * patch * d + d * classes


def flop_ideal(tokens: list[int], d: int, fixed: int) -> float:
    """Speed-up over alpha = 0 that the MAC count predicts for a schedule ``tokens`` (x_0..x_N)."""
    n = len(tokens) - 1
    return (fixed + n * block_macs(tokens[0], d)) / (fixed + sum(block_macs(x, d) for x in tokens[:-1]))


class DropViT(nn.Module):
    """Reference with a level's token counts and no merge cost: block l keeps its first x_l tokens
    after attention. Not a model anyone would serve; with no reductions, embedding + head only."""

    def __init__(self, model: nn.Module, reductions: list[int]) -> None:
        super().__init__()
        self.model, self.reductions = model, list(reductions)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from janus_deploy.model.pruned import attention, embed, head

        x, size = embed(self.model, image)
        for blk, r in zip(self.model.blocks, self.reductions):
            out, _ = attention(blk.attn, blk.norm1(x), None)
            x = x + blk.ls1(out)
            if r:
                x = x[:, : x.shape[1] - r]
            x = x + blk.ls2(blk.mlp(blk.norm2(x)))
        return head(self.model, x, size[:, : x.shape[1]])


def session(path: Path, blob: np.ndarray, values: dict, threads: int, profile: str | None = None,
            prepack: bool = False):
    """An ORT session set up as the runner sets up its own (janus_deploy.backends.ort): all
    optimisations, no spinning, no prepacking (unless ``prepack``), the weights handed in from one
    memory map."""
    import onnx
    import onnxruntime as ort

    from janus_deploy.backends.ort import _NP_DTYPES
    from janus_deploy.plan.weights import external_initializers

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.disable_prepacking", "0" if prepack else "1")
    if profile:
        opts.enable_profiling, opts.profile_file_prefix = True, profile
    for name, (dtype, offset, length, dims) in external_initializers(onnx.load(str(path), load_external_data=False)).items():
        if name not in values:
            values[name] = ort.OrtValue.ortvalue_from_numpy(blob[offset: offset + length].view(_NP_DTYPES[dtype]).reshape(dims))
        opts.add_initializer(name, values[name])
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_graphs(model: nn.Module, schedules: list, out: Path) -> dict[str, Path]:
    """Every level's unsplit graph (as the plan exports it), its drop reference and the
    embedding + head graph, all sharing one weight file in ``out``."""
    import onnx

    from janus_deploy.model.load import model_info
    from janus_deploy.model.pruned import PrunedViT
    from janus_deploy.plan.export import DEFAULT_OPSET, export_graph
    from janus_deploy.plan.weights import SharedWeights

    info = model_info(model)
    weights = SharedWeights(out)
    image = torch.randn(1, 3, info.img_size, info.img_size, generator=torch.Generator().manual_seed(1))
    ins = [{"name": "image", "shape": ["batch", 3, info.img_size, info.img_size], "dtype": "float32"}]
    outs = [{"name": "logits", "shape": ["batch", info.num_classes], "dtype": "float32"}]
    modules = {"fixed": DropViT(model, [])}
    for i, s in enumerate(schedules):
        modules[f"L{i}"] = PrunedViT(model, s)
        modules[f"D{i}"] = DropViT(model, s.reductions)
    paths = {}
    for key, module in modules.items():
        paths[key] = out / f"{key}.onnx"
        onnx.save(weights.externalize(export_graph(module, (image,), ins, outs, DEFAULT_OPSET)), str(paths[key]))
    weights.save_index()
    return paths


def op_profile(sess, feed: dict, runs: int) -> dict[str, float]:
    """Kernel ms per run by op type, from ONNX Runtime's profiler."""
    for _ in range(runs):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / runs
    return dict(per_op)


def bench_model(name: str, levels: int, runs: int, threads: int, ops: list[int], workdir: Path,
                prepack: bool = False) -> list[dict]:
    from janus_deploy import levels as L
    from janus_deploy.model.load import ModelSpec, create_from_spec, model_info
    from janus_deploy.plan.export import INIT_SEED
    from janus_deploy.plan.weights import WEIGHTS_FILE
    from janus_deploy.profile.measure import time_calls

    model = create_from_spec(ModelSpec(name), INIT_SEED).eval()
    info = model_info(model)
    grid = L.level_grid(info.num_tokens, info.num_blocks, "exponential", levels=levels)
    scheds = [L.schedule("exponential", a, info.num_tokens, info.num_blocks, info.num_prefix_tokens) for a in grid]
    out = workdir / name
    out.mkdir(parents=True, exist_ok=True)
    paths = export_graphs(model, scheds, out)
    blob = np.memmap(out / WEIGHTS_FILE, dtype=np.uint8, mode="r")
    values: dict = {}
    sessions = {k: session(p, blob, values, threads, prepack=prepack) for k, p in paths.items()}
    image = np.random.default_rng(0).normal(size=(1, 3, info.img_size, info.img_size)).astype(np.float32)
    feed = {"image": image}
    keys = list(sessions)
    stats = time_calls([lambda k=k: sessions[k].run(None, feed) for k in keys], 3, runs)
    ms = {k: s["median"] for k, s in zip(keys, stats)}
    fixed = fixed_macs(model)
    rows = []
    for i, s in enumerate(scheds):
        level, drop = ms[f"L{i}"], ms[f"D{i}"]
        ideal = flop_ideal(list(s.tokens), info.embed_dim, fixed)
        rows.append({
            "model": name, "alpha": s.level, "removed": info.num_tokens - s.tokens[-1], "ms": level,
            "drop_ms": drop, "speedup": ms["L0"] / level, "drop_speedup": ms["L0"] / drop, "ideal": ideal,
            "efficiency": ms["L0"] / level / ideal, "merge_share": (level - drop) / (level - ms["fixed"]),
        })
    print(f"{name}: embed + head {ms['fixed']:.2f} ms; median of {runs} round-robin runs, {threads} thread(s), "
          f"prepacking {'on' if prepack else 'off'}",
          file=sys.stderr)
    for i in ops:
        prof = {}
        for key in (f"L{i}", f"D{i}"):
            sess = session(paths[key], blob, values, threads, profile=str(out / f"prof_{key}"), prepack=prepack)
            for _ in range(3):
                sess.run(None, feed)
            prof[key] = op_profile(sess, feed, runs)
        print_ops(name, scheds[i].level, prof[f"L{i}"], prof[f"D{i}"])
    return rows


def print_ops(name: str, alpha: float, level: dict[str, float], drop: dict[str, float]) -> None:
    print(f"\nper-op kernel time, {name} alpha={alpha:g} (ms per run, ORT profiler):\n")
    print("| op | level graph | drop reference | difference |\n| --- | --- | --- | --- |")
    for op in sorted(set(level) | set(drop), key=lambda o: -(level.get(o, 0) - drop.get(o, 0))):
        a, b = level.get(op, 0.0), drop.get(op, 0.0)
        print(f"| {op} | {a:.3f} | {b:.3f} | {a - b:+.3f} |")
    a, b = sum(level.values()), sum(drop.values())
    print(f"| total | {a:.3f} | {b:.3f} | {a - b:+.3f} |")


def print_table(rows: list[dict]) -> None:
    print("| model | α | tokens removed | ms | speed-up | drop speed-up | FLOP ideal | efficiency | merge share |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['alpha']:.4g} | {r['removed']} | {r['ms']:.2f} | {r['speedup']:.3f} | "
              f"{r['drop_speedup']:.3f} | {r['ideal']:.3f} | {r['efficiency']:.3f} | {100 * r['merge_share']:.1f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prepack", action="store_true", help="let ORT prepack the weights (private copies per session)")
    ap.add_argument("--ops", default="", help="comma-separated level indices to profile per op type")
    args = ap.parse_args()
    ops = [int(i) for i in args.ops.split(",") if i]
    rows = []
    with tempfile.TemporaryDirectory(prefix="janus-pruning-") as tmp:
        for name in args.models:
            rows += bench_model(name, args.levels, args.runs, args.threads, ops, Path(tmp), args.prepack)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
