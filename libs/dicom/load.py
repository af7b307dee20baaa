"""The one call the ingest step makes: a stored file -> (Instance, model input)."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from libs.dicom.display import decode_pixels
from libs.dicom.instance import instance_from_dataset
from libs.dicom.preprocess import PreprocessedImage, preprocess
from libs.dicom.reading import read_dataset
from libs.dicom.validate import validate_dataset
from libs.domain.study import Instance


def load_for_model(path: str | Path, size: int = 512) -> tuple[Instance, PreprocessedImage]:
    """Read, validate, decode and fit one instance; InputRejected (with the reason) if it is unusable."""
    ds = read_dataset(path)
    # decode=False: decode_pixels below decodes once and rejects truncated/corrupt data itself.
    validate_dataset(ds, decode=False)
    instance = instance_from_dataset(ds, path=path)
    return instance, display_and_fit(ds, size)


def display_and_fit(ds: Dataset, size: int) -> PreprocessedImage:
    """Display pipeline + square fit of a validated dataset: what the model input is made from.

    Training and evaluation call this too (libs.model.images, on images wrapped by libs.dicom.wrap),
    so there is one image path from stored pixels to model input."""
    return preprocess(decode_pixels(ds), size=size)
