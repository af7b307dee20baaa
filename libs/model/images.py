"""Image loading, caching and augmentation for training (torch only in `augment`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from libs.dicom.preprocess import preprocess


def load_image(path: str | Path, size: int) -> np.ndarray:
    """PNG/JPEG -> float32 [size, size] in [0, 1], with the ingestion service's own preprocessing
    (libs.dicom.preprocess: aspect-preserving resize, centred zero padding)."""
    with Image.open(path) as img:
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if arr.shape == (size, size):
        return arr
    return preprocess(arr, size).array


def load_images_cached(paths: list[str], size: int, cache_dir: Path | None, progress: bool = True) -> np.ndarray:
    """uint8 [N, size, size]; cached as .npy keyed by the path list and size (the cache is ignored by git)."""
    key = hashlib.sha1(("\n".join(paths) + f"|{size}").encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"images-{size}-{key}.npy" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        return np.load(cache)
    out = np.zeros((len(paths), size, size), dtype=np.uint8)
    iterator = enumerate(paths)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(paths), desc="loading images", unit="img", leave=False)
    for i, p in iterator:
        out[i] = np.clip(np.rint(load_image(p, size) * 255.0), 0, 255).astype(np.uint8)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


def augment(x, generator):
    """Random affine (rotation +-8 deg, scale +-8 %, one axis squeezed up to 15 % as the ingestion's
    aspect-preserving padding does to non-square films, shift +-5 %, zero fill) and contrast /
    brightness / gamma jitter, on a float batch [N, 1, S, S] in [0, 1]. No horizontal flips: the
    heart's side is anatomy."""
    import math

    import torch
    from torch.nn import functional as F

    n = x.shape[0]

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = u(-8, 8) * math.pi / 180
    scale = u(0.92, 1.08)
    squeeze = u(0.85, 1.0)
    axis = torch.rand(n, generator=generator) < 0.5
    sx = scale * torch.where(axis, squeeze, torch.ones(n))
    sy = scale * torch.where(axis, torch.ones(n), squeeze)
    tx, ty = u(-0.05, 0.05), u(-0.05, 0.05)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output -> input coordinates, so invert the scale.
    theta = torch.stack([torch.stack([cos / sx, -sin / sx, tx], 1), torch.stack([sin / sy, cos / sy, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    contrast = u(0.85, 1.15)[:, None, None, None]
    bright = u(-0.06, 0.06)[:, None, None, None]
    gamma = u(0.85, 1.15)[:, None, None, None]
    x = ((x - 0.5) * contrast + 0.5 + bright).clamp(0, 1)
    return x.pow(gamma)
