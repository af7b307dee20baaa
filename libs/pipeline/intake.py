"""Accepting a DICOM instance: validate fully, then store file + row together, or store nothing.

"Fully" is every header rule plus a check that the pixel data is complete, without decoding it
(libs.dicom.pixels.check_pixel_data: the uncompressed length; for compressed data a first
fragment that ends with its end-of-image marker, whose own image header matches the DICOM one,
or an RLE segment table that fits). The pixels are decoded once, at ingestion (libs.dicom.load),
at the resolution the model needs; a code stream that is corrupt inside its coded data passes
here and fails that job with the decoder's reason (InputRejected), as any unusable input does.

Limits (docs/pacs.md, "STOW-RS limits"), enforced here so that every way in (STOW-RS push,
DICOMweb pull, the embedded `cxr-report run`) obeys them:

- an image larger than `max_image_pixels` (Rows x Columns x NumberOfFrames) is rejected from
  its header alone, before its pixel data is loaded or decoded: a decoder allocates what the
  header asks for, so a forged header must not get that far;
- a study holding `max_instances_per_study` instances takes no new one (StudyFull). Already
  stored instances are still accepted, as duplicates. The count is read before the insert, so
  uploads running at the same moment into one study can each pass it: the overshoot is at most
  the number of concurrent uploads.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from libs.core.errors import InputRejected
from libs.dicom import instance_from_dataset, read_dataset, validate_dataset
from libs.dicom.pixels import check_pixel_data
from libs.domain.study import Instance
from libs.storage import crud
from libs.storage.models import InstanceRow

if TYPE_CHECKING:
    from libs.core.config import Settings

# UIDs become path components: only digits and dots, as PS3.5 §9.1 requires, so no path tricks.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class Accepted:
    instance: Instance
    newly_stored: bool


@dataclass(frozen=True)
class IntakeLimits:
    max_image_pixels: int
    max_instances_per_study: int

    @classmethod
    def of(cls, settings: Settings) -> IntakeLimits:
        return cls(settings.max_image_pixels, settings.max_instances_per_study)


class StudyFull(InputRejected):
    """The study already holds as many instances as a study may (STOW-RS FailureReason 0xA700)."""

    code = "study-full"


def check_uid(value: str | None, what: str) -> str:
    if not value or len(value) > 64 or not _UID.match(value):
        raise InputRejected(f"{what} is not a valid DICOM UID")
    return value


def accept_instance(
    session: Session, source: bytes | Path, dicom_dir: Path, *, limits: IntakeLimits | None = None
) -> Accepted:
    """Validates one instance (header, and pixel data complete: no decode) and stores it once per SOPInstanceUID.

    `source` is the file's bytes or a path to it; a path is copied, never moved. `limits` default
    to the process's settings (CXR_MAX_IMAGE_PIXELS, CXR_MAX_INSTANCES_PER_STUDY).
    Raises InputRejected with the reason (StudyFull for a full study); on any failure neither a
    file nor a row is left behind.
    """
    if limits is None:
        from libs.core.config import get_settings

        limits = IntakeLimits.of(get_settings())
    header = _header_only(source)
    if header is not None:
        check_image_size(header, limits.max_image_pixels)
    ds = read_dataset(source)
    check_image_size(ds, limits.max_image_pixels)  # also when the header-only read failed
    validate_dataset(ds)
    check_pixel_data(ds)  # not a decode: ingestion decodes once, at the model's resolution
    instance = instance_from_dataset(ds)
    del ds, header  # the pixel data is not needed any more; a copy goes from `source` to disk
    for uid, what in (
        (instance.study_uid, "StudyInstanceUID"),
        (instance.series_uid, "SeriesInstanceUID"),
        (instance.sop_instance_uid, "SOPInstanceUID"),
    ):
        check_uid(uid, what)
    existing = crud.get_instance(session, instance.sop_instance_uid)
    if existing is not None:
        return Accepted(existing, newly_stored=False)
    _check_study_room(session, instance.study_uid, limits.max_instances_per_study)

    target = dicom_dir / instance.study_uid / instance.series_uid / f"{instance.sop_instance_uid}.dcm"
    instance = instance.model_copy(update={"path": target})
    size = len(source) if isinstance(source, (bytes, bytearray)) else Path(source).stat().st_size
    # The row goes in first, in a savepoint: a concurrent upload of the same instance (a PACS
    # retrying a slow request) waits on the primary key until we commit, then lands here and
    # returns our row; only the upload that owns the row ever writes or deletes the file.
    try:
        with session.begin_nested():
            crud.store_instance(session, instance, size_bytes=size)
    except IntegrityError:
        existing = crud.get_instance(session, instance.sop_instance_uid)
        if existing is None:
            raise
        return Accepted(existing, newly_stored=False)

    _write_file(source, target)
    return Accepted(instance, newly_stored=True)


def _write_file(source: bytes | Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name and rename: a reader never sees half a file. If this fails the
    # exception rolls the caller's transaction back, so the row goes too.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(source, (bytes, bytearray)):
                fh.write(source)
            else:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, fh, 1024 * 1024)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        raise


def _header_only(source: bytes | Path) -> Dataset | None:
    """The data set up to its pixel data, or None when that cannot be read (read_dataset then says why)."""
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source,
                               stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - any parse failure: the full read reports it properly
        return None


def _dimension(ds: Dataset, keyword: str) -> int | None:
    """A US/IS header value as an int; None when absent or unreadable (validation rejects those later)."""
    try:
        value = ds.get(keyword)
        if isinstance(value, MultiValue):  # a forged header may give Rows several values
            value = value[0] if len(value) else None
        return None if value is None or value == "" else int(value)
    except Exception:  # noqa: BLE001 - a malformed element is not this check's to report
        return None


def check_image_size(ds: Dataset, max_pixels: int) -> None:
    """Rows x Columns x NumberOfFrames must not exceed `max_pixels`; read from the header only."""
    rows, cols = _dimension(ds, "Rows"), _dimension(ds, "Columns")
    if not rows or not cols or rows < 0 or cols < 0:
        return  # missing or invalid: check_pixel_module rejects it with its own reason
    frames = max(_dimension(ds, "NumberOfFrames") or 1, 1)
    pixels = rows * cols * frames
    if pixels > max_pixels:
        raise InputRejected(
            f"image too large: {rows} x {cols} pixels x {frames} frame(s) = {pixels} pixels, "
            f"more than the limit of {max_pixels} (CXR_MAX_IMAGE_PIXELS)"
        )


def _check_study_room(session: Session, study_uid: str, max_instances: int) -> None:
    held = session.execute(
        select(func.count()).select_from(InstanceRow).where(InstanceRow.study_uid == study_uid)
    ).scalar_one()
    if held >= max_instances:
        raise StudyFull(
            f"study {study_uid} already holds {held} instance(s), the limit per study "
            f"(CXR_MAX_INSTANCES_PER_STUDY) is {max_instances}"
        )
