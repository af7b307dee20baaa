"""Accepting a DICOM instance: validate fully, then store file + row together, or store nothing."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from libs.core.errors import InputRejected
from libs.dicom import instance_from_dataset, read_dataset, validate_dataset
from libs.domain.study import Instance
from libs.storage import crud

# UIDs become path components: only digits and dots, as PS3.5 §9.1 requires, so no path tricks.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class Accepted:
    instance: Instance
    newly_stored: bool


def check_uid(value: str | None, what: str) -> str:
    if not value or len(value) > 64 or not _UID.match(value):
        raise InputRejected(f"{what} is not a valid DICOM UID")
    return value


def accept_instance(session: Session, data: bytes, dicom_dir: Path) -> Accepted:
    """Validates one instance (header and full pixel decode) and stores it once per SOPInstanceUID.

    Raises InputRejected with the reason; on any failure neither a file nor a row is left behind.
    """
    ds = read_dataset(data)
    validate_dataset(ds, decode=True)
    instance = instance_from_dataset(ds)
    for uid, what in (
        (instance.study_uid, "StudyInstanceUID"),
        (instance.series_uid, "SeriesInstanceUID"),
        (instance.sop_instance_uid, "SOPInstanceUID"),
    ):
        check_uid(uid, what)
    existing = crud.get_instance(session, instance.sop_instance_uid)
    if existing is not None:
        return Accepted(existing, newly_stored=False)

    target = dicom_dir / instance.study_uid / instance.series_uid / f"{instance.sop_instance_uid}.dcm"
    instance = instance.model_copy(update={"path": target})
    # The row goes in first, in a savepoint: a concurrent upload of the same instance (a PACS
    # retrying a slow request) waits on the primary key until we commit, then lands here and
    # returns our row; only the upload that owns the row ever writes or deletes the file.
    try:
        with session.begin_nested():
            crud.store_instance(session, instance, size_bytes=len(data))
    except IntegrityError:
        existing = crud.get_instance(session, instance.sop_instance_uid)
        if existing is None:
            raise
        return Accepted(existing, newly_stored=False)

    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name and rename: a reader never sees half a file. If this fails the
    # exception rolls the caller's transaction back, so the row goes too.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        raise
    return Accepted(instance, newly_stored=True)
