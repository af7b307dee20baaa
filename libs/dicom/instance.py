"""Dataset -> Instance: the identifiers and geometry the rest of the platform keeps, nothing about the patient."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from libs.dicom import _attrs
from libs.dicom.validate import check_identity
from libs.dicom.view import view_of
from libs.domain.study import Instance


def instance_from_dataset(ds: Dataset, path: str | Path | None = None) -> Instance:
    """Raises InputRejected when a UID is missing; does not apply the other validation rules."""
    check_identity(ds)
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    return Instance(
        study_uid=_attrs.text(ds, "StudyInstanceUID"),
        series_uid=_attrs.text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_attrs.text(ds, "SOPInstanceUID"),
        modality=_attrs.text(ds, "Modality").upper(),
        view=view_of(ds),
        rows=_attrs.integer(ds, "Rows"),
        columns=_attrs.integer(ds, "Columns"),
        transfer_syntax_uid=str(ts) if ts else None,
        path=Path(path) if path is not None else None,
    )
