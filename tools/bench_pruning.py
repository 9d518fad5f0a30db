"""Does every pruning level pay? Per level of an untrained (random-init, no download) timm ViT,
timed in ONNX Runtime on the CPU (unsplit graphs as the plan exports them, batch 1, the runner's
session settings, round-robin over all graphs so that a change in machine load affects all alike):

* speed-up: latency at alpha = 0 / latency at this level;
* FLOP ideal: the speed-up the multiply-accumulate count predicts, 12·x·D² + 2·x²·D per block for
  x tokens entering it, plus the patch embedding (patches·C·p²·D) and the classifier (D·classes),
  which pruning does not shrink; efficiency = speed-up / FLOP ideal;
* drop: the speed-up of a reference graph with the same token counts whose blocks simply keep
  their first x_l tokens (no matching, no averaging, no proportional attention): what a merge that
  cost nothing would give. FLOP ideal -> drop is what the CPU kernels lose on fewer tokens,
  drop -> speed-up what the merge costs;
* merge share: (level - drop) / (level - embedding and head), the merge's share of block time.

``--before DIR`` also exports the level graphs with the janus_deploy package found in DIR (e.g.
``git archive OLD janus_deploy | tar -x -C DIR``), in a subprocess, and times them in the same
rounds: before/after in one run. ``--ops I,J`` profiles levels I and J with ONNX Runtime's
profiler (SessionOptions.enable_profiling): kernel ms per op type, level graph (and the
``--before`` one) next to the drop reference.

Usage: python tools/bench_pruning.py [--models vit_small_patch16_224 vit_base_patch16_224]
       [--levels 8] [--runs 15] [--threads 1] [--stat median|min] [--clock wall|cpu] [--ops 1,7]
       [--prepack] [--before DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
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


def model_and_schedules(name: str, levels: int):
    """The untrained model as plans create it, and its exponential schedules."""
    from janus_deploy import levels as L
    from janus_deploy.model.load import ModelSpec, create_from_spec, model_info
    from janus_deploy.plan.export import INIT_SEED

    model = create_from_spec(ModelSpec(name), INIT_SEED).eval()
    info = model_info(model)
    grid = L.level_grid(info.num_tokens, info.num_blocks, "exponential", levels=levels)
    return model, [L.schedule("exponential", a, info.num_tokens, info.num_blocks, info.num_prefix_tokens) for a in grid]


def export_graphs(model: nn.Module, schedules: list, out: Path, references: bool = True) -> None:
    """Every level's unsplit graph (``L<i>.onnx``, as the plan exports it) and, with
    ``references``, its drop reference (``D<i>``) and the embedding + head graph (``fixed``), all
    sharing one weight file in ``out``."""
    import onnx

    from janus_deploy.model.load import model_info
    from janus_deploy.model.pruned import PrunedViT
    from janus_deploy.plan.export import DEFAULT_OPSET, export_graph
    from janus_deploy.plan.weights import SharedWeights

    info = model_info(model)
    out.mkdir(parents=True, exist_ok=True)
    weights = SharedWeights(out)
    image = torch.randn(1, 3, info.img_size, info.img_size, generator=torch.Generator().manual_seed(1))
    ins = [{"name": "image", "shape": ["batch", 3, info.img_size, info.img_size], "dtype": "float32"}]
    outs = [{"name": "logits", "shape": ["batch", info.num_classes], "dtype": "float32"}]
    modules = {"fixed": DropViT(model, [])} if references else {}
    for i, s in enumerate(schedules):
        modules[f"L{i}"] = PrunedViT(model, s)
        if references:
            modules[f"D{i}"] = DropViT(model, s.reductions)
    for key, module in modules.items():
        onnx.save(weights.externalize(export_graph(module, (image,), ins, outs, DEFAULT_OPSET)), str(out / f"{key}.onnx"))
    weights.save_index()


def export_before(code: Path, name: str, levels: int, out: Path) -> None:
    """Level graphs exported by the janus_deploy package in ``code`` (this script, run there)."""
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, __file__, "--export-only", str(out), "--models", name, "--levels", str(levels)],
                   env=env, check=True)


def sessions(out: Path, keys: list[str], threads: int, prepack: bool, profile: str | None = None) -> dict:
    """ORT sessions set up as the runner sets up its own (janus_deploy.backends.ort): all
    optimisations, no spinning, no prepacking (unless ``prepack``), the weights handed in from one
    memory map of ``out``'s weight file (kept alive by the sessions)."""
    import onnx
    import onnxruntime as ort

    from janus_deploy.backends.ort import _NP_DTYPES
    from janus_deploy.plan.weights import WEIGHTS_FILE, external_initializers

    blob = np.memmap(out / WEIGHTS_FILE, dtype=np.uint8, mode="r")
    values: dict = {}
    out_sessions = {}
    for key in keys:
        path = out / f"{key}.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.disable_prepacking", "0" if prepack else "1")
        if profile:
            opts.enable_profiling, opts.profile_file_prefix = True, f"{profile}_{key}"
        for name, (dtype, offset, length, dims) in external_initializers(onnx.load(str(path), load_external_data=False)).items():
            if name not in values:
                values[name] = ort.OrtValue.ortvalue_from_numpy(blob[offset: offset + length].view(_NP_DTYPES[dtype]).reshape(dims))
            opts.add_initializer(name, values[name])
        out_sessions[key] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out_sessions[key].keep_alive = values  # the initializers must outlive the session
    return out_sessions


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def round_robin(fns: list, warmup: int, runs: int, clock=time.perf_counter) -> list[list[float]]:
    """Milliseconds of every call of each of ``fns``, one call of each per round, so that a change
    in machine load affects all alike. ``clock``: wall time, or this thread's CPU time (with one
    ORT thread the kernels run on the calling thread, so time the CPU spent on other processes is
    left out)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for t, fn in zip(out, fns):
            t0 = clock()
            fn()
            t.append((clock() - t0) * 1e3)
    return out


def op_profiles(runners: dict, feed: dict, runs: int, pick) -> dict[str, dict[str, float]]:
    """Kernel ms per run by op type of each profiling session in ``runners``, from ONNX Runtime's
    profiler; the sessions run round-robin and each node's time is ``pick`` (median or min) over
    the runs, so that preemption on a busy machine does not land on one op."""
    round_robin([lambda s=s: s.run(None, feed) for s in runners.values()], 3, runs)
    out = {}
    for what, sess in runners.items():
        per_node: dict[str, list[float]] = collections.defaultdict(list)
        op_of = {}
        for e in json.loads(Path(sess.end_profiling()).read_text()):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_node[e["name"]].append(e["dur"] / 1e3)
                op_of[e["name"]] = e["args"]["op_name"]
        per_op: dict[str, float] = collections.Counter()
        for node, durs in per_node.items():
            per_op[op_of[node]] += float(pick(durs[3:]))  # without the warm-up runs
        out[what] = dict(per_op)
    return out


def level_rows(name: str, model: nn.Module, schedules: list, ms: dict[str, float]) -> list[dict]:
    """The table's rows from the latencies ``ms`` (keys L<i>, D<i>, fixed, and B<i> if timed)."""
    d, x0, fixed = model.embed_dim, schedules[0].tokens[0], fixed_macs(model)
    rows = []
    for i, s in enumerate(schedules):
        ideal = flop_ideal(list(s.tokens), d, fixed)
        level, drop = ms[f"L{i}"], ms[f"D{i}"]
        row = {"model": name, "alpha": s.level, "removed": x0 - s.tokens[-1], "ms": level,
               "speedup": ms["L0"] / level, "drop_speedup": ms["L0"] / drop, "ideal": ideal,
               "efficiency": ms["L0"] / level / ideal, "merge_share": (level - drop) / (level - ms["fixed"])}
        if f"B{i}" in ms:
            before = ms[f"B{i}"]
            row.update(before_ms=before, before_speedup=ms["B0"] / before, before_efficiency=ms["B0"] / before / ideal,
                       before_merge_share=(before - drop) / (before - ms["fixed"]))
        rows.append(row)
    return rows


