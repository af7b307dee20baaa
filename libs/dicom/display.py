"""Stored values -> a display image: float32, 2-D, [0, 1], 1 = bright (bone white).

The order is the DICOM grayscale pipeline (PS3.3 C.11): Modality LUT or rescale, then the VOI
transform (VOI LUT, else the first window, else a window we estimate), then MONOCHROME1
inversion. Everything is done in float32, in place after one copy: for a 2k x 2k uncompressed CR
the whole of decode_pixels takes ~7-20 ms on the 2-core dev machine (bench/bench_preprocess.py).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut

from libs.core.errors import InputRejected
from libs.dicom import _attrs
from libs.dicom.pixels import stored_values

log = logging.getLogger(__name__)

# Robust window when the header has none: ignore the darkest and brightest 0.5 % (collimator
# edges, markers, dead pixels) so that they do not squeeze the anatomy into a few grey levels.
_PERCENTILES = (0.5, 99.5)
# A header window that leaves more than this share of the image at pure black or white is taken
# to be wrong (windows written for another representation of the data happen) and replaced by
# the estimated one.
_MAX_SATURATED = 0.95
# Percentiles and the saturation test look at a regular subsample of about this many pixels.
_SAMPLE_PIXELS = 1 << 18
# Largest finite float32: the display pipeline computes in float32.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class _Window(NamedTuple):
    center: float
    width: float
    function: str  # LINEAR, LINEAR_EXACT or SIGMOID


def decode_pixels(ds: Dataset) -> np.ndarray:
    """Decodes and maps the single frame of `ds` to display values; InputRejected if it cannot."""
    return to_display(stored_values(ds), ds)


def to_display(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values of `ds`'s frame (full size, or a reduced-resolution decode of it) -> display values.

    Every step is per pixel except the estimated window, whose percentiles a reduced image gives
    nearly the same (it is the wavelet's low-pass of the full one)."""
    low, high = stored.min(), stored.max()
    if low == high:
        raise InputRejected("image is blank: every pixel has the same value")
    values = _modality(stored, ds, float(low), float(high))
    out = _voi(values, ds)
    if _attrs.text(ds, "PhotometricInterpretation").upper() == "MONOCHROME1":
        # MONOCHROME1: the lowest value is displayed white. (DX files also say
        # PresentationLUTShape INVERSE in that case; it is the same inversion, not a second one.)
        np.subtract(1.0, out, out=out)
    return out


def _modality(stored: np.ndarray, ds: Dataset, low: float, high: float) -> np.ndarray:
    """Modality LUT if there is one, else RescaleSlope/Intercept; always a fresh float32 array.

    `low`/`high` are the stored values' extremes: the rescale must keep them finite in float32
    (an intercept of NaN or 1e400, or a slope of 1e308, made NaN images; found by fuzzing).
    """
    if _attrs.value(ds, "ModalityLUTSequence") is not None:
        try:
            return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
        except Exception as exc:
            raise InputRejected(f"Modality LUT cannot be applied ({type(exc).__name__})") from None
    out = stored.astype(np.float32)  # the one copy of the full-size image this module makes
    slope = _attrs.first_number(ds, "RescaleSlope")
    intercept = _attrs.first_number(ds, "RescaleIntercept")
    if slope is not None and (slope == 0.0 or not np.isfinite(slope)):
        raise InputRejected(f"invalid RescaleSlope {slope}")
    if intercept is not None and not np.isfinite(intercept):
        raise InputRejected(f"invalid RescaleIntercept {intercept}")
    s, b = (1.0 if slope is None else slope), (intercept or 0.0)
    if max(abs(low * s + b), abs(high * s + b)) > _FLOAT32_MAX:
        raise InputRejected("RescaleSlope and RescaleIntercept take the pixel values out of range")
    if slope is not None and slope != 1.0:
        out *= np.float32(slope)
    if intercept:
        out += np.float32(intercept)
    return out


def _voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """VOI LUT, else the first header window, else an estimated one; result in [0, 1], in place."""
    lut = _first_voi_lut(ds)
    if lut is not None:
        return _apply_lut(values, *lut)
    window = _first_window(ds)
    if window is not None:
        # Judge the window on a copy of a subsample first: applying it to the full image is
        # done in place, and undoing that would mean decoding again.
        if _saturated_share(_apply_window(_subsample(values).copy(), window)) <= _MAX_SATURATED:
            return _apply_window(values, window)
        log.warning("header window leaves most of the image saturated; using an estimated window")
    return _apply_estimated_window(values)


# ------------------------------------------------------------------------------------------ VOI LUT

