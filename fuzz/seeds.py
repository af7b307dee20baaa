"""The seed corpus: small, valid chest CR/DX files in every transfer syntax the intake decodes.

Generated at run time (`python -m fuzz.seeds fuzz/corpus`, which `make fuzz` runs) rather than
committed: they are a few kilobytes each but binary, and the encoders that make them are the
ones installed here. Every seed is accepted by the intake (tests/fuzz/test_fuzz_harness.py
checks that), so mutations start from the deepest point of the path: a file that gets through
the header checks and into the decoders and the display pipeline.

The images are small (48 x 40) on purpose: a decode then costs well under a millisecond, so
the fuzzer spends its time on the header and code-stream variations, not on pixel arithmetic.

Each seed carries a patient name and ID containing PHI_MARKER; the harness checks that no
rejection reason ever repeats it (a reason must be PHI-free).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
# Stands in for patient details: must never appear in a rejection reason.
PHI_MARKER = "Phimarker"

ROWS, COLS = 48, 40


def phantom(bits_stored: int = 12, signed: bool = False, seed: int = 0) -> np.ndarray:
    """A smooth test image with a little noise (compresses like a radiograph, is never blank)."""
    y, x = np.mgrid[0:ROWS, 0:COLS]
    top = (1 << bits_stored) - 1
    base = 0.5 + 0.25 * np.sin(x / 5.0) * np.cos(y / 7.0) + 0.15 * (y / ROWS)
    noise = np.random.default_rng(seed).normal(0.0, 0.01, (ROWS, COLS))
    values = np.clip((base + noise) * top, 0, top)
    if bits_stored <= 8:
        return values.astype(np.uint8)
    if signed:
        return (values - (top + 1) // 2).astype(np.int16)
    return values.astype(np.uint16 if bits_stored <= 16 else np.uint32)


def dataset(arr: np.ndarray, *, modality: str = "CR", syntax: str = ExplicitVRLittleEndian, **attrs) -> Dataset:
    """A valid single-frame chest image around `arr`; keyword arguments set more attributes."""
    sop_class = CR_STORAGE if modality == "CR" else DX_FOR_PRESENTATION
    n = dataset.counter = getattr(dataset, "counter", 0) + 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    # Fixed UIDs: the corpus is the same on every run (reproducible fuzzing).
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1234.3.{n}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1234.1.{n}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1234.2.{n}"
    ds.PatientName = f"{PHI_MARKER}^Fuzz"
    ds.PatientID = f"{PHI_MARKER}-0001"
    ds.PatientBirthDate = "19500101"
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = {8: 8, 16: 12, 32: 20}[bits]
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if np.issubdtype(arr.dtype, np.signedinteger) else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def bare(ds: Dataset) -> bytes:
    """The dataset without preamble or file meta, implicit VR little endian (older modalities send these)."""
    buf = io.BytesIO()
    del ds.file_meta
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def _compressed(arr: np.ndarray, syntax: str, **options) -> bytes:
    ds = dataset(arr)
    ds.compress(syntax, generate_instance_uid=False, **options)  # fixed UIDs: the same corpus every build
    return part10(ds)


def _jpeg_baseline() -> bytes:
    from PIL import Image

    pixels = phantom(bits_stored=8)
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=90)
    ds = dataset(pixels, syntax=JPEGBaseline8Bit, LossyImageCompression="01")
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].VR = "OB"
    return part10(ds)


def _jpeg_lossless_gdcm() -> bytes | None:
    """JPEG Lossless SV1 (pydicom has no encoder for it; gdcm does). None without gdcm."""
    try:
        import gdcm
    except ImportError:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        src.write_bytes(part10(dataset(phantom())))
        reader = gdcm.ImageReader()
        reader.SetFileName(str(src))
        if not reader.Read():
            return None
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        if not change.Change():
            return None
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(dst))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            return None
        # gdcm stamps the current date and time: drop them, so that every build is the same.
        ds = dcmread(dst)
        for keyword in ("StudyDate", "StudyTime", "ContentDate", "ContentTime",
                        "InstanceCreationDate", "InstanceCreationTime"):
            if keyword in ds:
                delattr(ds, keyword)
        return part10(ds)


def _voi_lut(as_words: bool) -> bytes:
    """A VOI LUT item whose LUT Data is US values (as_words=False) or OW bytes."""
    item = Dataset()
    item.LUTDescriptor = [256, 0, 12]
    table = [min(4095, 16 * i) for i in range(256)]
    if as_words:
        item.add_new(0x00283006, "OW", np.asarray(table, dtype="<u2").tobytes())
    else:
        item.add_new(0x00283006, "US", table)
    ds = dataset(phantom(bits_stored=8), modality="DX", VOILUTSequence=Sequence([item]))
    return part10(ds)


def _modality_lut() -> bytes:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "US", [int(1000 + 40 * i) for i in range(256)])
    ds = dataset(phantom(bits_stored=8), modality="DX", ModalityLUTSequence=Sequence([item]))
    return part10(ds)


def _view_code() -> bytes:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "R-10214", "SRT", "postero-anterior"
    ds = dataset(phantom(), modality="DX", ViewCodeSequence=Sequence([code]), SeriesDescription="CHEST")
    del ds.ViewPosition
    return part10(ds)


def _big_endian() -> bytes:
    arr = phantom()
    ds = dataset(arr, syntax=ExplicitVRBigEndian)
    ds.PixelData = arr.astype(">u2").tobytes()
    return part10(ds)


SEEDS: dict[str, Callable[[], bytes | None]] = {
    "explicit_le_16bit_window.dcm": lambda: part10(
        dataset(phantom(), WindowCenter=2048, WindowWidth=3000, VOILUTFunction="LINEAR")
    ),
    "explicit_le_8bit_mono1_dx.dcm": lambda: part10(
        dataset(phantom(bits_stored=8), modality="DX", PhotometricInterpretation="MONOCHROME1")
    ),
    "implicit_le_signed_rescale.dcm": lambda: part10(
        dataset(phantom(signed=True), syntax=ImplicitVRLittleEndian, RescaleSlope=2, RescaleIntercept=-1024)
    ),
    "explicit_le_32bit_sigmoid.dcm": lambda: part10(
        dataset(phantom(bits_stored=20), WindowCenter=[524288, 400000], WindowWidth=[900000, 1000],
                VOILUTFunction="SIGMOID")
    ),
    "explicit_be_16bit.dcm": _big_endian,
    "deflated_explicit_le.dcm": lambda: part10(dataset(phantom(), syntax=DeflatedExplicitVRLittleEndian)),
    "bare_implicit_le.dcm": lambda: bare(dataset(phantom(), syntax=ImplicitVRLittleEndian)),
    "jpeg_baseline_8bit.dcm": _jpeg_baseline,
    "jpeg_lossless_sv1.dcm": _jpeg_lossless_gdcm,
    "jpeg2000_lossless.dcm": lambda: _compressed(phantom(), JPEG2000Lossless),
    "jpeg2000_lossy.dcm": lambda: _compressed(phantom(), JPEG2000, j2k_cr=[8]),
    "jpegls_lossless.dcm": lambda: _compressed(phantom(), JPEGLSLossless),
    "jpegls_near_lossless.dcm": lambda: _compressed(phantom(), JPEGLSNearLossless, jls_error=2),
    "rle_lossless.dcm": lambda: _compressed(phantom(), RLELossless),
    "voi_lut_us_dx.dcm": lambda: _voi_lut(as_words=False),
    "voi_lut_ow_dx.dcm": lambda: _voi_lut(as_words=True),
    "modality_lut_dx.dcm": _modality_lut,
    "view_code_sequence_dx.dcm": _view_code,
}


def build() -> dict[str, bytes]:
    """name -> bytes of every seed this machine's encoders can make."""
    dataset.counter = 0  # same UIDs on every build
    out = {}
    for name, make in SEEDS.items():
        data = make()
        if data is not None:
            out[name] = data
    return out


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in build().items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus")
    written = write(target)
    print(f"wrote {len(written)} seeds ({sum(p.stat().st_size for p in written)} bytes) to {target}")