def bench_model(name: str, levels: int, runs: int, threads: int, work: Path, *, stat: str = "median",
                clock: str = "wall", prepack: bool = False, before: Path | None = None, ops: list[int] = ()) -> list[dict]:
    model, scheds = model_and_schedules(name, levels)
    export_graphs(model, scheds, work / name)
    keys = ["fixed"] + [f"{p}{i}" for i in range(len(scheds)) for p in "LD"]
    sets = [(work / name, keys)]
    if before is not None:
        export_before(before, name, levels, work / f"{name}-before")
        sets.append((work / f"{name}-before", [f"L{i}" for i in range(len(scheds))]))
    runners, labels = [], []
    for i, (out, ks) in enumerate(sets):
        for k, sess in sessions(out, ks, threads, prepack).items():
            runners.append(sess)
            labels.append(k if i == 0 else "B" + k[1:])
    info = runners[0].get_inputs()[0]
    feed = {info.name: np.random.default_rng(0).normal(size=[1, *info.shape[1:]]).astype(np.float32)}
    samples = round_robin([lambda s=s: s.run(None, feed) for s in runners], 3, runs, CLOCKS[clock])
    pick = np.median if stat == "median" else np.min
    ms = {k: float(pick(t)) for k, t in zip(labels, samples)}
    print(f"{name}: embedding + head {ms['fixed']:.2f} ms; {stat} {clock} time of {runs} round-robin runs, "
          f"{threads} thread(s), prepacking {'on' if prepack else 'off'}", file=sys.stderr)
    for i in ops:
        profiled = {"level": (work / name, f"L{i}"), "drop": (work / name, f"D{i}")}
        if before is not None:
            profiled["before"] = (work / f"{name}-before", f"L{i}")
        runners = {what: sessions(out, [k], threads, prepack, str(work / f"prof-{what}"))[k]
                   for what, (out, k) in profiled.items()}
        print_ops(name, scheds[i].level, op_profiles(runners, feed, runs, pick), stat)
    return level_rows(name, model, scheds, ms)


