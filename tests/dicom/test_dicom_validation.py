"""What is refused, and that the reason says why (without patient details)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from dicom_helpers import make_dataset, phantom, to_bytes
from libs.core.errors import InputRejected
from libs.dicom import decode_pixels, load_for_model, read_dataset, validate_dataset


def _rejected(fn, *args, **kwargs) -> str:
    with pytest.raises(InputRejected) as info:
        fn(*args, **kwargs)
    return info.value.reason


# ------------------------------------------------------------------------- not DICOM / unreadable

@pytest.mark.parametrize(
    "payload",
    [b"", b"hello, this is not an image", b"\x89PNG\r\n\x1a\n" + bytes(300), bytes(128) + b"DICM" + b"\xff" * 7],
    ids=["empty", "text", "png", "dicm-then-garbage"],
)
def test_non_dicom_bytes_are_rejected(payload):
    assert _rejected(read_dataset, payload).startswith("not a DICOM file:")


def test_missing_file_is_rejected_without_its_path(tmp_path):
    reason = _rejected(read_dataset, tmp_path / "Doe_John_1970.dcm")
    assert reason.startswith("not a DICOM file:") and "Doe" not in reason


def test_dataset_without_preamble_is_still_read():
    # A bare dataset (no preamble, no file meta), as some older systems store them.
    ds = make_dataset()
    ds.file_meta = FileMetaDataset()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert b"DICM" not in buf.getvalue()[:200]
    parsed = read_dataset(buf.getvalue())
    validate_dataset(parsed, decode=True)
    assert parsed.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"


# ------------------------------------------------------------------------------------ pixel data

def test_no_pixel_data():
    ds = make_dataset()
    del ds.PixelData
    assert _rejected(validate_dataset, read_dataset(to_bytes(ds))) == "has no pixel data"


def test_uncompressed_file_cut_short_is_truncated():
    raw = to_bytes(make_dataset(phantom(120, 100)))
    ds = read_dataset(raw[:-1000])
    expected, found = 120 * 100 * 2, 120 * 100 * 2 - 1000
    reason = f"pixel data is truncated: expected {expected} bytes, found {found}"
    # Caught by the header checks already (no decode needed) and by decode_pixels on its own.
    assert _rejected(validate_dataset, ds) == reason
    assert _rejected(decode_pixels, ds) == reason


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless], ids=["j2k", "jpeg-ls", "rle"])
def test_compressed_file_cut_short_is_truncated(syntax):
    ds = make_dataset(phantom(120, 100))
    ds.compress(syntax)
    raw = to_bytes(ds)
    reason = _rejected(read_dataset, raw[: len(raw) - 2000])
    assert reason.startswith("pixel data is truncated: the file ends inside the compressed pixel data")


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless], ids=["j2k", "jpeg-ls"])
def test_compressed_frame_cut_short_is_truncated(syntax):
    # The file structure is intact but the code stream inside it is cut: only decoding can tell.
    ds = make_dataset(phantom(120, 100))
    ds.compress(syntax)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    parsed = read_dataset(to_bytes(ds))
    validate_dataset(parsed)  # the header alone is fine
    reason = _rejected(validate_dataset, parsed, decode=True)
    assert reason.startswith("pixel data is truncated: the compressed frame") and "end-of-image marker" in reason


def test_corrupt_compressed_frame_gives_the_decoders_reason():
    ds = make_dataset(phantom(120, 100))
    ds.compress(RLELossless)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    frame[64:] = bytes(len(frame) - 64)  # keep the RLE header, zero the segments
    ds.PixelData = encapsulate([bytes(frame[: len(frame) // 3])])
    reason = _rejected(decode_pixels, read_dataset(to_bytes(ds)))
    assert reason.startswith("pixel data cannot be decoded: ")
    assert "\n" not in reason and len(reason) < 220


# --------------------------------------------------------------------------- what the image is

@pytest.mark.parametrize("modality", ["MR", "CT", "OT", "US", "SR", "MG"])
def test_non_radiograph_modalities_are_rejected_by_name(modality):
    reason = _rejected(validate_dataset, make_dataset(Modality=modality))
    assert reason == f"modality '{modality}' is not a projection radiograph (expected CR or DX)"


@pytest.mark.parametrize("modality", ["CR", "DX", "DR", "RG", "dx"])
def test_projection_radiograph_modalities_are_accepted(modality):
    validate_dataset(make_dataset(Modality=modality), decode=True)


def test_missing_modality_is_rejected():
    assert "Modality is missing" in _rejected(validate_dataset, make_dataset(Modality=None))


@pytest.mark.parametrize("part", ["HAND", "EXTREMITY", "SKULL", "ABDOMEN", "TSPINE", "THORACIC SPINE", "BRUSTWIRBELSAEULE"])
def test_other_body_parts_are_rejected_by_name(part):
    assert _rejected(validate_dataset, make_dataset(BodyPartExamined=part)) == f"body part '{part}' is not the chest"


@pytest.mark.parametrize(
    "part", ["CHEST", "chest", "THORAX", "Thorax p.a.", "LUNG", "TORAX", "Tórax", "BRUST", "CHEST_LAT", "CHESTPA", "PECHO"]
)
def test_chest_body_parts_are_accepted(part):
    validate_dataset(make_dataset(BodyPartExamined=part))


def test_absent_body_part_is_accepted():
    validate_dataset(make_dataset(BodyPartExamined=None))


@pytest.mark.parametrize(
    ("photometric", "samples"), [("RGB", 3), ("YBR_FULL", 3), ("PALETTE COLOR", 1), ("MONOCHROME2", 3)]
)
def test_colour_images_are_rejected(photometric, samples):
    reason = _rejected(validate_dataset, make_dataset(PhotometricInterpretation=photometric, SamplesPerPixel=samples))
    assert reason.startswith("not a single-channel grayscale image")


def test_rgb_pixels_are_rejected_by_decode_pixels_too():
    rgb = np.repeat(phantom(40, 30, bits_stored=8)[..., None], 3, axis=2)
    ds = make_dataset(phantom(40, 30, bits_stored=8), PhotometricInterpretation="RGB", SamplesPerPixel=3, PlanarConfiguration=0)
    ds.PixelData = rgb.tobytes()
    assert _rejected(decode_pixels, ds).startswith("not a single-channel grayscale image (PhotometricInterpretation 'RGB'")


def test_multiframe_is_rejected():
    frames = np.stack([phantom(), phantom(seed=1)])
    ds = make_dataset(phantom(), NumberOfFrames=2)
    ds.PixelData = frames.tobytes()
    assert _rejected(validate_dataset, ds) == "multi-frame image (2 frames): a single-frame radiograph is required"


def test_single_frame_declared_explicitly_is_fine():
    validate_dataset(make_dataset(NumberOfFrames=1), decode=True)


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_missing_uids_are_rejected(keyword):
    assert _rejected(validate_dataset, make_dataset(**{keyword: None})) == f"{keyword} is missing"


def test_unsupported_transfer_syntax_is_rejected():
    ds = make_dataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    assert "is not supported" in _rejected(validate_dataset, ds)


def test_reasons_never_carry_patient_details(tmp_path):
    ds = make_dataset(Modality="MR", PatientName="Doe^Jane", PatientID="123456", PatientBirthDate="19700101")
    path = tmp_path / "study.dcm"
    path.write_bytes(to_bytes(ds))
    reason = _rejected(load_for_model, path)
    assert not any(s in reason for s in ("Doe", "Jane", "123456", "1970"))
