"""The /fhir endpoints: reads, search, CapabilityStatement, and OperationOutcome for every error."""

from __future__ import annotations

import base64
import io

import pydicom
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from libs.domain.job import JobState
from libs.domain.study import View
from libs.fhir.builder import study_pseudonym
from services.gateway import create_app
from tests.fhir.helpers import FHIR_JSON, assert_outcome, seed_reviewed_job
from tests.reporting.helpers import model_output
from tests.conftest import authorize


def fhir_json(response, status: int = 200) -> dict:  # noqa: ANN001
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    return response.json()


def seed(client: TestClient, probs=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
    out = model_output(probs if probs is not None else {"Pneumothorax": 0.96, "Edema": 0.7},
                       boxes={"Pneumothorax": [650, 80, 950, 420]}, name="cxr-ref", version="2.1.3")
    return seed_reviewed_job(client.app.state.engine, out, **kwargs)


def test_read_diagnostic_report_observation_provenance_device(client: TestClient) -> None:
    job_id, study_uid, instance_uid = seed(client, views=(View.PA, View.LATERAL))
    dr = fhir_json(client.get(f"/fhir/DiagnosticReport/rpt-{job_id}"))
    DiagnosticReport.model_validate(dr)
    assert dr["status"] == "preliminary"
    assert dr["code"]["coding"][0]["code"] == "36643-5"  # a PA and a lateral were received
    assert dr["imagingStudy"][0]["identifier"]["value"] == f"urn:oid:{study_uid}"
    assert dr["conclusion"] == "Left pneumothorax; pulmonary edema."
    text = base64.b64decode(dr["presentedForm"][0]["data"]).decode()
    assert "Left pneumothorax (confidence 0.96)." in text

    # positives first (critical first), then an Observation for each assessed negative (11 here)
    [first, second, *negatives] = [r["reference"] for r in dr["result"]]
    assert len(negatives) == 11
    negative = fhir_json(client.get(f"/fhir/{negatives[0]}"))
    Observation.model_validate(negative)
    assert negative["interpretation"][0]["coding"][0]["code"] == "NEG"
    assert negative["id"].endswith("-o01")  # Enlarged Cardiomediastinum: the first negative in CheXpert order
    assert negative["valueQuantity"]["value"] == 0.05 and "valueCodeableConcept" not in negative
    obs = fhir_json(client.get(f"/fhir/{first}"))
    Observation.model_validate(obs)
    assert obs["code"]["coding"][0]["code"] == "36118008"
    assert obs["bodySite"]["coding"][0]["code"] == "7771000"  # box on the image's right half: patient's left
    assert {e["url"]: e for e in obs["extension"][0]["extension"]}["instance"]["valueOid"] == f"urn:oid:{instance_uid}"
    assert fhir_json(client.get(f"/fhir/{second}"))["code"]["coding"][0]["code"] == "19242006"

    prov = fhir_json(client.get(f"/fhir/Provenance/rpt-{job_id}-prov"))
    device_ref = prov["agent"][0]["who"]["reference"]
    assert device_ref == obs["device"]["reference"] == "Device/model-cxr-ref-2.1.3"
    device = fhir_json(client.get(f"/fhir/{device_ref}"))
    assert device["version"] == [{"value": "2.1.3"}]


def test_single_frontal_view_is_single_view_code(client: TestClient) -> None:
    job_id, _, _ = seed(client, views=(View.PA,))
    assert fhir_json(client.get(f"/fhir/DiagnosticReport/rpt-{job_id}"))["code"]["coding"][0]["code"] == "36554-4"


def test_search_by_subject_and_imaging_study(client: TestClient) -> None:
    job_a, study_a, _ = seed(client)
    job_b, study_b, _ = seed(client, probs={})
    job_a2, _, _ = seed(client, probs={"Edema": 0.9}, study_uid=study_a)
    seed(client, study_uid=study_b, stop_at=JobState.FORMATTED)  # not reviewed: never listed

    def ids(bundle: dict) -> list[str]:
        Bundle.model_validate(bundle)
        assert bundle["type"] == "searchset" and bundle["total"] == len([e for e in bundle.get("entry", [])
                                                                          if e["search"]["mode"] == "match"])
        return [e["resource"]["id"] for e in bundle.get("entry", [])]

    pseudo = study_pseudonym(study_a)
    by_subject = fhir_json(client.get("/fhir/DiagnosticReport", params={"subject": pseudo}))
    assert sorted(ids(by_subject)) == sorted([f"rpt-{job_a}", f"rpt-{job_a2}"])
    assert by_subject["link"][0]["url"].endswith(f"/fhir/DiagnosticReport?subject={pseudo}")
    assert ids(fhir_json(client.get("/fhir/DiagnosticReport", params={"subject": f"Patient/{pseudo}"}))) \
        == ids(by_subject)
    ident = f"https://cxr-report.dev/fhir/NamingSystem/study-pseudonym|{pseudo}"
    assert ids(fhir_json(client.get("/fhir/DiagnosticReport", params={"subject:identifier": ident}))) \
        == ids(by_subject)
    assert ids(fhir_json(client.get("/fhir/DiagnosticReport", params={"imaging-study": study_b}))) == [f"rpt-{job_b}"]
    assert ids(fhir_json(client.get("/fhir/DiagnosticReport",
                                    params={"imaging-study": f"urn:oid:{study_b}", "subject": pseudo}))) == []
    assert ids(fhir_json(client.get("/fhir/DiagnosticReport", params={"subject": "Patient/someone"}))) == []
    assert len(ids(fhir_json(client.get("/fhir/DiagnosticReport")))) == 3
    assert len(ids(fhir_json(client.get("/fhir/DiagnosticReport", params={"_count": 1})))) == 1

    included = fhir_json(client.get("/fhir/DiagnosticReport",
                                    params={"imaging-study": study_a, "_include": "DiagnosticReport:result"}))
    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in included["entry"]]
    assert modes.count(("DiagnosticReport", "match")) == 2 and ("Observation", "include") in modes
    assert included["total"] == 2


