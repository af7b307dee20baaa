"""Display image -> square model input: aspect-preserving resize, then centred zero padding.

Resampling is Pillow's on a 32-bit float ('F') image, so no precision is lost to 8 bits.
Lanczos scales its kernel with the reduction factor, which is what removes aliasing when a
~2k image goes to 512 (a plain subsample would alias rib edges and wires into moire). For
reductions above 3x, Pillow first box-reduces by an integer factor (reducing_gap=3.0), which
its authors measure as indistinguishable from the full convolution and is faster.
Measured in bench/bench_preprocess.py: ~18-28 ms for 1955x1841 -> 512 on 2 cores.
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


def preprocess(img: np.ndarray, size: int = 512) -> PreprocessedImage:
    """Fits a 2-D image (decode_pixels output, values in [0, 1]) into size x size.

    The padding is 0, i.e. black like air, since 1 is bright. Resampled values are clipped to
    the input's own range: Lanczos overshoots a little at sharp edges (collimator borders).
    """
    if img.ndim != 2 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected a non-empty 2-D image, got shape {img.shape}")
    src = np.ascontiguousarray(img, dtype=np.float32)  # no copy when it already is (decode_pixels)
    geometry = ResizeGeometry.fit(src.shape[0], src.shape[1], size)
    h, w = geometry.resized_rows, geometry.resized_cols

    out = np.zeros((size, size), dtype=np.float32)
    region = out[geometry.pad_top : geometry.pad_top + h, geometry.pad_left : geometry.pad_left + w]
    if (h, w) == src.shape:
        region[...] = src
    else:
        downscaling = max(h, w) < max(src.shape)
        resampled = Image.fromarray(src).resize(
            (w, h), Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP if downscaling else None
        )
        region[...] = np.asarray(resampled)
        np.clip(region, src.min(), src.max(), out=region)
    return PreprocessedImage(array=out, geometry=geometry)
