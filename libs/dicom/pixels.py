"""Pixel Data -> the stored values of the (single) frame, as pydicom's decoders give them.

pydicom 3 has several decoding plugins per transfer syntax. They are tried one at a time, in
pydicom's order less gdcm (rules.DECODING_PLUGINS says why), and the first that succeeds wins.
With the packages this project installs the coverage is:

=============================================  ===================================================
transfer syntax                                plugins (in the order they are tried)
=============================================  ===================================================
Implicit / Explicit VR Little Endian,          pydicom itself (numpy); Deflated is inflated on
Explicit VR Big Endian, Deflated Explicit VR   read
JPEG Baseline (8-bit) / Extended (12-bit)      pylibjpeg-libjpeg, Pillow
JPEG Lossless (Process 14, and SV1)            pylibjpeg-libjpeg
JPEG-LS Lossless / Near-Lossless               pylibjpeg-libjpeg, pyjpegls (CharLS)
JPEG 2000 Lossless / JPEG 2000 (lossy)         pylibjpeg-openjpeg, Pillow
HTJ2K (all three)                              pylibjpeg-openjpeg
RLE Lossless                                   pylibjpeg-rle, pydicom itself
=============================================  ===================================================

Before any plugin runs, a compressed frame must end with its end-of-image marker and its own
image header must agree with the DICOM one (codestream.py): the native decoders trust the
former and can crash the process on a mismatch. For JPEG 2000 the codecs are within the noise of
each other on the 2-core dev machine (bench/bench_preprocess.py: 0.35-0.6 s for the lossless
1955x1841 CR, 0.1-0.2 s for the lossy one, whichever plugin); the codec, not this code, is the cost.
tests/dicom/test_dicom_transfer_syntaxes.py decodes each syntax.

`check_pixel_data` runs those checks (and, for RLE, the segment table's) without decoding: it is
what intake runs, so that a file is decoded once, at ingestion. `decode_frame(ds, min_side=...)`
decodes a JPEG 2000 frame at a reduced resolution when the model needs only a fraction of it
(j2k_reduce.py); every other syntax, and any JPEG 2000 stream the reduced path declines or fails
on, is decoded in full as above.
"""

from __future__ import annotations

import logging

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from libs.core.errors import InputRejected
from libs.dicom import _attrs, j2k_reduce
from libs.dicom.codestream import check_frame_header, j2k_layout
from libs.dicom.validate import check_pixel_module, decoding_plugins, transfer_syntax

log = logging.getLogger(__name__)

# JPEG, JPEG-LS and JPEG 2000 (HTJ2K included) code streams all end with the marker FF D9
# (EOI / EOC). pylibjpeg-libjpeg decodes a cut JPEG-LS stream without complaint and returns
# garbage for the missing part, so a truncated frame is caught here before any decoder runs.
_MARKER_ENDED = frozenset(JPEGTransferSyntaxes + JPEGLSTransferSyntaxes + JPEG2000TransferSyntaxes)
_END_MARKER = b"\xff\xd9"
# Some encoders leave a few bytes after the marker (besides the even-length padding byte).
_END_MARKER_SLACK = 16
# A JP2 file (not allowed by DICOM, written by some encoders anyway) may carry boxes after the
# code stream, so its end says nothing; those frames are left to the decoders.
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
# JPEG 2000 (Part 1) syntaxes that may be decoded at a reduced resolution (j2k_reduce.py); HTJ2K is not
# (Pillow's OpenJPEG would decode it, but nothing installed here encodes it to test with).
_REDUCIBLE = frozenset({JPEG2000Lossless, JPEG2000})
# RLE (PS3.5 G.5): a 64-byte header, the segment count then 15 offsets, the first segment at 64.
_RLE_HEADER = 64


def stored_values(ds: Dataset) -> np.ndarray:
    """The first (and only accepted) frame's stored values, 2-D, in the integer type pydicom gives.

    Raises InputRejected for truncated or undecodable pixel data.
    """
    return decode_frame(ds)[0]


def decode_frame(ds: Dataset, *, min_side: int | None = None) -> tuple[np.ndarray, int]:
    """(stored values, resolution levels discarded) of the first frame; InputRejected if it cannot be decoded.

    With `min_side` (the model input side), a JPEG 2000 frame is decoded at the lowest resolution
    whose shorter side is still >= 2 x min_side (j2k_reduce.choose_levels): the array is then
    ceil(Rows / 2**r) x ceil(Columns / 2**r). Otherwise, and for every other syntax, r is 0 and the
    array is full size.
    """
    frame = check_pixel_data(ds)
    ts = transfer_syntax(ds)
    if min_side and frame is not None and ts in _REDUCIBLE:
        reduced = _decode_reduced(ds, frame, min_side)
        if reduced is not None:
            return reduced
    arr = _decode_first_frame(ds, ts)
    if arr.ndim != 2:
        raise InputRejected(f"pixel data decoded to an unexpected shape {tuple(arr.shape)}")
    return arr, 0


