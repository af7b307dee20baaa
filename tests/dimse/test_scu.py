"""Report SRs sent by C-STORE (libs/dimse/scu.py) to Orthanc's real DICOM port."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from libs.core.config import DimseDestination, Settings
from libs.dicomweb.client import PacsUnavailable
from libs.dicomweb.results import store_sr
from libs.sr import ModelIdentity, build_report_sr
from tests.pacs.conftest import make_chest_study
from tests.pacs.orthanc import free_port, start_orthanc
from tests.pacs.test_sr import _report


def _sr():  # noqa: ANN202 - a pydicom Dataset
    study = make_chest_study()
    sources = [pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True) for b in study.files]
    return build_report_sr(_report(str(sources[0].StudyInstanceUID)), sources, model=ModelIdentity("m", "1.0"),
                           series_instance_uid=pydicom.uid.generate_uid(), sop_instance_uid=pydicom.uid.generate_uid())


@pytest.fixture
def orthanc(tmp_path: Path):  # noqa: ANN201
    o = start_orthanc(tmp_path / "orthanc", dicom_port=free_port())
    yield o
    o.stop()


def _dicom_port(orthanc) -> int:  # noqa: ANN001
    import json

    return json.loads((orthanc.root / "orthanc.json").read_text())["DicomPort"]


def test_the_report_sr_is_stored_in_orthanc_over_dimse(orthanc) -> None:  # noqa: ANN001
    sr = _sr()
    dest = DimseDestination(name="pacs-dimse", ae_title="ORTHANC", host="127.0.0.1", port=_dicom_port(orthanc))
    assert store_sr(dest, sr, Settings()) == "stored (C-STORE)"
    with orthanc.client() as c:
        (found,) = c.post("/tools/lookup", content=str(sr.SOPInstanceUID)).json()
        stored = pydicom.dcmread(io.BytesIO(c.get(f"/instances/{found['ID']}/file").content))
    assert stored.Modality == "SR" and stored.SOPInstanceUID == sr.SOPInstanceUID
    assert stored.StudyInstanceUID == sr.StudyInstanceUID  # in the source study, beside its images
    assert len(stored.ContentSequence) == len(sr.ContentSequence)


def test_a_wrong_called_ae_title_is_a_refusal_after_the_retries(orthanc) -> None:  # noqa: ANN001
    dest = DimseDestination(name="pacs-dimse", ae_title="NOT_ORTHANC", host="127.0.0.1", port=_dicom_port(orthanc),
                            retries=1, backoff_s=0)
    with pytest.raises(PacsUnavailable, match="association rejected"):
        store_sr(dest, _sr(), Settings())


def test_an_unreachable_pacs_is_unavailable() -> None:
    dest = DimseDestination(name="gone", ae_title="PACS", host="127.0.0.1", port=free_port(), retries=1,
                            backoff_s=0, timeout_s=2)
    with pytest.raises(PacsUnavailable, match="unreachable"):
        store_sr(dest, _sr(), Settings())
