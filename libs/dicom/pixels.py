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
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from libs.core.errors import InputRejected
from libs.dicom import _attrs
from libs.dicom.codestream import check_frame_header
from libs.dicom.validate import check_pixel_module, decoding_plugins, transfer_syntax

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


def stored_values(ds: Dataset) -> np.ndarray:
    """The first (and only accepted) frame's stored values, 2-D, in the integer type pydicom gives.

    Raises InputRejected for truncated or undecodable pixel data.
    """
    check_pixel_module(ds)  # includes the length check of uncompressed pixel data
    ts = transfer_syntax(ds)
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
    arr = _decode_first_frame(ds, ts)
    if arr.ndim != 2:
        raise InputRejected(f"pixel data decoded to an unexpected shape {tuple(arr.shape)}")
    return arr


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


def _check_end_marker(ds: Dataset) -> bytes:
    """The first frame's bytes, once it is known to end with an end-of-image marker (or to be a JP2 file)."""
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as exc:
        raise InputRejected(f"pixel data cannot be decoded: no readable compressed frame ({type(exc).__name__})") from None
    if not frame:
        raise InputRejected("pixel data is truncated: the compressed frame is empty")
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
