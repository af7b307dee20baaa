"""Bounding boxes from class-activation heatmaps.

Heatmaps are coarse (e.g. 16x16 for a 512 input) and on an arbitrary scale, so each map is
min-max normalised, thresholded (BOX_THRESHOLD of its range by default), and the largest 8-connected
region is chosen at heatmap resolution (cheap, no image-size flood fill). Its extent is then refined
on the bilinearly upsampled map so the box edges fall between heatmap cells rather than on the coarse
cell grid.

A box is only worth drawing when the activation is focal. Min-max normalisation stretches any map to
the full range, so a diffuse map (activation spread over most of the lungs) still yields a region,
just one covering most of the image: on the reference model the median box covered 66 % of the input
and one in six was the whole image. Such a box claims a location (and, through libs.qa.laterality,
a side) the model never had, so `max_area_fraction` (the manifest's `boxes` policy) drops it.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np

# Fraction of a map's (min-max normalised) range a cell must reach to belong to the finding.
BOX_THRESHOLD = 0.5
# Largest share of the model input a box may cover and still count as focal (manifest `boxes`).
MAX_AREA_FRACTION = 0.25
# A box covering at least this share of the input is reported as "whole image" in box_statistics.
WHOLE_IMAGE_FRACTION = 0.95
# Below this range a map carries no localisation (flat map), so no box is drawn.
_MIN_RANGE = 1e-6


def _largest_component(mask: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest 8-connected region of `mask` (ties: higher summed weight)."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    best, best_key, current = 0, (-1, -np.inf), 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        current += 1
        labels[y0, x0] = current
        queue, size, total = deque([(y0, x0)]), 0, 0.0
        while queue:
            y, x = queue.popleft()
            size += 1
            total += float(weight[y, x])
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = current
                        queue.append((ny, nx))
        if (size, total) > best_key:
            best, best_key = current, (size, total)
    return labels == best


@lru_cache(maxsize=16)
def _bilinear_matrix(src: int, dst: int) -> np.ndarray:
    """[dst, src] weights resampling a 1-D signal with pixel centres aligned (align_corners=False)."""
    pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    frac = pos - lo
    m = np.zeros((dst, src), dtype=np.float64)
    m[np.arange(dst), lo] += 1.0 - frac
    m[np.arange(dst), hi] += frac
    m.flags.writeable = False  # cached and shared
    return m


@lru_cache(maxsize=16)
def _nearest_index(src: int, dst: int) -> np.ndarray:
    """For each of dst pixels, the index of the src cell it lies in."""
    idx = np.minimum(((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)
    idx.flags.writeable = False  # cached and shared
    return idx


def _dilate8(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def heatmap_box(
    heatmap: np.ndarray, size: int, threshold: float = BOX_THRESHOLD, max_area_fraction: float | None = None
) -> list[int] | None:
    """Box [x0, y0, x1, y1] of the main activated region of one label's heatmap [h, w], in pixel
    *edges* of the size x size model input (pixel i covers [i, i + 1), so 0 <= x0 < x1 <= size; the
    convention of libs.dicom.geometry), or None when the map is flat or not finite, or when the box
    covers more than `max_area_fraction` of the input (not focal; None = no limit).

    `threshold` is the fraction of the map's range a cell must reach to belong to the region."""
    m = np.asarray(heatmap, dtype=np.float64)
    if m.ndim != 2 or m.size == 0 or not np.all(np.isfinite(m)):
        return None
    lo, hi = float(m.min()), float(m.max())
    if hi - lo < _MIN_RANGE:
        return None
    norm = (m - lo) / (hi - lo)
    component = _largest_component(norm >= threshold, norm)

    h, w = norm.shape
    near_cells = _dilate8(component)
    ny, nx = _nearest_index(h, size), _nearest_index(w, size)
    # Only the pixels whose cell is in the dilated component can be in the box: upsample that
    # window alone instead of the whole size x size map.
    win_r = np.flatnonzero(near_cells.any(axis=1)[ny])
    win_c = np.flatnonzero(near_cells.any(axis=0)[nx])
    r_sl, c_sl = slice(win_r[0], win_r[-1] + 1), slice(win_c[0], win_c[-1] + 1)
    up = _bilinear_matrix(h, size)[r_sl] @ norm @ _bilinear_matrix(w, size)[c_sl].T
    # Allow the refined region to spill one cell past the component (the bilinear edge lies
    # between an above- and a below-threshold cell) but not into unrelated regions further away.
    region = (up >= threshold) & near_cells[np.ix_(ny[r_sl], nx[c_sl])]
    if not region.any():
        region = component[np.ix_(ny[r_sl], nx[c_sl])]
    rows = np.flatnonzero(region.any(axis=1)) + r_sl.start
    cols = np.flatnonzero(region.any(axis=0)) + c_sl.start
    box = [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]
    if max_area_fraction is not None and box_area_fraction(box, size) > max_area_fraction:
        return None
    return box


def box_area_fraction(box: list[int], size: int) -> float:
    """Share of the size x size model input that a box [x0, y0, x1, y1] (pixel edges) covers."""
    x0, y0, x1, y1 = box
    return max(0, x1 - x0) * max(0, y1 - y0) / float(size * size)


def box_statistics(fractions: list[float], limit: float = MAX_AREA_FRACTION) -> dict[str, float | int | None]:
    """Summary of box area fractions (box_area_fraction of the boxes drawn *without* a limit) for a
    model card: how focal the head's activations are, and how many boxes `limit` would drop.

    Keys: n, median, p10, p90, share_over_limit (> limit), share_whole_image (>= WHOLE_IMAGE_FRACTION),
    limit. The numbers are None when there are no boxes, so an empty run is not read as "all focal"."""
    values = np.asarray(fractions, dtype=np.float64)
    if values.size == 0:
        return {"n": 0, "median": None, "p10": None, "p90": None, "share_over_limit": None,
                "share_whole_image": None, "limit": limit}
    p10, median, p90 = (float(v) for v in np.percentile(values, [10, 50, 90]))
    return {
        "n": int(values.size),
        "median": median,
        "p10": p10,
        "p90": p90,
        "share_over_limit": float(np.mean(values > limit)),
        "share_whole_image": float(np.mean(values >= WHOLE_IMAGE_FRACTION)),
        "limit": limit,
    }