def check_pixel_data(ds: Dataset) -> bytes | None:
    """InputRejected unless the pixel data looks complete, without decoding it; the first frame's bytes.

    What intake runs instead of a decode (the decode happens once, at ingestion): the pixel module
    (uncompressed data must be Rows x Columns x BitsAllocated long), and for compressed data a
    readable first fragment that ends with its end-of-image marker and whose own image header
    matches the DICOM one (JPEG, JPEG-LS, JPEG 2000), or a consistent segment table (RLE). A code
    stream corrupt inside its entropy-coded data passes this and is rejected when it is decoded.
    None for uncompressed data.
    """
    check_pixel_module(ds)  # includes the length check of uncompressed pixel data
    ts = transfer_syntax(ds)
    if not ts.is_encapsulated:
        return None
    if ts in _MARKER_ENDED:
        frame = _check_end_marker(ds)
        # The decoders trust the code stream's own header; a mismatch can crash them (codestream.py).
        check_frame_header(
            frame,
            ts,
            rows=_attrs.integer(ds, "Rows"),
            columns=_attrs.integer(ds, "Columns"),
            samples=_attrs.integer(ds, "SamplesPerPixel") or 1,
            bits_allocated=_attrs.integer(ds, "BitsAllocated"),
        )
        return frame
    frame = _first_frame(ds)
    if ts == RLELossless:
        _check_rle_header(frame, segments=(_attrs.integer(ds, "SamplesPerPixel") or 1) * _attrs.integer(ds, "BitsAllocated") // 8)
    return frame


def _decode_reduced(ds: Dataset, frame: bytes, min_side: int) -> tuple[np.ndarray, int] | None:
    """The reduced-resolution decode, or None when it does not apply or fails (the full decode then runs)."""
    layout = j2k_layout(frame)
    if not j2k_reduce.reducible(layout, pixel_representation=_attrs.integer(ds, "PixelRepresentation")):
        return None
    r = j2k_reduce.choose_levels(layout, min_side)
    if r == 0:
        return None
    try:
        return j2k_reduce.decode_reduced(frame, layout, r, bits_allocated=_attrs.integer(ds, "BitsAllocated")), r
    except Exception as exc:  # noqa: BLE001 - Pillow's OSError, a changed Pillow internal...: decode in full
        log.warning("reduced-resolution JPEG 2000 decode failed (%s); decoding at full resolution", _short_reason(exc))
        return None


def _decode_first_frame(ds: Dataset, ts) -> np.ndarray:  # noqa: ANN001 - a pydicom UID
    """pydicom's decode, one plugin at a time (rules.DECODING_PLUGINS: not gdcm), first success wins."""
    decoder = get_decoder(ts)
    # Native syntaxes have no plugins: "" is pydicom's own decoder.
    plugins = decoding_plugins(decoder) if decoder.is_encapsulated else [""]
    if not plugins:
        raise InputRejected(f"no decoder installed for transfer syntax {ts.name}")
    reasons = []
    for plugin in plugins:
        try:
            # as_rgb=False: we only accept MONOCHROME*, and no colour conversion should ever run.
            arr, _ = decoder.as_array(
                ds, index=0, as_rgb=False, allow_excess_frames=False, decoding_plugin=plugin
            )
            return arr
        except Exception as exc:  # this plugin failed, or the options did not validate
            reasons.append(_short_reason(exc))
        except BaseException as exc:
            # A Rust decoder's panic (pylibjpeg-rle: "index out of bounds" on a malformed segment)
            # arrives as pyo3's PanicException, which derives from BaseException, not Exception.
            if type(exc).__name__ != "PanicException":
                raise
            reasons.append(f"{plugin}: the decoder failed on malformed data ({_short_reason(exc)})")
    raise InputRejected(f"pixel data cannot be decoded: {reasons[0]}")


def _first_frame(ds: Dataset) -> bytes:
    """The first compressed frame's bytes (its fragments joined); InputRejected when there is none."""
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as exc:
        raise InputRejected(f"pixel data cannot be decoded: no readable compressed frame ({type(exc).__name__})") from None
    if not frame:
        raise InputRejected("pixel data is truncated: the compressed frame is empty")
    return frame


def _check_rle_header(frame: bytes, segments: int) -> None:
    """The RLE header must list one segment per byte of a sample, starting at 64, in order, inside the frame."""
    if len(frame) <= _RLE_HEADER:
        raise InputRejected(f"pixel data is truncated: the RLE frame ({len(frame)} bytes) has no data after its header")
    count = int.from_bytes(frame[:4], "little")
    if count != segments:
        raise InputRejected(
            f"pixel data cannot be decoded: the RLE frame has {count} segment(s), {segments} expected for the header"
        )
    offsets = [int.from_bytes(frame[4 + 4 * i : 8 + 4 * i], "little") for i in range(count)]
    if offsets[0] != _RLE_HEADER or any(b <= a for a, b in zip(offsets, offsets[1:])) or offsets[-1] >= len(frame):
        raise InputRejected("pixel data cannot be decoded: the RLE frame's segment offsets are out of order or past its end")


def _check_end_marker(ds: Dataset) -> bytes:
    """The first frame's bytes, once it is known to end with an end-of-image marker (or to be a JP2 file)."""
    frame = _first_frame(ds)
    if _END_MARKER not in frame[-_END_MARKER_SLACK:] and not frame.startswith(_JP2_SIGNATURE):
        raise InputRejected(
            f"pixel data is truncated: the compressed frame ({len(frame)} bytes) has no end-of-image marker"
        )
    return frame


def _short_reason(exc: Exception) -> str:
    """pydicom lists every plugin's failure over many lines; one informative line is enough.

    Lines look like "gdcm: <reason>". gdcm's own reason is often a useless Python error from its
    binding ("'NoneType' object has no attribute 'encode'"), so those are passed over.
    """
    lines = [ln.strip(" -") for ln in str(exc).splitlines() if ln.strip(" -")]
    per_plugin = [ln for ln in lines[1:] if ":" in ln]
    useful = [ln for ln in per_plugin if "object has no attribute" not in ln]
    detail = (useful or per_plugin or lines or [type(exc).__name__])[0]
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return detail
