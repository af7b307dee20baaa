"""The C-STORE / C-ECHO SCP against real peers: dcmtk's echoscu and storescu, Orthanc sending a study
as a C-STORE SCU, and pynetdicom's SCU where the exact status code is the point. Storage is the
real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
import pydicom
import pytest
from pynetdicom import AE
from sqlalchemy import Engine, func, select

from libs.dimse.scp import ScpConfig, serve
from libs.pipeline.intake import IntakeLimits
from libs.storage.db import get_engine, session_scope, upgrade_schema
from libs.storage.models import InstanceRow
from tests.pacs.orthanc import free_port, start_orthanc

AET = "CXR_TEST"
SENDER = "MODALITY1"


@dataclass
class Scp:
    port: int
    engine: Engine
    dicom_dir: Path

    def count(self, study_uid: str) -> int:
        with session_scope(self.engine) as s:
            return s.scalar(select(func.count()).select_from(InstanceRow).where(InstanceRow.study_uid == study_uid))


def _start(pg_url: str, tmp_path: Path, *, max_instances: int = 100, allowed: tuple[str, ...] = (SENDER, "ORTHANC")):
    engine = get_engine(pg_url)
    upgrade_schema(engine)
    port = free_port()
    config = ScpConfig(AET, "127.0.0.1", port, allowed, 65536, 10, 30, 4)
    server = serve(config, engine, tmp_path / "dicom", IntakeLimits(50_000_000, max_instances), block=False)
    return server, Scp(port, engine, tmp_path / "dicom")


@pytest.fixture
def scp(pg_url: str, tmp_path: Path) -> Iterator[Scp]:
    server, handle = _start(pg_url, tmp_path)
    yield handle
    server.shutdown()
    handle.engine.dispose()


def _dcmtk(tool: str, *args: str) -> subprocess.CompletedProcess:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is required (Debian package dcmtk)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def _write(tmp_path: Path, data: bytes, name: str = "in.dcm") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _store(port: int, data: bytes, calling: str = SENDER) -> int:
    """C-STORE with pynetdicom's SCU; returns the status the SCP answered."""
    ds = pydicom.dcmread(BytesIO(data))
    ae = AE(ae_title=calling)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=AET)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status)
    finally:
        assoc.release()


def test_echoscu_is_answered(scp: Scp) -> None:
    r = _dcmtk("echoscu", "-aet", SENDER, "-aec", AET, "127.0.0.1", str(scp.port))
    assert r.returncode == 0, r.stderr


def test_storescu_stores_a_real_chest_radiograph_once(scp: Scp, tmp_path: Path, chest_dicom_bytes: bytes) -> None:
    path = _write(tmp_path, chest_dicom_bytes)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for _ in range(2):  # the second send is a retry: success, still one instance
        r = _dcmtk("storescu", "-aet", SENDER, "-aec", AET, "127.0.0.1", str(scp.port), str(path))
        assert r.returncode == 0 and "Error" not in r.stderr, r.stderr
    assert scp.count(ds.StudyInstanceUID) == 1
    stored = scp.dicom_dir / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert pydicom.dcmread(stored).SOPInstanceUID == ds.SOPInstanceUID


@pytest.mark.parametrize(("calling", "called"), [("INTRUDER", AET), (SENDER, "SOMEONE_ELSE")])
def test_an_unknown_calling_or_called_ae_title_is_refused(scp: Scp, tmp_path: Path, make_chest_dicom,  # noqa: ANN001
                                                          calling: str, called: str) -> None:
    data = make_chest_dicom()
    r = _dcmtk("storescu", "-aet", calling, "-aec", called, "127.0.0.1", str(scp.port), str(_write(tmp_path, data)))
    assert r.returncode != 0
    assert "Association Rejected" in r.stderr, r.stderr
    assert scp.count(pydicom.dcmread(BytesIO(data)).StudyInstanceUID) == 0


def test_a_storage_class_that_is_not_a_radiograph_is_not_negotiated(scp: Scp, tmp_path: Path,
                                                                     mr_dicom_bytes: bytes) -> None:
    r = _dcmtk("storescu", "-aet", SENDER, "-aec", AET, "127.0.0.1", str(scp.port), str(_write(tmp_path, mr_dicom_bytes)))
    assert r.returncode != 0
    assert "No presentation context" in r.stderr or "no acceptable presentation context" in r.stderr.lower(), r.stderr


def test_what_the_intake_refuses_is_cannot_understand_with_nothing_stored(scp: Scp, make_chest_dicom) -> None:  # noqa: ANN001
    data = make_chest_dicom(modality="CT")  # a DX object that says it is a CT: not a radiograph
    assert _store(scp.port, data) == 0xC000
    assert scp.count(pydicom.dcmread(BytesIO(data)).StudyInstanceUID) == 0
    assert not scp.dicom_dir.exists() or not any(scp.dicom_dir.rglob("*.dcm"))


def test_a_full_study_is_out_of_resources(pg_url: str, tmp_path: Path, make_chest_dicom) -> None:  # noqa: ANN001
    server, handle = _start(pg_url, tmp_path, max_instances=1)
    try:
        study = pydicom.uid.generate_uid()
        assert _store(handle.port, make_chest_dicom(study_uid=study)) == 0x0000
        assert _store(handle.port, make_chest_dicom(study_uid=study)) == 0xA700
        assert handle.count(study) == 1
    finally:
        server.shutdown()
        handle.engine.dispose()


def test_orthanc_sends_a_study_over_dimse_and_the_stable_study_watcher_reports_it(
        scp: Scp, tmp_path: Path, chest_dicom_bytes: bytes) -> None:
    from libs.core.config import Settings
    from libs.dicomweb.stable import sweep

    orthanc = start_orthanc(tmp_path / "orthanc", modalities={"cxr": [AET, "127.0.0.1", scp.port]})
    try:
        uploaded = orthanc.upload(chest_dicom_bytes)
        r = httpx.post(f"{orthanc.url}/modalities/cxr/store", auth=orthanc.auth, timeout=60,
                       json={"Resources": [uploaded["ID"]], "Synchronous": True})
        assert r.status_code == 200, r.text + orthanc.log_tail()
    finally:
        orthanc.stop()
    study = pydicom.dcmread(BytesIO(chest_dicom_bytes), stop_before_pixels=True).StudyInstanceUID
    assert scp.count(study) == 1
    # A study received over DIMSE is complete by the same rule as a pushed one.
    settings = Settings(database_url=str(scp.engine.url.render_as_string(hide_password=False)),
                        stable_study_age_s=0, data_dir=tmp_path / "data")
    published = []
    jobs = sweep(scp.engine, settings, published.append, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
    assert len(jobs) == 1 and [m.job_id for m in published] == jobs


def test_a_store_to_a_stopped_scp_fails_at_the_sender(pg_url: str, tmp_path: Path, make_chest_dicom) -> None:  # noqa: ANN001
    server, handle = _start(pg_url, tmp_path)
    server.shutdown()
    handle.engine.dispose()
    r = _dcmtk("storescu", "-aet", SENDER, "-aec", AET, "127.0.0.1", str(handle.port),
               str(_write(tmp_path, make_chest_dicom())))
    assert r.returncode != 0

