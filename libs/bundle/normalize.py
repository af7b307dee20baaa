"""The bundle's input normalisation: preprocessed image in [0, 1] -> encoder input.

One function for serving (BundleRunner), export, evaluation and training (libs.model.images has the
torch twin, tested equal), so the model sees the same numbers everywhere.

`input.normalization.stretch` (optional) first maps each image's own percentiles [low, high] to [0, 1]
(clipped). That makes the model input the same whatever linear window the display step applied: a
converter's header window, the estimated percentile window of a file with none, or a PNG divided by
255 all give one tensor (up to the clipping the window itself did). Measured reason: bundle 1.2.1 was
trained on PNG / 255 and served through the estimated window; its validation sensitivity at the shipped
threshold fell from 0.948 to 0.882 on the deployed path (issue 13). Then `(x - mean) / std`.
"""

from __future__ import annotations

import numpy as np


def stretch_images(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per image of [N, ...]: (x - p_low) / (p_high - p_low) clipped to [0, 1], percentiles as numpy's
    default (linear). An image whose two percentiles coincide keeps its values (nothing to stretch)."""
    flat = x.reshape(len(x), -1).astype(np.float32, copy=False)
    lo, hi = np.percentile(flat, [low, high], axis=1).astype(np.float32)
    span = hi - lo
    flat_span = span <= 1e-6
    span = np.where(flat_span, np.float32(1.0), span)
    lo = np.where(flat_span, np.float32(0.0), lo)
    out = (flat - lo[:, None]) / span[:, None]
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape(x.shape)


def normalize_images(x: np.ndarray, norm) -> np.ndarray:
    """Images [N, S, S] or [N, 1, S, S], float in [0, 1] -> float32 encoder input, same shape.

    `norm`: the manifest's Normalization, or a dict with mean, std and optionally stretch {low, high}.
    """
    if not isinstance(norm, dict):
        norm = norm.model_dump(exclude_none=True)
    x = np.asarray(x, dtype=np.float32)
    stretch = norm.get("stretch")
    if stretch:
        x = stretch_images(x, float(stretch["low"]), float(stretch["high"]))
    return np.ascontiguousarray((x - np.float32(norm["mean"])) / np.float32(norm["std"]), dtype=np.float32)
