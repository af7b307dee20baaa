"""An external FHIR server as a result destination: each finished report is pushed as a transaction
Bundle by the pipeline (libs/dicomweb/results.py -> libs/fhir/push.py), against a FHIR-like HTTP server
on loopback answering 200 / 503 / 400 OperationOutcome; retries inside an attempt, the outcome recorded
per destination, the reconciler's retry of a failed one, and paused automation holding the push."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from libs.automation import switch
from libs.core.config import FhirDestination, Settings
from libs.dicomweb.client import PacsUnavailable
from libs.dicomweb.results import store_sr
from libs.domain.request import ReportRequest
from libs.fhir import codes
from libs.pipeline import reconcile
from libs.pipeline.context import PipelineContext
from libs.pipeline.dispatch import InProcessDispatcher
from libs.pipeline.embedded import drain, store_files
from libs.pipeline.messages import Step, StepMessage
from libs.storage import crud
from libs.storage.db import get_engine, session_scope, upgrade_schema
from libs.storage.models import JobRow
from services.gateway import create_app
from tests.conftest import authorize
from tests.fhir.helpers import seed_reviewed_job
from tests.fhir.test_push import StubFhirServer, outcome, transaction_response
from tests.reporting.helpers import model_output

AIAST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
         "display": "Artificial Intelligence asserted"}
STALE_S = 0.3


def _dest(stub: StubFhirServer, name: str = "ehr", **kw) -> FhirDestination:  # noqa: ANN003
    return FhirDestination(name=name, base_url=stub.url, backoff_s=0, **kw)


def assert_pushed_bundle(bundle: dict, base_url: str, report_id: str | None = None) -> None:
    """A valid R4 transaction of PUTs whose AI-generated resources carry the AIAST label."""
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "transaction"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "Device" and kinds[-2:] == ["DiagnosticReport", "Provenance"] and "Observation" in kinds
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
        assert entry["fullUrl"] == f"{base_url}/{resource['resourceType']}/{resource['id']}"
        if resource["resourceType"] in ("DiagnosticReport", "Observation"):
            assert resource["meta"]["security"] == [AIAST], resource["id"]
    if report_id is not None:
        assert bundle["entry"][-2]["resource"]["id"] == report_id


# ---------------------------------------------------------------- store_sr, one destination


@pytest.fixture
def reviewed(tmp_path: Path) -> tuple[Settings, JobRow]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'cxr.db'}",
                        fhir_definitions_base_url="https://fhir.hospital.example/cxr")
    engine = get_engine(settings.sqlalchemy_url)
    upgrade_schema(engine)
    job_id, _, _ = seed_reviewed_job(engine, model_output({"Edema": 0.9, "Pleural Effusion": 0.8}))
    with session_scope(engine) as session:
        job = crud.get_job(session, job_id)
        session.expunge(job)
    return settings, job


def test_a_fhir_destination_gets_the_job_resources_as_a_transaction(reviewed) -> None:  # noqa: ANN001
    settings, job = reviewed
    with StubFhirServer([(200, transaction_response(3), {})]) as stub:
        detail = store_sr(_dest(stub), None, settings, job)  # the SR is not used
    assert detail == "pushed (HTTP 200, 1 attempt(s))"
    [bundle] = stub.received
    assert_pushed_bundle(bundle, stub.url, f"rpt-{job.id}")
    report = bundle["entry"][-2]["resource"]
    # the configured definitions base, not the default one
    assert report["extension"][0]["url"] == "https://fhir.hospital.example/cxr/StructureDefinition/requires-radiologist-review"
    assert codes.DEFAULT_BASE not in str(bundle)


def test_a_busy_server_is_retried_within_the_attempt(reviewed) -> None:  # noqa: ANN001
    settings, job = reviewed
    with StubFhirServer([(503, outcome("busy"), {}), (200, transaction_response(3), {})]) as stub:
        detail = store_sr(_dest(stub, retries=2), None, settings, job)
    assert detail == "pushed (HTTP 200, 2 attempt(s))"
    assert len(stub.received) == 2 and stub.received[0] == stub.received[1]


def test_a_rejection_is_unavailable_with_the_servers_diagnostics_and_not_retried(reviewed) -> None:  # noqa: ANN001
    settings, job = reviewed
    with StubFhirServer([(400, outcome("Observation.code: unknown system"), {})]) as stub:
        with pytest.raises(PacsUnavailable, match=r"'ehr' rejected the report with HTTP 400: Observation.code: "
                                                  r"unknown system"):
            store_sr(_dest(stub, retries=3), None, settings, job)
    assert len(stub.received) == 1


def test_a_server_that_stays_down_is_unavailable_after_the_retries(reviewed) -> None:  # noqa: ANN001
    settings, job = reviewed
    with StubFhirServer([(503, outcome("maintenance"), {})] * 3) as stub:
        with pytest.raises(PacsUnavailable, match=r"'ehr': FHIR push failed after 3 attempt\(s\): HTTP 503: maintenance"):
            store_sr(_dest(stub, retries=2), None, settings, job)
    assert len(stub.received) == 3


def test_push_url_and_destinations_settings() -> None:
    settings = Settings(fhir_push_url="https://fhir.example.org/r4", fhir_push_retries=1,
                        fhir_destinations=[{"name": "registry", "base_url": "http://registry/fhir", "store_results": False}])
    assert [(d.name, d.base_url, d.retries) for d in settings.fhir_destinations] == [
        ("registry", "http://registry/fhir", 3), ("fhir", "https://fhir.example.org/r4", 1)]
    assert [d.name for d in settings.result_servers] == ["fhir"]  # store_results false: manual pushes only
    with pytest.raises(ValueError, match="must be unique"):
        Settings(hl7_destinations=[{"name": "fhir", "host": "ris", "port": 2575}], fhir_push_url="http://x/fhir")
    with pytest.raises(ValueError):
        FhirDestination(name="bad", base_url="ftp://x")


# ---------------------------------------------------------------- the pipeline


def test_a_finished_report_is_pushed_by_the_pipeline_with_the_job_outcome(tmp_path: Path, random_bundle: Path,
                                                                          make_chest_dicom) -> None:  # noqa: ANN001
    from tests.gateway.helpers import stow
    from tests.pacs.test_orthanc import _wait_report, _wait_results

    with StubFhirServer([(503, outcome("busy"), {}), (200, transaction_response(3), {})]) as stub:
        settings = Settings(data_dir=tmp_path / "data", database_url=None, queue_backend="inprocess",
                            bundle_path=random_bundle, image_size=64, long_poll_max_s=60.0,
                            fhir_destinations=[_dest(stub, retries=1).model_dump()])
        study = make_chest_dicom()
        with TestClient(create_app(settings)) as client:
            authorize(client)
            assert stow(client, [study]).status_code == 200
            study_uid = str(pydicom.dcmread(io.BytesIO(study), stop_before_pixels=True).StudyInstanceUID)
            assert client.post(f"/api/v1/studies/{study_uid}/report", json={}).status_code == 202
            report = _wait_report(client, study_uid)
            results = _wait_results(client, report["job_id"])
    assert results["state"] == "stored", results
    assert results["servers"]["ehr"]["status"] == "stored"
    assert results["servers"]["ehr"]["detail"] == "pushed (HTTP 200, 2 attempt(s))"
    assert len(stub.received) == 2
    assert_pushed_bundle(stub.received[-1], stub.url, report["report_id"])


def _ctx(tmp_path: Path, bundle: Path, **extra) -> PipelineContext:  # noqa: ANN003
    return PipelineContext.from_settings(Settings(
        data_dir=tmp_path / "data", bundle_path=bundle, image_size=64, queue_backend="inprocess",
        database_url=f"sqlite:///{tmp_path / 'cxr.db'}", reconcile_stale_s=STALE_S, **extra))


def _start(ctx: PipelineContext, make_chest_dicom) -> tuple[str, InProcessDispatcher]:  # noqa: ANN001
    path = ctx.settings.data_dir / "incoming" / f"{uuid.uuid4()}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_chest_dicom())
    study = store_files(ctx, [path])
    with session_scope(ctx.engine) as s:
        job_id = crud.create_job(s, study, ReportRequest())[0].id
    dispatcher = InProcessDispatcher()
    dispatcher.send(Step.INGESTION, StepMessage(job_id=job_id))
    return job_id, dispatcher


def _results(ctx: PipelineContext, job_id: str) -> tuple[str, dict]:
    with session_scope(ctx.engine) as s:
        job = crud.get_job(s, job_id)
        return job.results_state, dict(job.results or {})


def test_failed_pushes_are_recorded_per_destination_and_retried_by_the_reconciler(
        tmp_path: Path, random_bundle: Path, make_chest_dicom) -> None:  # noqa: ANN001
    rejected = outcome("DiagnosticReport.code: not in the value set")
    with StubFhirServer([(503, outcome("busy"), {}), (200, transaction_response(3), {})]) as ehr, \
            StubFhirServer([(400, rejected, {})] * 2) as registry:
        ctx = _ctx(tmp_path, random_bundle, fhir_destinations=[
            _dest(ehr, "ehr", retries=0).model_dump(), _dest(registry, "registry", retries=0).model_dump()])
        job_id, dispatcher = _start(ctx, make_chest_dicom)
        drain(ctx, dispatcher)
        state, results = _results(ctx, job_id)
        assert state == "failed" and results["attempts"] == 1
        assert results["servers"]["ehr"]["status"] == "failed"
        assert "after 1 attempt(s): HTTP 503: busy" in results["servers"]["ehr"]["detail"]
        assert results["servers"]["registry"]["detail"] == (
            "FHIR server 'registry' rejected the report with HTTP 400: DiagnosticReport.code: not in the value set")

        time.sleep(STALE_S + 0.1)
        [action] = reconcile.reconcile_once(ctx, dispatcher)
        assert (action.job_id, action.kind, action.step) == (job_id, reconcile.RESULTS_REQUEUED, Step.QA)
        drain(ctx, dispatcher)
        state, results = _results(ctx, job_id)
        assert state == "partial" and results["attempts"] == 2
        assert results["servers"]["ehr"] == {**results["servers"]["ehr"], "status": "stored",
                                             "detail": "pushed (HTTP 200, 1 attempt(s))"}
        assert results["servers"]["registry"]["status"] == "failed"
        assert len(ehr.received) == 2 and len(registry.received) == 2
        assert ehr.received[0] == ehr.received[1]  # the same report again: PUTs, no duplicates
        assert_pushed_bundle(ehr.received[1], ehr.url)


def test_paused_automation_holds_the_push_until_resumed(tmp_path: Path, random_bundle: Path,
                                                        make_chest_dicom) -> None:  # noqa: ANN001
    with StubFhirServer([(200, transaction_response(3), {})]) as stub:
        ctx = _ctx(tmp_path, random_bundle, fhir_destinations=[_dest(stub).model_dump()])
        switch.pause(ctx.engine, "hallucination rate high", "ops", "test")
        job_id, dispatcher = _start(ctx, make_chest_dicom)
        drain(ctx, dispatcher)
        assert _results(ctx, job_id)[0] == "held"
        assert stub.received == []  # nothing left the platform
        _, changed, released = switch.resume(ctx.engine, "fixed", "ops", "test")
        assert changed and released == [job_id]
        dispatcher.send(Step.QA, StepMessage(job_id=job_id))
        drain(ctx, dispatcher)
        state, results = _results(ctx, job_id)
    assert state == "stored" and results["servers"]["ehr"]["status"] == "stored"
    assert len(stub.received) == 1
    assert_pushed_bundle(stub.received[0], stub.url)
