"""JPEG 2000 decoded at a reduced resolution: only the wavelet levels the model input needs.

A JPEG 2000 code stream is a wavelet pyramid: discarding r of its decomposition levels gives
the image with each side divided by 2**r (rounded up), decoded from the low-resolution data
alone, which is most of the time saved (the inverse transform and the code blocks of the finer
levels are skipped). The low-resolution image is the wavelet's own low-pass (LL) band, an
anti-aliased downscale, which preprocess then fits to the model input with Lanczos as before.

`choose_levels` picks r: the most levels such that the decoded image's SHORTER side is still at
least OVERSAMPLE (2) times the model input side, never more than the code stream has (COD/COC
markers, codestream.j2k_layout), and 0 (the full decode) unless that is a real reduction. Why 2
and not 1: the last octave of the downscale is then Lanczos's, as on the full-resolution path. With
the reference bundle (224 pixels) and the 1955x1841 CR, r = 2 (489x461) changes no label's
probability by more than 0.006, where r = 3 (245x231, what "at least the model side" gives) changed
Pneumonia's by 0.011-0.014, over the 0.01 budget; r = 2 still takes the lossless decode from
~0.4-0.6 s to ~40 ms on the 2-core dev machine (bench/bench_preprocess.py has the figures).
Only single-component streams of at most 16 bits whose signedness matches PixelRepresentation are
reduced; anything else takes the full decode of pixels.py.

The decoder is Pillow's JPEG 2000 plugin (the OpenJPEG its wheels bundle; pylibjpeg-openjpeg 2.6
has no reduce option). Pillow's own `reduce` attribute rounds the reduced size to the nearest
integer where OpenJPEG rounds up, so for a side that is not a multiple of 2**r (1841 / 4) the
decoded tile does not fit and the load fails ("broken data stream"); `_pillow_decode` therefore
sets the decode tile itself, with OpenJPEG's size. That uses Pillow's tile list, which is not a
public API: any failure here makes pixels.py fall back to the full decode (with a warning), and
tests/dicom/test_dicom_reduced.py fails if the reduced path stops being taken for the real CR.
"""

from __future__ import annotations

import io

import numpy as np

from libs.dicom.codestream import J2KLayout

# Pillow converts N-bit samples to its 8- or 16-bit modes (src/libImaging/Jpeg2KDecode.c).
_MAX_PRECISION = 16
# The decoded image's shorter side stays at least this many times the model input side (module doc).
OVERSAMPLE = 2


def choose_levels(layout: J2KLayout | None, min_side: int | None) -> int:
    """Resolution levels to discard so that the shorter side stays >= OVERSAMPLE * min_side; 0 = in full."""
    if layout is None or not min_side or min_side < 1 or layout.levels < 1:
        return 0
    if min(layout.reduced_shape(0)) < 1:
        return 0
    needed = OVERSAMPLE * min_side
    r = 0
    while r < layout.levels and min(layout.reduced_shape(r + 1)) >= needed:
        r += 1
    return r


def reducible(layout: J2KLayout | None, *, pixel_representation: int) -> bool:
    """Whether this code stream's samples come out of Pillow as the stored values pydicom would give."""
    return (
        layout is not None
        and layout.components == 1
        and 1 <= layout.precision <= _MAX_PRECISION
        and layout.signed == (pixel_representation == 1)
    )


def decode_reduced(frame: bytes, layout: J2KLayout, r: int, *, bits_allocated: int) -> np.ndarray:
    """The stored values of `frame` with r levels discarded, 2-D, in pydicom's integer type for the data.

    Raises whatever Pillow raises on a stream it cannot decode; the caller falls back to the full decode.
    """
    rows, cols = layout.reduced_shape(r)
    raw = _pillow_decode(frame, r, rows, cols)
    if raw.shape != (rows, cols):
        raise ValueError(f"reduced decode gave {raw.shape}, expected {(rows, cols)}")
    # Pillow scales N-bit samples up to its 8/16-bit mode and offsets signed ones to unsigned
    # (Jpeg2KDecode.c, j2ku_gray_i): undo both, as pydicom's own Pillow plugin does.
    container = 8 if raw.dtype == np.uint8 else 16
    shift = container - layout.precision
    values = raw.astype(np.int32)
    if shift:
        values >>= shift
    dtype = np.dtype(f"{'i' if layout.signed else 'u'}{max(bits_allocated // 8, 1)}")
    if layout.signed:
        values -= 1 << (layout.precision - 1)
    return values.astype(dtype, copy=False)


def _pillow_decode(frame: bytes, r: int, rows: int, cols: int) -> np.ndarray:
    from PIL import Image, ImageFile

    with Image.open(io.BytesIO(frame), formats=("JPEG2000",)) as im:
        if r:
            # What Jpeg2KImageFile.load does for its `reduce` attribute, with OpenJPEG's rounding.
            if len(im.tile) != 1:
                raise ValueError("unexpected Pillow JPEG 2000 tile list")
            tile = im.tile[0]
            codec, _, layers, *rest = tile[3]
            parts = (tile[0], (0, 0, cols, rows), tile[2], (codec, r, layers, *rest))
            im._size = (cols, rows)  # noqa: SLF001 - the size the decoder will produce
            im.tile = [type(tile)(*parts) if hasattr(tile, "_replace") else parts]
            ImageFile.ImageFile.load(im)
        else:
            im.load()
        if im.mode not in ("L", "I;16"):
            raise ValueError(f"unexpected Pillow mode {im.mode} for a grayscale JPEG 2000 stream")
        return np.array(im)