def _first_voi_lut(ds: Dataset) -> tuple[int, np.ndarray] | None:
    """(first mapped value, table as float32) of the first VOI LUT item, None when there is none."""
    seq = _attrs.value(ds, "VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    try:
        descriptor = [int(v) for v in item.LUTDescriptor]
        entries = descriptor[0] or 65536  # 0 means 2**16 entries
        first = descriptor[1]
        data_elem = item["LUTData"]
    except Exception as exc:
        raise InputRejected(f"VOI LUT is malformed ({type(exc).__name__})") from None
    if first >= 32768 and _attrs.integer(ds, "PixelRepresentation") == 1:
        first -= 65536  # the descriptor's US/SS ambiguity: signed data has a signed first value
    raw = data_elem.value
    if isinstance(raw, (bytes, bytearray)):
        little = ds.original_encoding[1] if ds.original_encoding[1] is not None else True
        table = np.frombuffer(raw, dtype="<u2" if little else ">u2")
    else:  # US: a MultiValue of ints, or a bare int for a one-entry table
        table = np.asarray(list(raw) if isinstance(raw, (list, tuple, MultiValue)) else [raw])
    table = table[:entries].astype(np.float32)
    if table.size < 2 or table.max() == table.min():
        log.warning("VOI LUT is empty or flat; ignoring it")
        return None
    # Normalise by the table's own range, not by the descriptor's bit depth: that third value is
    # often wrong in the wild (16 written for 12-bit tables), which would give a near-black image.
    table -= table.min()
    table /= table.max()
    return first, table


def _apply_lut(values: np.ndarray, first: int, table: np.ndarray) -> np.ndarray:
    # Inputs below the first mapped value take entry 0, above the last take the last entry.
    index = np.rint(values, out=values)
    index -= np.float32(first)
    np.clip(index, 0, table.size - 1, out=index)
    return table[index.astype(np.int32)]


# ------------------------------------------------------------------------------------------ windows

def _first_window(ds: Dataset) -> _Window | None:
    center = _attrs.first_number(ds, "WindowCenter")
    width = _attrs.first_number(ds, "WindowWidth")
    if center is None or width is None:
        return None
    function = (_attrs.text(ds, "VOILUTFunction").split("\\")[0] or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    # LINEAR needs width >= 1 (PS3.3 C.11.2.1.2.1); a width of 1 is a threshold, useless here.
    if not np.isfinite(center) or not np.isfinite(width) or width <= (1.0 if function == "LINEAR" else 0.0):
        log.warning("header window has an invalid width; using an estimated window")
        return None
    window = _Window(center, width, function)
    if not _computable(window):
        log.warning("header window is out of the range the display pipeline computes in; using an estimated window")
        return None
    return window


def _computable(window: _Window) -> bool:
    """Whether float32 arithmetic can apply the window: a center of 1e308 made low == high (found by fuzzing)."""
    if window.function == "SIGMOID":
        return abs(window.center) <= _FLOAT32_MAX and _float32_factor(-4.0 / window.width)
    low, high = _bounds(window)
    return max(abs(low), abs(high)) <= _FLOAT32_MAX and high > low and _float32_factor(1.0 / (high - low))


def _float32_factor(factor: float) -> bool:
    """Whether multiplying by `factor` in float32 is meaningful: neither inf (0 * inf is NaN) nor 0."""
    with np.errstate(over="ignore", under="ignore"):
        f = np.float32(factor)
    return bool(np.isfinite(f)) and f != 0


def _bounds(window: _Window) -> tuple[float, float]:
    c, w = window.center, window.width
    if window.function == "LINEAR_EXACT":
        return c - w / 2.0, c + w / 2.0
    # LINEAR as the standard writes it, with its half-pixel offsets
    return c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0


def _apply_window(values: np.ndarray, window: _Window) -> np.ndarray:
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        # y = 1 / (1 + exp(-4 (x - c) / w))
        values -= np.float32(c)
        values *= np.float32(-4.0 / w)
        np.exp(values, out=values)
        values += np.float32(1.0)
        np.reciprocal(values, out=values)
        return values
    return _linear(values, *_bounds(window))


def _apply_estimated_window(values: np.ndarray) -> np.ndarray:
    sample = _subsample(values)
    low, high = (float(v) for v in np.percentile(sample, _PERCENTILES))
    if high <= low:  # a mostly uniform image with a few outliers: use the full range
        low, high = float(values.min()), float(values.max())
    if high <= low or not _float32_factor(1.0 / (high - low)):
        # Distinct stored values made (nearly) equal by the Modality LUT or a tiny RescaleSlope.
        raise InputRejected("image is blank after the Modality LUT or rescale: its values do not differ")
    return _linear(values, low, high)


def _linear(values: np.ndarray, low: float, high: float) -> np.ndarray:
    values -= np.float32(low)
    values *= np.float32(1.0 / (high - low))
    np.clip(values, 0.0, 1.0, out=values)
    return values


def _subsample(values: np.ndarray) -> np.ndarray:
    step = max(1, int(np.sqrt(values.size / _SAMPLE_PIXELS)))
    return values[::step, ::step]


def _saturated_share(out: np.ndarray) -> float:
    # Within 1/1000 of either end: a sigmoid window never reaches 0 or 1 exactly.
    sample = _subsample(out)
    return float(np.count_nonzero((sample <= 1e-3) | (sample >= 1.0 - 1e-3))) / sample.size
