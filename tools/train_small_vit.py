#!/usr/bin/env python
"""Train the small ViT of the digits calibration task and save its checkpoint.

The model is ``create_model(SMALL_MODEL_NAME, **SMALL_MODEL_OVERRIDES)`` (a vit_tiny-class ViT:
64 px input, 8 px patches -> 64 patches + class token, 6 blocks, D = 192, 3 heads, 10 classes,
2.7 M parameters), trained from scratch on the train split of ``janus_deploy.calibrate.digits``
re-rendered every epoch (fresh positions, colours, clutter and a +-15 degree rotation of the
digit: the augmentation). The held-out split is never trained on. At the end it prints held-out
accuracy unpruned (alpha = 0) and at the two largest of 8 exponential pruning levels
(``PrunedViT(model, levels.schedule("exponential", alpha, x0, N, num_prefix))``), and writes a
safetensors state dict that loads strictly with ``create_model(..., checkpoint=path)``.

The defaults are the recipe of the committed ``calibration/digits_vit.safetensors`` (AdamW,
lr 3e-4, weight decay 0.05, batch 64, 150 epochs, 2 warm-up epochs then cosine, label smoothing
0.1, seed 0). A ViT learns this slowly from scratch: ~150 epochs (216k images) are needed for
>= 90% held-out accuracy. That took 141 s with ``--device cuda --workers 2`` (an H200; rendering
bound); on 2 CPU cores a training step runs at ~30-150 images/s, i.e. roughly 25-120 minutes.

Run from the repository root:

    .venv/bin/python tools/train_small_vit.py --device cuda --workers 2   # ~2.5 min on a GPU
    .venv/bin/python tools/train_small_vit.py                              # CPU only, slow
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from janus_deploy import levels
from janus_deploy.calibrate.digits import (
    SMALL_MODEL_CHECKPOINT,
    SMALL_MODEL_NAME,
    SMALL_MODEL_OVERRIDES,
    make_digits,
    split_indices,
)
from janus_deploy.images import normalize
from janus_deploy.model import PrunedViT, create_model, model_info


def _render_epoch(epoch: int, augment: bool, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    return make_digits("train", seed=1000 + epoch, augment=augment, limit=limit)


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    dev = next(model.parameters()).device
    pred = torch.cat([model(x[i : i + batch].to(dev)).argmax(-1).cpu() for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(SMALL_MODEL_CHECKPOINT))
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--warmup-epochs", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop early (after an epoch) past this")
    ap.add_argument("--eval-every", type=int, default=5, help="print held-out accuracy every N epochs")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--no-augment", dest="augment", action="store_false",
                    help="no random rotation of the training digits (positions/clutter still vary)")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes rendering upcoming epochs in the background (0: render in-process)")
    ap.add_argument("--train-limit", type=int, default=None, help="smoke tests: train on the first N images")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="experiment: change a model override (the committed model uses SMALL_MODEL_OVERRIDES)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    overrides = {**SMALL_MODEL_OVERRIDES, **parse_overrides(args.overrides)}
    model = create_model(SMALL_MODEL_NAME, **overrides)
    info = model_info(model)
    model.to(args.device)
    norm = lambda f: torch.from_numpy(normalize(f, info.mean, info.std))  # noqa: E731

    test_frames, test_labels = make_digits("test", seed=0)
    x_test, y_test = norm(test_frames), torch.from_numpy(test_labels)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    n_train = len(split_indices("train")[: args.train_limit])
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    total = args.epochs * steps_per_epoch
    warm = int(args.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warm:
            return args.lr * (step + 1) / warm
        return 0.5 * args.lr * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))

    print(f"model {SMALL_MODEL_NAME} {overrides}: "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, x0={info.num_tokens}, "
          f"N={info.num_blocks}; {n_train} train / {len(y_test)} held-out images")
    t0, step = time.perf_counter(), 0
    gen = torch.Generator().manual_seed(args.seed)
    render = partial(_render_epoch, augment=args.augment, limit=args.train_limit)
    pool = ProcessPoolExecutor(args.workers) if args.workers > 0 else None
    ahead: deque = deque()
    for epoch in range(args.epochs):
        # a fresh rendering of the train split every epoch (positions, colours, clutter, rotation)
        if pool is None:
            frames, labels = render(epoch)
        else:
            while len(ahead) < args.workers + 1 and epoch + len(ahead) < args.epochs:
                ahead.append(pool.submit(render, epoch + len(ahead)))
            frames, labels = ahead.popleft().result()
        x, y = norm(frames).to(args.device), torch.from_numpy(labels).to(args.device)
        perm = torch.randperm(len(y), generator=gen)
        model.train()
        losses = []
        for i in range(0, len(y), args.batch_size):
            idx = perm[i : i + args.batch_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.detach())
            step += 1
        elapsed = time.perf_counter() - t0
        msg = f"epoch {epoch + 1:3d}/{args.epochs}  loss {float(torch.stack(losses).mean()):.3f}  {elapsed:6.0f} s"
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            msg += f"  held-out acc {evaluate(model, x_test, y_test):.3f}"
        print(msg, flush=True)
        if args.max_minutes is not None and elapsed > args.max_minutes * 60:
            print(f"time budget of {args.max_minutes} min reached; stopping")
            break
    train_s = time.perf_counter() - t0
    if pool is not None:
        pool.shutdown(cancel_futures=True)
    model.cpu().eval()

    amax = levels.alpha_max(info.num_tokens, info.num_blocks)
    grid = levels.level_grid(info.num_tokens, info.num_blocks, levels=8)
    for a in (0.0, grid[-2], grid[-1]):
        sched = levels.schedule("exponential", a, info.num_tokens, info.num_blocks, info.num_prefix_tokens)
        acc = evaluate(PrunedViT(model, sched), x_test, y_test)
        print(f"held-out accuracy at alpha={a:.4f} (tokens {list(sched.tokens)}): {acc:.4f}")
    print(f"alpha_max = {amax:.4f}; training took {train_s:.0f} s")

    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out))
    reloaded = create_model(SMALL_MODEL_NAME, checkpoint=args.out, **overrides)
    assert evaluate(reloaded, x_test, y_test) == evaluate(model, x_test, y_test)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); reloads strictly")


if __name__ == "__main__":
    main()
