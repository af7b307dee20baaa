"""Against a real Orthanc with its DICOMweb plugin: pull, push (Orthanc forwarding to our STOW-RS),
the report SR stored back and read again, and PACS failures.

The pipeline runs in-process (the gateway's thread) with the 64-pixel random test bundle; the
Celery-retry variant with real worker processes is in test_orthanc_queue.py.
"""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import highdicom as hd
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from libs.dicomweb.client import make_client
from libs.dicomweb.pull import pull_study
from libs.sr import measurement_report_uids, sr_uids
from libs.sr.codes import OBSERVATION_CODES
from libs.storage.models import InstanceRow, JobRow
from services.gateway import create_app
from tests.pacs.conftest import ChestStudy
from tests.pacs.fakes import FailingProxy, dropping_server, hanging_server
from tests.pacs.orthanc import Orthanc
from tests.conftest import authorize

pytestmark = [pytest.mark.integration, pytest.mark.pacs]

CONTEXT = {"clinical_context": {"age": 67, "sex": "M", "indication": "Shortness of breath"}}


def _wait_report(client, study_uid: str, timeout: float = 90) -> dict:  # noqa: ANN001 - TestClient or httpx.Client
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/studies/{study_uid}/report", params={"wait": 10})
        if r.status_code == 200:
            body = r.json()
            if body["status"] in ("reviewed", "failed"):
                return body
        time.sleep(0.2)
    raise AssertionError(f"no finished report for study {study_uid}: {body}")


