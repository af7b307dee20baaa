"""A grayscale raster (PNG/JPEG pixels) as a DX For Presentation instance.

Why this exists: the reference model is trained on image files, but the platform serves DICOM through
the display pipeline (libs.dicom.display). Training and evaluation wrap each training image the way a
site's converter would (MONOCHROME2, the file's own bit depth, no window in the header) and then read
it with exactly the functions ingestion uses (libs.dicom.load.display_and_fit), so there is one image
path from file to model input. `cxr-report evaluate` writes such instances to disk and runs them through
the pipeline itself.

The instance carries no patient data: a fixed pseudonym, generated UIDs, no dates of birth or
accession numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def read_grayscale(path: str | Path) -> np.ndarray:
    """An image file's pixels as a 2-D uint8 (8-bit files) or uint16 (16-bit files) array."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(img, dtype=np.uint16)
        return np.asarray(img.convert("L"), dtype=np.uint8)


def wrap_image(
    pixels: np.ndarray,
    *,
    view: str = "AP",
    modality: str = "DX",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    window: tuple[float, float] | None = None,
) -> Dataset:
    """A DX For Presentation dataset holding `pixels` (2-D uint8 or uint16), MONOCHROME2.

    `window`: (center, width) written to the header; None (the default) writes none, so the display
    pipeline estimates one, as it does for a converter that writes no window.
    """
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        bits = 8
    elif pixels.dtype == np.uint16:
        bits = 16
    else:
        raise ValueError(f"pixels must be uint8 or uint16, got {pixels.dtype}")
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.PatientName = "Anonymous^Wrapped"
    ds.PatientID = "WRAPPED"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(v) for v in pixels.shape)
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = float(window[0]), float(window[1])
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def wrap_file(path: str | Path, **kwargs) -> Dataset:
    """wrap_image of an image file's pixels."""
    return wrap_image(read_grayscale(path), **kwargs)


def write_wrapped(path: str | Path, out: str | Path, **kwargs) -> Path:
    """Writes the wrapped image file as a DICOM Part 10 file at `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrap_file(path, **kwargs).save_as(out, enforce_file_format=True)
    return out