def print_ops(name: str, alpha: float, prof: dict[str, dict[str, float]], stat: str) -> None:
    cols = list(prof)
    print(f"\nkernel ms per run by op type (each node's {stat} over the runs), {name} α = {alpha:.4g} "
          "(ORT profiler):\n")
    print("| op | " + " | ".join(cols) + " | level - drop |\n|" + " --- |" * (len(cols) + 2))
    ops = sorted(set().union(*prof.values()), key=lambda o: -(prof["level"].get(o, 0) - prof["drop"].get(o, 0)))
    for op in ops + ["total"]:
        v = {c: (sum(prof[c].values()) if op == "total" else prof[c].get(op, 0.0)) for c in cols}
        print(f"| {op} | " + " | ".join(f"{v[c]:.3f}" for c in cols) + f" | {v['level'] - v['drop']:+.3f} |")


def print_table(rows: list[dict]) -> None:
    before = "before_ms" in rows[0]
    head = ["model", "α", "tokens removed", "ms", "speed-up", "drop speed-up", "FLOP ideal", "efficiency", "merge share"]
    if before:
        head += ["before: ms", "speed-up", "efficiency", "merge share"]
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        cells = [r["model"], f"{r['alpha']:.4g}", str(r["removed"]), f"{r['ms']:.2f}", f"{r['speedup']:.3f}",
                 f"{r['drop_speedup']:.3f}", f"{r['ideal']:.3f}", f"{r['efficiency']:.3f}", f"{100 * r['merge_share']:.1f} %"]
        if before:
            cells += [f"{r['before_ms']:.2f}", f"{r['before_speedup']:.3f}", f"{r['before_efficiency']:.3f}",
                      f"{100 * r['before_merge_share']:.1f} %"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="latency statistic: median, or min (best of the runs; steadier on a busy machine)")
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                    help="wall time, or the calling thread's CPU time (needs --threads 1; leaves out time other processes took)")
    ap.add_argument("--prepack", action="store_true", help="let ORT prepack the weights (a private copy per session)")
    ap.add_argument("--ops", default="", help="comma-separated level indices to profile per op type")
    ap.add_argument("--before", type=Path, default=None, help="directory holding an older janus_deploy package to compare with")
    ap.add_argument("--export-only", type=Path, default=None, help=argparse.SUPPRESS)  # what --before runs
    args = ap.parse_args()
    if args.export_only is not None:
        for name in args.models:
            model, scheds = model_and_schedules(name, args.levels)
            export_graphs(model, scheds, args.export_only, references=False)
        return
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu measures the calling thread: use it with --threads 1")
    ops = [int(i) for i in args.ops.split(",") if i]
    rows = []
    with tempfile.TemporaryDirectory(prefix="janus-pruning-") as tmp:
        for name in args.models:
            rows += bench_model(name, args.levels, args.runs, args.threads, Path(tmp), stat=args.stat,
                                clock=args.clock, prepack=args.prepack, before=args.before, ops=ops)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
