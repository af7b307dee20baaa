"""Header checks that decide whether an instance is a chest radiograph this platform can read.

Every failure is an InputRejected with a one-line reason that names the offending coded value
(Modality, BodyPartExamined...) but never a patient attribute or a free-text description.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from libs.core.errors import InputRejected
from libs.dicom import _attrs
from libs.dicom.rules import (
    ACCEPTED_BITS_ALLOCATED,
    ACCEPTED_MODALITIES,
    DECODING_PLUGINS,
    GRAYSCALE,
    is_chest_body_part,
)

_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def validate_dataset(ds: Dataset, *, decode: bool = False) -> None:
    """Raises InputRejected unless `ds` is a single-frame grayscale chest CR/DX we can decode.

    decode=True also decodes the pixel data, which is the only way to find truncated or
    corrupt compressed data; it costs the decode time (see bench/bench_preprocess.py).
    """
    check_identity(ds)
    check_modality(ds)
    check_body_part(ds)
    check_pixel_module(ds)
    if decode:
        from libs.dicom.pixels import stored_values  # pixels imports this module

        stored_values(ds)


def check_identity(ds: Dataset) -> None:
    for keyword in _REQUIRED_UIDS:
        if not _attrs.text(ds, keyword):
            raise InputRejected(f"{keyword} is missing")


def check_modality(ds: Dataset) -> None:
    modality = _attrs.text(ds, "Modality").upper()
    if not modality:
        raise InputRejected("Modality is missing: cannot tell that this is a radiograph")
    if modality not in ACCEPTED_MODALITIES:
        raise InputRejected(
            f"modality {_attrs.shown(modality)} is not a projection radiograph (expected CR or DX)"
        )


def check_body_part(ds: Dataset) -> None:
    # Absent or empty is accepted: many chest radiographs are sent without it.
    body_part = _attrs.text(ds, "BodyPartExamined")
    if body_part and not is_chest_body_part(body_part):
        raise InputRejected(f"body part {_attrs.shown(body_part)} is not the chest")


def check_pixel_module(ds: Dataset) -> None:
    """The checks decode_pixels needs as well, so that it is safe to call without validate_dataset."""
    # _attrs.value: a Pixel Data element with a broken VR only fails when first read (found by fuzzing).
    if "PixelData" not in ds or _attrs.value(ds, "PixelData") is None:
        raise InputRejected("has no pixel data")

    samples = _attrs.integer(ds, "SamplesPerPixel") or 1
    photometric = _attrs.text(ds, "PhotometricInterpretation").upper()
    if not photometric:
        raise InputRejected("PhotometricInterpretation is missing")
    if photometric not in GRAYSCALE or samples != 1:
        raise InputRejected(
            f"not a single-channel grayscale image (PhotometricInterpretation {_attrs.shown(photometric)}, "
            f"{samples} sample(s) per pixel)"
        )

    # Multi-frame is rejected rather than reduced to its first frame: the frames of a
    # multi-frame projection image are typically dual-energy pairs (standard / bone-subtracted /
    # soft-tissue) or tomosynthesis projections, and which one is "the" radiograph is not
    # recorded in a way we can trust. Silently reading frame 1 could hand the model a
    # bone-subtracted image and produce a confident, wrong draft; a rejection is visible.
    frames = _attrs.integer(ds, "NumberOfFrames")
    if frames is not None and frames > 1:
        raise InputRejected(f"multi-frame image ({frames} frames): a single-frame radiograph is required")

    rows, cols = _attrs.integer(ds, "Rows"), _attrs.integer(ds, "Columns")
    if not rows or not cols or rows < 0 or cols < 0:
        raise InputRejected("image size (Rows/Columns) is missing or zero")
    # Before any decoder runs: they allocate the frame from Rows x Columns, so a small
    # compressed upload claiming 65535 x 65535 would otherwise take gigabytes (found by fuzzing).
    limit = max_image_pixels()
    if rows * cols > limit:
        raise InputRejected(f"image is too large: {rows}x{cols} pixels, more than the {limit} accepted")

    bits = _attrs.integer(ds, "BitsAllocated")
    if bits not in ACCEPTED_BITS_ALLOCATED:
        raise InputRejected(f"unsupported BitsAllocated {bits} (expected 8, 16 or 32)")
    stored = _attrs.integer(ds, "BitsStored")
    if stored is None or not 1 <= stored <= bits:
        raise InputRejected(f"invalid BitsStored {stored} for BitsAllocated {bits}")
    if _attrs.integer(ds, "PixelRepresentation") not in (0, 1):
        raise InputRejected("PixelRepresentation is missing or invalid")

    ts = check_transfer_syntax(ds)
    if not ts.is_encapsulated:
        # Uncompressed data can be measured without decoding; a short value means a cut-off file
        # (pydicom keeps whatever bytes were there).
        expected = (rows * cols * bits + 7) // 8
        found = len(ds.PixelData)
        if found < expected:
            raise InputRejected(f"pixel data is truncated: expected {expected} bytes, found {found}")


def max_image_pixels() -> int:
    """Rows x Columns accepted for one image: the max_image_pixels setting (CXR_MAX_IMAGE_PIXELS)."""
    from libs.core.config import get_settings  # here, so that reading a file needs no configuration import

    return get_settings().max_image_pixels


def transfer_syntax(ds: Dataset) -> UID:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not ts:
        raise InputRejected("transfer syntax is missing from the file meta information")
    return UID(str(ts))


def check_transfer_syntax(ds: Dataset) -> UID:
    ts = transfer_syntax(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        # An unknown UID is the sender's bytes: shown() keeps control characters out of the reason.
        name = ts.name if ts.name != str(ts) else _attrs.shown(str(ts), 64)
        raise InputRejected(f"transfer syntax {name} is not supported") from None
    if not decoder.is_available or (decoder.is_encapsulated and not decoding_plugins(decoder)):
        # A deployment problem, but the instance cannot be used here either way.
        raise InputRejected(f"no decoder installed for transfer syntax {ts.name}")
    return ts


def decoding_plugins(decoder) -> list[str]:  # noqa: ANN001 - a pydicom Decoder
    """The installed plugins of an encapsulated syntax's decoder that may decode received data, in order."""
    installed = decoder.available_plugins
    return [name for name in DECODING_PLUGINS if name in installed]