def test_search_parameter_handling(client: TestClient) -> None:
    seed(client)
    # Unknown parameters are ignored (FHIR's lenient default) unless the client asks for strict handling.
    assert fhir_json(client.get("/fhir/DiagnosticReport", params={"status": "final"}))["total"] == 1
    r = client.get("/fhir/DiagnosticReport", params={"status": "final"}, headers={"Prefer": "handling=strict"})
    assert "status" in assert_outcome(r, 400, "not-supported")["issue"][0]["diagnostics"]
    assert_outcome(client.get("/fhir/DiagnosticReport", params={"_count": "many"}), 400, "invalid")
    assert_outcome(client.get("/fhir/DiagnosticReport", params={"_format": "xml"}), 406, "not-supported")
    assert fhir_json(client.get("/fhir/metadata", params={"_format": "application/fhir+json"}))


def test_errors_under_fhir_are_operation_outcomes(client: TestClient) -> None:
    job_id, _, _ = seed(client)
    running, _, _ = seed(client, stop_at=JobState.INFERRED)
    assert "no DiagnosticReport" in assert_outcome(client.get("/fhir/DiagnosticReport/rpt-nope"), 404,
                                                   "not-found")["issue"][0]["diagnostics"]
    assert_outcome(client.get("/fhir/DiagnosticReport/whatever"), 404, "not-found")
    body = assert_outcome(client.get(f"/fhir/DiagnosticReport/rpt-{running}"), 404, "not-found")
    assert "not reviewed yet" in body["issue"][0]["diagnostics"]
    blind, _, _ = seed_reviewed_job(client.app.state.engine, model_output({"Edema": 0.9}, not_assessed={"Consolidation"}))
    # an assessed negative is an Observation; an observation the model does not assess is not
    assert fhir_json(client.get(f"/fhir/Observation/rpt-{job_id}-o06"))["interpretation"][0]["coding"][0]["code"] == "NEG"
    body = assert_outcome(client.get(f"/fhir/Observation/rpt-{blind}-o06"), 404)
    assert "does not assess Consolidation" in body["issue"][0]["diagnostics"]
    assert_outcome(client.get("/fhir/Observation/xyz"), 404)
    assert_outcome(client.get("/fhir/Provenance/xyz"), 404)
    assert_outcome(client.get("/fhir/Device/model-none"), 404)
    assert_outcome(client.get("/fhir/Patient/123"), 404, "not-found")
    assert_outcome(client.get("/fhir"), 404)
    r = client.post(f"/fhir/DiagnosticReport/rpt-{job_id}", json={})
    assert_outcome(r, 405, "not-supported")
    assert r.headers["allow"] == "GET"
    assert_outcome(client.delete("/fhir/metadata"), 405)
    # The rest of the API keeps its problem+json.
    assert client.get("/nowhere").headers["content-type"].startswith("application/problem+json")


def test_failed_job_reason_is_in_the_outcome(client: TestClient) -> None:
    from libs.storage import crud
    from libs.storage.db import session_scope

    job_id, _, _ = seed(client, stop_at=JobState.PREPROCESSED)
    with session_scope(client.app.state.engine) as session:
        crud.fail(session, job_id, "no frontal (PA/AP) image in the study")
    body = assert_outcome(client.get(f"/fhir/DiagnosticReport/rpt-{job_id}"), 404)
    assert "failed: no frontal (PA/AP) image in the study" in body["issue"][0]["diagnostics"]