def _wait_results(client, job_id: str, timeout: float = 60) -> dict:  # noqa: ANN001
    """The job's PACS store-back outcome, once it is no longer pending (it runs after the report is out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        results = client.get(f"/api/v1/jobs/{job_id}").json()["pacs_results"]
        if results and results["state"] != "pending":
            return results
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: store-back still pending: {results}")


def _stored(app) -> list[InstanceRow]:  # noqa: ANN001
    with app.state.engine.connect() as conn:
        return list(conn.execute(select(InstanceRow)).all())


def _files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix in (".dcm", ".part"))


def test_pull_by_study_uid_then_report(orthanc: Orthanc, chest_study: ChestStudy, pacs_settings, pg_url) -> None:  # noqa: ANN001
    for data in chest_study.files:
        orthanc.upload(data)
    settings = pacs_settings(database_url=pg_url, pacs=[orthanc.pacs_entry()])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        authorize(client)
        # Nothing is stored here yet: with a PACS configured the job is created anyway.
        posted = client.post(f"/api/v1/studies/{chest_study.study_uid}/report", json=CONTEXT)
        assert posted.status_code == 202, posted.text
        report = _wait_report(client, chest_study.study_uid)
        assert report["status"] == "reviewed", (report, orthanc.log_tail())
        assert report["model_version"] == "0.0.0-test" and report["impression"]
        rows = _stored(client.app)
    # Both instances came over, each in its own transfer syntax (JPEG 2000 was not transcoded).
    assert sorted(r.sop_instance_uid for r in rows) == sorted(chest_study.sop_uids)
    by_uid = {r.sop_instance_uid: r.transfer_syntax_uid for r in rows}
    assert [by_uid[u] for u in chest_study.sop_uids] == chest_study.transfer_syntaxes
    assert len(_files(settings.data_dir)) == 2
    assert not list(settings.data_dir.glob("pull-*"))  # the spool is gone


def test_pull_only_the_named_image(orthanc: Orthanc, chest_study: ChestStudy, pacs_settings) -> None:  # noqa: ANN001
    for data in chest_study.files:
        orthanc.upload(data)
    settings = pacs_settings(pacs=[orthanc.pacs_entry()])
    body = {**CONTEXT, "images": [{"series_uid": chest_study.series_uids[1], "instance_uid": chest_study.sop_uids[1],
                                   "view": "PA"}]}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        authorize(client)
        assert client.post(f"/api/v1/studies/{chest_study.study_uid}/report", json=body).status_code == 202
        assert _wait_report(client, chest_study.study_uid)["status"] == "reviewed"
        assert [r.sop_instance_uid for r in _stored(client.app)] == [chest_study.sop_uids[1]]


def test_unknown_study_without_pacs_is_404_and_on_pacs_fails_clearly(orthanc: Orthanc, pacs_settings) -> None:  # noqa: ANN001
    study = "1.2.826.0.1.3680043.8.498.1"
    with TestClient(create_app(pacs_settings()), raise_server_exceptions=False) as client:
        authorize(client)
        assert client.post(f"/api/v1/studies/{study}/report", json={}).status_code == 404
    with TestClient(create_app(pacs_settings(pacs=[orthanc.pacs_entry()])), raise_server_exceptions=False) as client:
        authorize(client)
        assert client.post(f"/api/v1/studies/{study}/report", json={}).status_code == 202
        report = _wait_report(client, study)
        assert report["status"] == "failed"
        assert report["error"] == f"study {study} is not stored here and no configured PACS has it (asked 'orthanc')"


def test_orthanc_forwards_study_to_our_stow_then_report(orthanc_factory, serve_gateway, chest_study: ChestStudy,  # noqa: ANN001
                                                        pacs_settings) -> None:
    settings = pacs_settings(auto_report_on_stable=True, stable_study_age_s=1.0, stable_study_poll_s=0.2)
    gateway = serve_gateway(settings)
    orthanc = orthanc_factory(gateway_url=gateway.url, gateway_key=gateway.pacs_key)
    for data in chest_study.files:
        orthanc.upload(data)
    resource = orthanc.study_id(chest_study.study_uid)
    with orthanc.client() as c:
        # Orthanc's DICOMweb client, to the server "cxr" of its configuration (DicomWeb.Servers).
        sent = c.post("/dicom-web/servers/cxr/stow", json={"Resources": [resource], "Synchronous": True})
        assert sent.status_code == 200, (sent.text, orthanc.log_tail())
        # The same study again (a retried route): already-stored instances are not a failure.
        again = c.post("/dicom-web/servers/cxr/stow", json={"Resources": [resource], "Synchronous": True})
        assert again.status_code == 200, (again.text, orthanc.log_tail())
    with httpx.Client(base_url=gateway.url, timeout=30, headers={"X-API-Key": gateway.key}) as api:
        report = _wait_report(api, chest_study.study_uid)
    assert report["status"] == "reviewed", report
    assert sorted(r.sop_instance_uid for r in _stored(gateway.app)) == sorted(chest_study.sop_uids)
    with gateway.app.state.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(JobRow)).scalar_one() == 1


def test_orthanc_lua_forwards_stable_studies(orthanc_factory, serve_gateway, chest_study: ChestStudy,  # noqa: ANN001
                                             pacs_settings) -> None:
    """deploy/orthanc/forward-to-cxr.lua: Orthanc pushes each stable study's CR/DX series to us."""
    gateway = serve_gateway(pacs_settings(auto_report_on_stable=True, stable_study_age_s=1.0, stable_study_poll_s=0.2))
    orthanc = orthanc_factory(gateway_url=gateway.url, gateway_key=gateway.pacs_key, stable_age_s=1, forward_lua=True)
    for data in chest_study.files:
        orthanc.upload(data)
    with httpx.Client(base_url=gateway.url, timeout=30, headers={"X-API-Key": gateway.key}) as api:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and api.get(f"/api/v1/studies/{chest_study.study_uid}/report").status_code == 404:
            time.sleep(0.3)
        report = _wait_report(api, chest_study.study_uid)
    assert report["status"] == "reviewed", (report, orthanc.log_tail())


