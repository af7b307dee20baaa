"""Image loading, caching and augmentation for training (torch only in `augment` and `stretch_torch`).

One image path: a training image file is wrapped as a DX instance (libs.dicom.wrap, no header window,
as a converter writes it) and read with libs.dicom.load.display_and_fit, the functions ingestion uses:
the display pipeline (estimated window), then the aspect-preserving fit. The bundle's normalisation
(libs.bundle.normalize, with its per-image percentile stretch) follows in training exactly as in the
runner. tests/model/test_train_serve_parity.py pins that a training image and the same image pushed
through the platform's ingestion give the same encoder input.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

# Cached display values are uint16 (value * 65535): a uint8 cache would re-quantise the windowed values.
CACHE_SCALE = 65535.0
# Part of the cache key: bump when the image path changes, so an old cache is never reused.
_PIPELINE = "dicom-display-v1"


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Image file -> float32 [size, size] in [0, 1], through the platform's own DICOM display path."""
    from libs.dicom.load import display_and_fit
    from libs.dicom.wrap import wrap_file

    return display_and_fit(wrap_file(path), size).array


def to_unit(arr: np.ndarray) -> np.ndarray:
    """Cached uint16 display values -> float32 in [0, 1]."""
    return arr.astype(np.float32) / np.float32(CACHE_SCALE)


def load_images_cached(paths: list[str], size: int, cache_dir: Path | None, progress: bool = True) -> np.ndarray:
    """uint16 [N, size, size] display values (to_unit gives [0, 1]); cached as .npy keyed by the path
    list, size and pipeline version (the cache is ignored by git)."""
    key = hashlib.sha1(("\n".join(paths) + f"|{size}|{_PIPELINE}").encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"images-{size}-{key}.npy" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        return np.load(cache)
    out = np.zeros((len(paths), size, size), dtype=np.uint16)
    iterator = enumerate(paths)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(paths), desc="loading images", unit="img", leave=False)
    for i, p in iterator:
        out[i] = np.clip(np.rint(load_image(p, size) * CACHE_SCALE), 0, CACHE_SCALE).astype(np.uint16)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


def stretch_torch(x, low: float, high: float):
    """libs.bundle.normalize.stretch_images for a torch batch [N, 1, S, S] (same percentile definition:
    linear interpolation, as numpy's default and torch.quantile's)."""
    import torch

    flat = x.reshape(x.shape[0], -1)
    q = torch.quantile(flat, torch.tensor([low / 100.0, high / 100.0], dtype=flat.dtype, device=flat.device), dim=1)
    lo, hi = q[0], q[1]
    span = hi - lo
    degenerate = span <= 1e-6
    span = torch.where(degenerate, torch.ones_like(span), span)
    lo = torch.where(degenerate, torch.zeros_like(lo), lo)
    out = (flat - lo[:, None]) / span[:, None]
    return out.clamp_(0.0, 1.0).reshape(x.shape)


def normalize_torch(x, norm: dict):
    """libs.bundle.normalize.normalize_images for a torch batch in [0, 1]."""
    stretch = norm.get("stretch")
    if stretch:
        x = stretch_torch(x, float(stretch["low"]), float(stretch["high"]))
    return (x - norm["mean"]) / norm["std"]


def augment(x, generator, strength: str = "acquisition"):
    """Acquisition-like variation on a float batch [N, 1, S, S] in [0, 1] (display values).

    Geometry: rotation +-8 deg, scale +-8 % (with random crop/zoom up to 15 % when "acquisition"), one
    axis squeezed up to 15 % as the ingestion's aspect-preserving padding does to non-square films,
    shift +-5 %, zero fill. Intensity: contrast / brightness / gamma jitter; with "acquisition" also
    exposure (a wider gamma), blur or sharpening (detector MTF), Gaussian and Poisson-like noise, and a
    JPEG-like block quantisation (lossy archives). No horizontal flips: the heart's side is anatomy.
    strength "basic" is the 1.2.x recipe (affine + contrast/brightness/gamma only).
    """
    import math

    import torch
    from torch.nn import functional as F

    n = x.shape[0]
    wide = strength == "acquisition"

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    def chance(p):
        return (torch.rand(n, generator=generator) < p)[:, None, None, None]

    angle = u(-8, 8) * math.pi / 180
    scale = u(0.92, 1.08)
    if wide:  # zoom in up to 15 % more: a tighter collimation / crop
        scale = scale / torch.where(torch.rand(n, generator=generator) < 0.3, u(1.0, 1.15), torch.ones(n))
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
    gamma = (u(0.7, 1.4) if wide else u(0.85, 1.15))[:, None, None, None]
    x = ((x - 0.5) * contrast + 0.5 + bright).clamp(0, 1)
    x = x.pow(gamma)
    if not wide:
        return x
    # Blur (soft detector) or unsharp masking (edge-enhanced processing), each on a third of images.
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    kernel = (k[:, None] * k[None, :])[None, None]
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel)
    amount = u(0.3, 1.0)[:, None, None, None]
    sharpened = (x + amount * (x - blurred)).clamp(0, 1)
    pick = torch.rand(n, generator=generator)[:, None, None, None]
    x = torch.where(pick < 0.33, blurred, torch.where(pick < 0.66, sharpened, x))
    # Quantum (signal-dependent) and electronic noise.
    sigma = u(0.0, 0.03)[:, None, None, None]
    noise = torch.randn(x.shape, generator=generator)
    x = torch.where(chance(0.5), (x + sigma * noise * (0.3 + x).sqrt()).clamp(0, 1), x)
    # Lossy compression: 8x8 block means blended in, as heavy JPEG flattens blocks.
    blocks = F.interpolate(F.avg_pool2d(x, 8, ceil_mode=True), size=x.shape[-2:], mode="nearest")
    mix = u(0.1, 0.4)[:, None, None, None]
    x = torch.where(chance(0.2), (1 - mix) * x + mix * blocks, x)
    return x