def test_capability_statement(client: TestClient) -> None:
    cs = fhir_json(client.get("/fhir/metadata"))
    CapabilityStatement.model_validate(cs)
    assert cs["fhirVersion"] == "4.0.1" and cs["format"] == ["json"] and cs["kind"] == "instance"
    resources = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert set(resources) == {"DiagnosticReport", "Observation", "Device", "Provenance", "AuditEvent"}
    assert cs["rest"][0]["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert {p["name"] for p in resources["DiagnosticReport"]["searchParam"]} == {"subject", "imaging-study"}
    assert cs["implementation"]["url"] == "http://testserver/fhir"


def test_openapi_documents_fhir_json_for_every_fhir_response(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = {p: ops for p, ops in spec["paths"].items() if p.startswith("/fhir")}
    assert set(paths) == {"/fhir/metadata", "/fhir/DiagnosticReport", "/fhir/DiagnosticReport/{id}",
                          "/fhir/DiagnosticReport/{id}/_history/{vid}",
                          "/fhir/Observation/{id}", "/fhir/Provenance/{id}", "/fhir/Device/{id}",
                          "/fhir/AuditEvent", "/fhir/AuditEvent/{id}"}
    for path, ops in paths.items():
        assert list(ops) == ["get"], path
        for status, response in ops["get"]["responses"].items():
            assert list(response["content"]) == [FHIR_JSON], (path, status)
    assert [p["name"] for p in paths["/fhir/DiagnosticReport/{id}"]["get"]["parameters"]] == ["id"]
    assert "imaging-study" in [p["name"] for p in paths["/fhir/DiagnosticReport"]["get"]["parameters"]]


def test_end_to_end_from_stow_to_fhir(make_settings, make_chest_dicom) -> None:  # noqa: ANN001
    """The real pipeline (random TEST bundle, in-process queue, SQLite): the REST report and the FHIR
    DiagnosticReport describe the same draft."""
    from tests.gateway.helpers import stow

    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as client:
        authorize(client)
        dicom = make_chest_dicom(view="PA")
        assert stow(client, [dicom]).status_code == 200
        study = pydicom.dcmread(io.BytesIO(dicom)).StudyInstanceUID
        assert client.post(f"/api/v1/studies/{study}/report", json={"report_template": "structured"}).status_code == 202
        report = client.get(f"/api/v1/studies/{study}/report", params={"wait": 30}).json()
        assert report["status"] == "reviewed"
        dr = fhir_json(client.get(f"/fhir/DiagnosticReport/{report['report_id']}"))
        assert dr["status"] == "preliminary"
        assert dr["conclusion"] == report["impression"]
        assert len(dr.get("result", [])) == len(report["observations"]) >= len(report["findings"])
        requires = next(e for e in dr["extension"] if e["url"].endswith("requires-radiologist-review"))
        assert requires["valueBoolean"] == report["requires_radiologist_review"]
        text = base64.b64decode(dr["presentedForm"][0]["data"]).decode()
        assert report["findings_text"] in text and "STRUCTURED" in text
        found = fhir_json(client.get("/fhir/DiagnosticReport", params={"imaging-study": study}))
        assert [e["resource"]["id"] for e in found["entry"]] == [report["report_id"]]
        # QA's per-study counts are stored with the report, for monitoring.
        from libs.storage import crud
        from libs.storage.db import session_scope

        with session_scope(client.app.state.engine) as session:
            stored = crud.get_job(session, report["job_id"]).report
        assert stored["template"] == "structured"
        assert stored["qa"]["hallucination_count"] == len(stored["qa"]["hallucinations"])
        assert stored["qa"]["omission_count"] == len(stored["qa"]["omissions"])


@pytest.mark.parametrize("template", ["standard", "concise"])
def test_search_on_postgresql(make_settings, pg_url: str, template: str) -> None:  # noqa: ANN001
    with TestClient(create_app(make_settings(database_url=pg_url)), raise_server_exceptions=False) as client:
        authorize(client)
        job_id, study, _ = seed(client, template=template)
        bundle = fhir_json(client.get("/fhir/DiagnosticReport", params={"subject": study_pseudonym(study)}))
        assert [e["resource"]["id"] for e in bundle["entry"]] == [f"rpt-{job_id}"]
        assert fhir_json(client.get(f"/fhir/DiagnosticReport/rpt-{job_id}"))["extension"][-1]["valueString"] == template