def test_report_sr_stored_back_and_read_again_from_orthanc(orthanc: Orthanc, chest_study: ChestStudy, pacs_settings,  # noqa: ANN001
                                                           tmp_path: Path) -> None:
    for data in chest_study.files:
        orthanc.upload(data)
    settings = pacs_settings(pacs=[orthanc.pacs_entry(store_results=True)])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        authorize(client)
        assert client.post(f"/api/v1/studies/{chest_study.study_uid}/report", json=CONTEXT).status_code == 202
        report = _wait_report(client, chest_study.study_uid)
        assert report["status"] == "reviewed"
        results = _wait_results(client, report["job_id"])
    series_uid, sop_uid = sr_uids(report["job_id"])
    assert results["state"] == "stored", results
    assert results["sr_instance_uid"] == sop_uid and results["servers"]["orthanc"]["status"] == "stored"

    # Read it back over WADO-RS, as any DICOMweb viewer would, and parse it with highdicom.
    web = make_client(settings.pacs[0])
    found = web.search_for_series(study_instance_uid=chest_study.study_uid, search_filters={"Modality": "SR"})
    tid1500_series, tid1500_uid = measurement_report_uids(report["job_id"])
    assert sorted(s["0020000E"]["Value"][0] for s in found) == sorted([series_uid, tid1500_series])
    assert [(s["template"], s["instance_uid"]) for s in results["srs"]] == [("text", sop_uid),
                                                                           ("tid1500", tid1500_uid)]
    _check_measurement_report(web, chest_study, report, tid1500_series, tid1500_uid, tmp_path)
    retrieved = web.retrieve_instance(chest_study.study_uid, series_uid, sop_uid)
    buf = io.BytesIO()
    retrieved.save_as(buf, enforce_file_format=True)
    sr = hd.sr.srread(io.BytesIO(buf.getvalue()))
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == ("PARTIAL", "UNVERIFIED", "PRELIMINARY")
    assert "AI generated" in sr.SeriesDescription
    items = []
    stack = list(sr.ContentSequence)
    while stack:
        item = stack.pop(0)
        items.append(item)
        stack.extend(item.get("ContentSequence", []))
    texts = [i.TextValue for i in items if i.ValueType == "TEXT"]
    assert report["impression"] in texts and report["recommendations"] in texts
    assert any(t.startswith("AI-GENERATED PRELIMINARY REPORT") for t in texts)
    coded = [i.ConceptCodeSequence[0].CodeValue for i in items
             if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeMeaning == "Finding"]
    assert coded == [OBSERVATION_CODES[f["label"]].value for f in report["findings"]]
    referenced = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items if i.ValueType == "IMAGE"}
    assert referenced == set(chest_study.sop_uids)
    observer = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence
                if i.RelationshipType == "HAS OBS CONTEXT"}
    assert observer["Observer Type"].ConceptCodeSequence[0].CodeMeaning == "Device"

    # A later pull of the study fetches the radiographs only, never our SR.
    fresh = pacs_settings(data_dir=tmp_path / "fresh", pacs=[orthanc.pacs_entry()])
    from libs.pipeline.context import PipelineContext

    ctx = PipelineContext.from_settings(fresh)
    assert pull_study(ctx.engine, fresh, chest_study.study_uid).fetched == 2


