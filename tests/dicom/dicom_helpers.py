"""Builders for generated test datasets (imported by the tests in this folder; unique module name on purpose)."""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def phantom(rows: int = 120, cols: int = 100, bits_stored: int = 12, seed: int = 0) -> np.ndarray:
    """A smooth, chest-sized-contrast test image with noise: compresses like a radiograph, not like noise."""
    y, x = np.mgrid[0:rows, 0:cols]
    top = (1 << bits_stored) - 1
    base = 0.5 + 0.25 * np.sin(x / 7.0) * np.cos(y / 11.0) + 0.15 * (y / rows)
    noise = np.random.default_rng(seed).normal(0.0, 0.01, (rows, cols))
    return np.clip((base + noise) * top, 0, top).astype(np.uint16 if bits_stored > 8 else np.uint8)


def make_dataset(arr: np.ndarray | None = None, **attrs) -> Dataset:
    """A minimal, valid chest CR (MONOCHROME2, explicit VR little endian) around `arr`.

    Keyword arguments set or (with value None) delete attributes, e.g. Modality="MR", BodyPartExamined=None.
    """
    if arr is None:
        arr = phantom()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
    ds.SOPClassUID = CR_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = 8 if arr.dtype.itemsize == 1 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if np.issubdtype(arr.dtype, np.signedinteger) else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    for keyword, value in attrs.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset, implicit: bool = False) -> bytes:
    """A Part-10 file (preamble, file meta) as bytes; implicit=True re-encodes as Implicit VR Little Endian."""
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
