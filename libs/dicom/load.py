"""The one call the ingest step makes: a stored file -> (Instance, model input)."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from libs.dicom import _attrs
from libs.dicom.display import decode_pixels, to_display
from libs.dicom.instance import instance_from_dataset
from libs.dicom.pixels import decode_frame
from libs.dicom.preprocess import PreprocessedImage, preprocess
from libs.dicom.reading import read_dataset
from libs.dicom.validate import validate_dataset
from libs.domain.study import Instance


def load_for_model(path: str | Path, size: int = 512, *, reduced: bool = True) -> tuple[Instance, PreprocessedImage]:
    """Read, validate, decode and fit one instance; InputRejected (with the reason) if it is unusable.

    This is the one decode of the instance (intake only checks that the pixel data is complete):
    display_and_fit rejects truncated or corrupt data itself."""
    ds = read_dataset(path)
    validate_dataset(ds, decode=False)
    instance = instance_from_dataset(ds, path=path)
    return instance, display_and_fit(ds, size, reduced=reduced)


def display_and_fit(ds: Dataset, size: int, *, reduced: bool = True) -> PreprocessedImage:
    """Display pipeline + square fit of a validated dataset: what the model input is made from.

    reduced=True decodes a JPEG 2000 frame at the lowest resolution whose shorter side is still
    twice `size` (j2k_reduce.py); reduced=False always decodes in full (the benchmark compares the two). The
    geometry is the full image's either way. Training and evaluation call this too
    (libs.model.images, on images wrapped by libs.dicom.wrap), so there is one image path from
    stored pixels to model input."""
    if not reduced:
        return preprocess(decode_pixels(ds), size=size)
    stored, levels = decode_frame(ds, min_side=size)
    img = to_display(stored, ds)
    if not levels:
        return preprocess(img, size=size)
    source = (_attrs.integer(ds, "Rows"), _attrs.integer(ds, "Columns"))
    return preprocess(img, size=size, source_shape=source, discarded_levels=levels)
