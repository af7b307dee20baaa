"""Every transfer syntax we promise decodes: generated images, encoded with the installed encoders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicom_helpers import make_dataset, phantom, to_bytes
from libs.dicom import decode_pixels, read_dataset, validate_dataset


def _roundtrip(ds) -> np.ndarray:
    """Through bytes and back, as an upload would arrive, then validated (with decode) and decoded."""
    parsed = read_dataset(to_bytes(ds))
    validate_dataset(parsed, decode=True)
    return decode_pixels(parsed)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return _roundtrip(make_dataset(phantom()))


def test_explicit_vr_little_endian(reference):
    ds = read_dataset(to_bytes(make_dataset(phantom())))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(decode_pixels(ds), reference)


def test_implicit_vr_little_endian(reference):
    raw = to_bytes(make_dataset(phantom()), implicit=True)
    ds = read_dataset(raw)
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    np.testing.assert_array_equal(decode_pixels(ds), reference)


@pytest.mark.parametrize(
    ("syntax", "options"),
    [
        (RLELossless, {}),
        (JPEGLSLossless, {}),  # pyjpegls encoder
        (JPEG2000Lossless, {}),  # pylibjpeg-openjpeg encoder
    ],
    ids=["rle", "jpeg-ls", "jpeg2000-lossless"],
)
def test_lossless_encodings_give_identical_pixels(reference, syntax, options):
    ds = make_dataset(phantom())
    ds.compress(syntax, **options)
    assert ds.file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(_roundtrip(ds), reference)


@pytest.mark.parametrize(
    ("syntax", "options"),
    [(JPEGLSNearLossless, {"jls_error": 3}), (JPEG2000, {"j2k_cr": [8]})],
    ids=["jpeg-ls-near-lossless", "jpeg2000-lossy"],
)
def test_lossy_encodings_are_close(reference, syntax, options):
    ds = make_dataset(phantom())
    ds.compress(syntax, **options)
    assert ds.file_meta.TransferSyntaxUID == syntax
    diff = np.abs(_roundtrip(ds) - reference)
    assert float(diff.mean()) < 0.01 and float(diff.max()) < 0.1


def test_jpeg_lossless_from_gdcm(tmp_path: Path, reference):
    gdcm = pytest.importorskip("gdcm")  # pydicom has no JPEG lossless encoder; gdcm does
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(to_bytes(make_dataset(phantom())))
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()

    ds = read_dataset(dst)
    assert ds.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    validate_dataset(ds, decode=True)
    np.testing.assert_array_equal(decode_pixels(ds), reference)


def test_jpeg_baseline_8bit_from_pillow():
    # pydicom has no JPEG baseline encoder: Pillow writes the JPEG, pydicom encapsulates it.
    pixels = phantom(bits_stored=8)
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=95)
    ds = make_dataset(pixels)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"

    decoded = _roundtrip(ds)
    expected = _roundtrip(make_dataset(pixels))
    assert decoded.shape == pixels.shape
    assert float(np.abs(decoded - expected).mean()) < 0.01
