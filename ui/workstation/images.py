"""The image a radiologist reads, rendered once per report as an 8-bit PNG for the browser.

Through the DICOM grayscale pipeline (libs/dicom/display.py: modality LUT, the header's VOI window
or LUT, MONOCHROME1 inverted), then scaled so its long side is at most `max_side` pixels: a
2k x 2k 16-bit CR becomes a ~0.5-1 MB PNG instead of an 8 MB file per view. The browser overlays
boxes in source-pixel coordinates (an SVG whose viewBox is the source size), so the scale never
reaches the findings. Rendered files are kept under <data_dir>/rendered (derived data: deleting
them only costs a re-render).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from libs.dicom.display import decode_pixels

DEFAULT_MAX_SIDE = 1536


def render_png(dicom_path: Path, max_side: int = DEFAULT_MAX_SIDE) -> tuple[bytes, tuple[int, int]]:
    """(PNG bytes, (source rows, source columns))."""
    ds = pydicom.dcmread(str(dicom_path))
    display = decode_pixels(ds)  # float32 [0, 1], 1 = white
    rows, cols = display.shape
    image = Image.fromarray(np.clip(display * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if max(rows, cols) > max_side:
        scale = max_side / max(rows, cols)
        image = image.resize((max(1, round(cols * scale)), max(1, round(rows * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue(), (rows, cols)


def cached_png(data_dir: Path, key: str, dicom_path: Path, max_side: int = DEFAULT_MAX_SIDE) -> bytes:
    """The rendered PNG of `dicom_path`, from <data_dir>/rendered when it was rendered before."""
    folder = data_dir / "rendered"
    target = folder / f"{key}-{max_side}.png"
    if target.is_file() and target.stat().st_mtime >= dicom_path.stat().st_mtime:
        return target.read_bytes()
    data, _ = render_png(dicom_path, max_side)
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)  # readers see the whole file or none
    return data
