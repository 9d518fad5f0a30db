"""A small, deterministic, offline image-classification task built from sklearn's bundled digits.

Each frame is a 64x64 RGB canvas holding one 8x8 sklearn digit upscaled ~3x (the label) at a
random position and colour, over a tinted noisy background cluttered with dimmer fragments of
other digits. The digit covers only a few of the 8x8-pixel patches of the small ViT, so merging
tokens aggressively mixes it with clutter and pruning measurably costs accuracy, while the
unpruned model is accurate: exactly the trade-off the scheduler needs real numbers for.

The train / held-out split is fixed by sklearn index (stratified, seeded with :data:`SPLIT_SEED`)
and never depends on the rendering ``seed``, so rendering the train split with any seed never
shows a held-out digit. Nothing is downloaded: ``load_digits`` ships with scikit-learn.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from janus_deploy import JanusError

#: The small model the calibration task is trained for (``create_model(NAME, **OVERRIDES)``).
SMALL_MODEL_NAME = "vit_tiny_patch16_224"
SMALL_MODEL_OVERRIDES: dict = {"img_size": 64, "patch_size": 8, "depth": 6, "num_classes": 10}
#: Where the committed checkpoint of that model lives (relative to the repository root).
SMALL_MODEL_CHECKPOINT = "calibration/digits_vit.safetensors"

IMG_SIZE = 64
NUM_CLASSES = 10
CLASS_NAMES = [str(i) for i in range(NUM_CLASSES)]
SPLIT_SEED = 20250214  # fixes which sklearn indices are held out; independent of render seeds
TEST_FRACTION = 0.2
SPLITS = ("train", "test")


class TaskError(JanusError):
    """The calibration task cannot be built (missing scikit-learn, bad split name)."""


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # optional dependency (extra "calib")
        raise TaskError("the digits task needs scikit-learn: pip install 'janus-deploy[calib]'") from exc
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def split_indices(split: str) -> np.ndarray:
    """sklearn indices of a split: per class, a seeded 20% are held out ("test"), the rest "train".
    Returned in a seeded shuffled order (so a ``limit`` prefix is class-balanced on average)."""
    if split not in SPLITS:
        raise TaskError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    _, labels = _digits()
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * TEST_FRACTION))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    chosen = np.concatenate(test if split == "test" else train)
    return chosen[rng.permutation(len(chosen))]


def _upscale(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a float [h, w] image in [0, 1] to [size, size]."""
    from PIL import Image

    im = Image.fromarray((img * 255).astype(np.uint8), mode="L").resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def _paste(canvas: np.ndarray, layer: np.ndarray, color: np.ndarray, y: int, x: int) -> None:
    """Max-blend ``layer`` [h, w] tinted with ``color`` [3] into ``canvas`` at (y, x), clipped."""
    h, w = layer.shape
    H, W, _ = canvas.shape
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)
    if y1 <= y0 or x1 <= x0:
        return
    part = layer[y0 - y : y1 - y, x0 - x : x1 - x, None] * color
    np.maximum(canvas[y0:y1, x0:x1], part, out=canvas[y0:y1, x0:x1])


def render(
    indices: np.ndarray, seed: int, *, clutter_pool: np.ndarray | None = None, augment: bool = False
) -> np.ndarray:
    """Frames uint8 [N, 64, 64, 3] for sklearn digit ``indices``; clutter fragments are taken
    from ``clutter_pool`` (default: the same indices). ``augment`` (training only) also rotates
    the labelled digit by up to +-15 degrees. Deterministic in (indices, seed, augment)."""
    images, _ = _digits()
    pool = indices if clutter_pool is None else clutter_pool
    rng = np.random.default_rng(seed)
    out = np.empty((len(indices), IMG_SIZE, IMG_SIZE, 3), np.uint8)
    for n, idx in enumerate(indices):
        # background: dark random tint + sensor-like noise
        canvas = np.empty((IMG_SIZE, IMG_SIZE, 3), np.float32)
        canvas[:] = rng.uniform(0.0, 0.2, size=3)
        # clutter: dimmer fragments (crops) of other digits, anywhere
        for _ in range(rng.integers(3, 7)):
            other = images[pool[rng.integers(len(pool))]]
            ch, cw = rng.integers(3, 6, size=2)
            oy, ox = rng.integers(0, 9 - ch), rng.integers(0, 9 - cw)
            frag = other[oy : oy + ch, ox : ox + cw]
            scale = rng.uniform(2.0, 3.5)
            frag = _upscale_rect(frag, int(round(ch * scale)), int(round(cw * scale)))
            color = rng.uniform(0.2, 0.5, size=3)
            _paste(canvas, frag, color, int(rng.integers(-4, IMG_SIZE - 4)), int(rng.integers(-4, IMG_SIZE - 4)))
        # the labelled digit: ~3x, random position (fully inside), bright random colour
        size = int(rng.integers(20, 29))
        digit = _upscale(images[idx], size)
        if augment:
            digit = _rotate(digit, float(rng.uniform(-15.0, 15.0)))
        color = rng.uniform(0.55, 1.0, size=3)
        color[rng.integers(3)] = 1.0  # at least one saturated channel: clearly the brightest object
        _paste(canvas, digit, color, int(rng.integers(0, IMG_SIZE - size + 1)),
               int(rng.integers(0, IMG_SIZE - size + 1)))
        canvas += rng.normal(0.0, 0.04, size=canvas.shape).astype(np.float32)
        out[n] = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray((img * 255).astype(np.uint8), mode="L").rotate(degrees, Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def _upscale_rect(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray((img * 255).astype(np.uint8), mode="L").resize((max(w, 1), max(h, 1)), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def make_digits(
    split: str = "test", seed: int = 0, *, limit: int | None = None, augment: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The digits task: ``(frames uint8 [N, 64, 64, 3], labels int64 [N])``.

    ``split`` is "train" (1438 digits) or "test" (359 held-out digits); ``seed`` picks the
    rendering (positions, colours, clutter) and ``limit`` keeps the first ``limit`` images.
    ``augment`` adds training-time shape augmentation (see :func:`render`). Same arguments,
    same bytes.
    """
    idx = split_indices(split)
    if limit is not None:
        if limit < 1:
            raise TaskError(f"limit must be >= 1, got {limit}")
        idx = idx[:limit]
    # Clutter comes from the same split, so held-out frames contain no training digit at all.
    pool = split_indices(split)
    _, labels = _digits()
    # Offset the stream per split so train and test renderings never share random draws.
    frames = render(idx, seed * 2 + (1 if split == "test" else 0), clutter_pool=pool, augment=augment)
    return frames, labels[idx].copy()


def write_image_folder(out_dir: str | Path, split: str = "test", limit: int | None = None, seed: int = 0) -> int:
    """Write the task as PNGs in ImageFolder layout ``out_dir/<class>/<i>.png``; returns the count."""
    from PIL import Image

    frames, labels = make_digits(split, seed, limit=limit)
    out_dir = Path(out_dir)
    for c in CLASS_NAMES:
        (out_dir / c).mkdir(parents=True, exist_ok=True)
    for i, (frame, label) in enumerate(zip(frames, labels)):
        Image.fromarray(frame).save(out_dir / CLASS_NAMES[label] / f"{i:05d}.png")
    return len(frames)