def _check_measurement_report(web, chest_study: ChestStudy, report: dict, series_uid: str, sop_uid: str,  # noqa: ANN001
                              tmp_path: Path) -> None:
    """The TID 1500 SR as Orthanc gives it back: highdicom reads its measurement groups, one per
    assessed observation, with the report's probabilities and calls; dcmtk's dsrdump reads it with
    no error and names the templates."""
    retrieved = web.retrieve_instance(chest_study.study_uid, series_uid, sop_uid)
    path = tmp_path / "tid1500.dcm"
    retrieved.save_as(path, enforce_file_format=True)
    sr = hd.sr.srread(path)
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.VerificationFlag == "UNVERIFIED"
    content = hd.sr.MeasurementReport.from_sequence([sr])  # the root item is the SR itself
    groups = content.get_image_measurement_groups() + content.get_planar_roi_measurement_groups()
    by_label = {g.tracking_identifier.split(" (")[0]: g for g in groups}
    assert report["observations"] and set(by_label) == {o["label"] for o in report["observations"]}
    for obs in report["observations"]:
        group = by_label[obs["label"]]
        (probability,) = group.get_measurements()
        assert probability.value == pytest.approx(100 * obs["probability"], abs=0.01)
        calls = [e.value.meaning for e in group.get_qualitative_evaluations()
                 if e.name.value == OBSERVATION_CODES[obs["label"]].value]
        assert calls == ["Present" if obs["present"] else "Absent"]
    dump = subprocess.run(["dsrdump", "+Pt", str(path)], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0 and not dump.stderr.strip(), dump.stderr
    assert "# TID 1500 (DCMR)" in dump.stdout


@pytest.mark.parametrize("kind", ["down", "timeout"])
def test_pacs_down_or_timing_out_is_retried_then_fails_clearly(kind: str, chest_study: ChestStudy,  # noqa: ANN001
                                                               pacs_settings) -> None:
    server = dropping_server() if kind == "down" else hanging_server()
    try:
        pacs = {"name": "pacs", "url": server.url, "retries": 2, "backoff_s": 0.05, "read_timeout_s": 0.5,
                "connect_timeout_s": 0.5}
        settings = pacs_settings(pacs=[pacs])
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            authorize(client)
            assert client.post(f"/api/v1/studies/{chest_study.study_uid}/report", json={}).status_code == 202
            report = _wait_report(client, chest_study.study_uid)
            assert report["status"] == "failed"
            expected = "unreachable" if kind == "down" else "timed out"
            assert report["error"].startswith(f"ingestion failed: PACS 'pacs' ({server.url}) {expected} while "
                                              f"looking for study {chest_study.study_uid} (QIDO-RS)"), report
            assert report["error"].endswith("after 3 attempt(s)"), report
            assert server.connections == 3  # one try, two retries with backoff
            assert _stored(client.app) == []
        assert _files(settings.data_dir) == []
    finally:
        server.close()


def test_pacs_breaking_down_mid_study_leaves_nothing_half_stored(orthanc: Orthanc, chest_study: ChestStudy,  # noqa: ANN001
                                                                 pacs_settings) -> None:
    for data in chest_study.files:
        orthanc.upload(data)
    proxy = FailingProxy(orthanc.dicomweb_url, orthanc.auth, fail_from=2)  # series 1 comes over, series 2 fails
    try:
        settings = pacs_settings(pacs=[{"name": "flaky", "url": proxy.url, "retries": 2, "backoff_s": 0.05}])
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            authorize(client)
            assert client.post(f"/api/v1/studies/{chest_study.study_uid}/report", json={}).status_code == 202
            report = _wait_report(client, chest_study.study_uid)
            assert report["status"] == "failed"
            assert "answered HTTP 503 Service Unavailable while retrieving study" in report["error"], report
            assert proxy.wado_requests == 4 and proxy.failed_requests == 3  # 1 good + 1 try and 2 retries
            assert _stored(client.app) == []
        assert _files(settings.data_dir) == []
        assert not list(settings.data_dir.glob("pull-*"))
    finally:
        proxy.close()


def test_results_pacs_down_keeps_the_report(chest_study: ChestStudy, pacs_settings) -> None:  # noqa: ANN001
    from tests.gateway.helpers import stow

    server = dropping_server()
    try:
        results_only = {"name": "archive", "url": server.url, "pull": False, "store_results": True,
                        "retries": 2, "backoff_s": 0.05}
        settings = pacs_settings(pacs=[results_only])
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            authorize(client)
            assert stow(client, chest_study.files[:1]).status_code == 200
            assert client.post(f"/api/v1/studies/{chest_study.study_uid}/report", json={}).status_code == 202
            report = _wait_report(client, chest_study.study_uid)
            assert report["status"] == "reviewed" and report["impression"]
            results = _wait_results(client, report["job_id"])
        assert results["state"] == "failed"
        detail = results["servers"]["archive"]["detail"]
        assert detail.startswith(f"PACS 'archive' ({server.url}) unreachable while storing the report SR"), detail
        assert server.connections == 3
    finally:
        server.close()



def test_cli_searches_and_pulls(orthanc: Orthanc, chest_study: ChestStudy, tmp_path: Path,  # noqa: ANN001
                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import json

    from libs.core.config import reset_settings_cache
    from libs.dicomweb.__main__ import main

    for data in chest_study.files:
        orthanc.upload(data)
    monkeypatch.setenv("CXR_PACS", json.dumps([orthanc.pacs_entry()]))
    monkeypatch.setenv("CXR_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    reset_settings_cache()
    try:
        assert main(["studies", "--modality", "CR"]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert [line.split("\t")[0] for line in listed] == [chest_study.study_uid]
        assert listed[0].split("\t")[3] == "2"
        assert main(["pull", chest_study.study_uid]) == 0
        assert "2 fetched, 2 new" in capsys.readouterr().out
        assert main(["pull", "1.2.3.4"]) == 2
        assert "no configured PACS has it" in capsys.readouterr().err
    finally:
        reset_settings_cache()
