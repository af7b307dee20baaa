"""Display image -> square model input: aspect-preserving resize, then centred zero padding.

Resampling is Pillow's on a 32-bit float ('F') image, so no precision is lost to 8 bits.
Lanczos scales its kernel with the reduction factor, which is what removes aliasing when a
~2k image goes to 512 (a plain subsample would alias rib edges and wires into moire). For
reductions above 3x, Pillow first box-reduces by an integer factor (reducing_gap=3.0), which
its authors measure as indistinguishable from the full convolution and is faster.
Measured in bench/bench_preprocess.py: ~18-28 ms for 1955x1841 -> 512 on 2 cores.

A JPEG 2000 image decoded at a reduced resolution (j2k_reduce.py: r wavelet levels discarded) comes
with `source_shape`, the full Rows x Columns, and `discarded_levels` r: the geometry is the full
image's, so boxes still map to full-resolution source pixels, and the resampling reads the source
extent exactly. The reduced image's sample k is the low-pass centred on source pixel 2**r * k, so
source edge x is reduced coordinate (x - 0.5) / 2**r + 0.5; the region [0, cols] x [0, rows] of the
source is resampled from that box (the image is given one replicated row and column so that the box,
which can end up to half a reduced pixel past the last sample, stays inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from libs.dicom.geometry import ResizeGeometry

_REDUCING_GAP = 3.0


@dataclass(frozen=True, eq=False)
class PreprocessedImage:
    array: np.ndarray = field(repr=False)  # float32 [size, size]
    geometry: ResizeGeometry


def preprocess(
    img: np.ndarray, size: int = 512, *, source_shape: tuple[int, int] | None = None, discarded_levels: int = 0
) -> PreprocessedImage:
    """Fits a 2-D image (decode_pixels output, values in [0, 1]) into size x size.

    The padding is 0, i.e. black like air, since 1 is bright. Resampled values are clipped to
    the input's own range: Lanczos overshoots a little at sharp edges (collimator borders).
    `source_shape` and `discarded_levels`: for an image decoded at a reduced resolution (module doc).
    """
    if img.ndim != 2 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected a non-empty 2-D image, got shape {img.shape}")
    src = np.ascontiguousarray(img, dtype=np.float32)  # no copy when it already is (decode_pixels)
    rows, cols = source_shape if source_shape is not None else src.shape
    if discarded_levels < 0 or (discarded_levels == 0 and (rows, cols) != src.shape):
        raise ValueError(f"a {src.shape} image is not source {rows}x{cols} with {discarded_levels} level(s) discarded")
    geometry = ResizeGeometry.fit(rows, cols, size)
    h, w = geometry.resized_rows, geometry.resized_cols

    out = np.zeros((size, size), dtype=np.float32)
    region = out[geometry.pad_top : geometry.pad_top + h, geometry.pad_left : geometry.pad_left + w]
    if discarded_levels:
        f = float(1 << discarded_levels)
        box = (0.5 - 0.5 / f, 0.5 - 0.5 / f, (cols - 0.5) / f + 0.5, (rows - 0.5) / f + 0.5)
        if box[2] > src.shape[1] + 1 or box[3] > src.shape[0] + 1:
            raise ValueError(f"a {src.shape} image is not source {rows}x{cols} with {discarded_levels} level(s) discarded")
        padded = np.pad(src, ((0, 1), (0, 1)), mode="edge")
        resampled = Image.fromarray(padded).resize((w, h), Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)
        region[...] = np.asarray(resampled)
        np.clip(region, src.min(), src.max(), out=region)
    elif (h, w) == src.shape:
        region[...] = src
    else:
        downscaling = max(h, w) < max(src.shape)
        resampled = Image.fromarray(src).resize(
            (w, h), Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP if downscaling else None
        )
        region[...] = np.asarray(resampled)
        np.clip(region, src.min(), src.max(), out=region)
    return PreprocessedImage(array=out, geometry=geometry)
