"""Bytes or a file on disk -> a fully read pydicom Dataset, or InputRejected saying why not."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from libs.core.errors import InputRejected

# (7FE0,0010) Pixel Data with an undefined length, i.e. encapsulated (compressed) frames, in
# explicit VR (tag, OB/OW, 2 reserved bytes, length) or implicit VR (tag, length) little endian.
_ENCAPSULATED_PIXEL_DATA = re.compile(rb"\xe0\x7f\x10\x00(?:O[BW]\x00\x00)?\xff\xff\xff\xff")


def read_dataset(source: str | Path | bytes) -> Dataset:
    """Parses a whole DICOM file (pixel data included).

    A Part-10 file (128-byte preamble + 'DICM') is read strictly. A file without the preamble
    is still accepted when it parses into something that has SOP and study UIDs, because older
    modalities and some archives write bare datasets; random bytes never get that far.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        if not raw:
            raise InputRejected("not a DICOM file: the input is empty")
        ds = _parse(lambda: io.BytesIO(raw))
        if "PixelData" not in ds:
            _reject_if_truncated(raw)
            _reject_if_empty(ds)
        return ds

    path = Path(source)
    try:
        if path.stat().st_size == 0:
            raise InputRejected("not a DICOM file: the file is empty")
    except OSError as exc:
        # The path may hold patient details (some archives name files after the patient): no path here.
        raise InputRejected(f"not a DICOM file: cannot open it ({type(exc).__name__})") from None
    ds = _parse(lambda: open(path, "rb"))
    if "PixelData" not in ds:
        # Only on this (rejection) path is it worth reading the bytes a second time.
        _reject_if_truncated(path.read_bytes())
        _reject_if_empty(ds)
    return ds


def _parse(open_fp) -> Dataset:  # noqa: ANN001 - a zero-argument callable returning a binary file
    ds: Dataset | None = None
    try:
        with open_fp() as fp:
            ds = pydicom.dcmread(fp)
    except InvalidDicomError:
        pass  # no 'DICM' marker: maybe a bare dataset, tried below
    except OSError as exc:
        raise InputRejected(f"not a DICOM file: cannot read it ({type(exc).__name__})") from None
    except Exception as exc:  # pydicom raises many types on malformed input
        raise InputRejected(f"not a DICOM file: the header cannot be parsed ({type(exc).__name__})") from None
    if ds is not None:
        return ds

    try:
        with open_fp() as fp:
            ds = pydicom.dcmread(fp, force=True)
        looks_like_dicom = bool(ds.get("SOPInstanceUID")) and bool(ds.get("StudyInstanceUID"))
    except Exception:
        looks_like_dicom = False
    if not looks_like_dicom:
        raise InputRejected("not a DICOM file: no DICM marker and no DICOM header found")
    _fill_transfer_syntax(ds)
    return ds


def _fill_transfer_syntax(ds: Dataset) -> None:
    """A bare dataset has no file meta; the pixel decoders need the transfer syntax the reader guessed."""
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _reject_if_empty(ds: Dataset) -> None:
    # pydicom returns an empty dataset for a 'DICM' marker followed by nothing it can parse.
    if len(ds) == 0:
        raise InputRejected("not a DICOM file: no data elements after the DICM marker")


def _reject_if_truncated(raw: bytes) -> None:
    """pydicom silently returns an empty dataset when the file ends inside compressed pixel data.

    Without this check such a cut-off upload would be reported as 'not a DICOM file' or 'has no
    pixel data', which sends the sender looking for the wrong problem.
    """
    match = None
    for match in _ENCAPSULATED_PIXEL_DATA.finditer(raw):
        pass  # the last one: an icon image earlier in the file may have its own pixel data
    if match is not None:
        raise InputRejected(
            "pixel data is truncated: the file ends inside the compressed pixel data "
            f"({len(raw) - match.end()} bytes after its start, no end delimiter)"
        )
