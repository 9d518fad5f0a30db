"""Reading images and turning frames into model input (shared by verify, profile, calibrate, runtime).

A *frame* is uint8 RGB ``[H, W, 3]`` at the model's resolution: what the edge sends at split 0.
``normalize`` turns frames into the float32 ``[B, 3, H, W]`` input of a plan's first segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from janus_deploy import JanusError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}


class ImageError(JanusError):
    """An image folder is empty or an image cannot be read."""


def list_images(folder: str | Path, *, labelled: bool = False) -> list[tuple[Path, str | None]]:
    """Image files under ``folder`` (sorted). With ``labelled``, the class is the sub-folder name
    (ImageFolder layout; hidden sub-folders are skipped); otherwise images may sit anywhere below
    ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {folder}")
    if labelled:
        out: list[tuple[Path, str | None]] = []
        for p in files:
            if p.parent == folder:
                raise ImageError(f"{p} is not in a class sub-folder; labelled folders look like DIR/<class>/<image>")
            cls = p.relative_to(folder).parts[0]
            if not cls.startswith("."):  # hidden folders (.thumbs, .ipynb_checkpoints) are no class
                out.append((p, cls))
        if not out:
            raise ImageError(f"no images found in class sub-folders of {folder}")
        return out
    return [(p, None) for p in files]


def load_frame(path: str | Path, img_size: int) -> np.ndarray:
    """Read an image as an RGB uint8 frame resized (bilinear) to ``img_size`` square."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((img_size, img_size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def normalize(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 ``[B, H, W, 3]`` (or ``[H, W, 3]``) -> float32 ``[B, 3, H, W]`` normalised input."""
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ImageError(f"frames must be [B, H, W, 3] uint8, got shape {frames.shape}")
    x = (frames.astype(np.float32) / np.float32(255.0) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def synthetic_frames(count: int, img_size: int, seed: int = 0) -> np.ndarray:
    """Deterministic smooth random frames (for --synthetic runs and parity checks)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(count, 8, 8, 3)).astype(np.float32)
    reps = -(-img_size // 8)
    big = np.repeat(np.repeat(low, reps, axis=1), reps, axis=2)[:, :img_size, :img_size]
    noise = rng.normal(0, 12, size=big.shape)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def frames_for(folder: str | Path | None, count: int, img_size: int) -> np.ndarray:
    """The first ``count`` images of ``folder`` as frames, or ``count`` synthetic frames."""
    if count < 1:
        raise ImageError(f"need at least one image, got a count of {count}")
    if folder is None:
        return synthetic_frames(count, img_size)
    return np.stack([load_frame(p, img_size) for p, _ in list_images(folder)[:count]])
