"""AI-transparency labels (meta.security AIAST) and the project's own URLs from configuration
(CXR_FHIR_DEFINITIONS_BASE_URL): every extension, CodeSystem, NamingSystem and SearchParameter URL
of ours moves with the base; the standard ones never do; the default is unchanged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from libs.domain.labels import CHEXPERT_LABELS
from libs.fhir import codes, to_json
from libs.fhir.audit import audit_event
from libs.fhir.builder import build_resources, transaction_bundle
from libs.fhir.capability import capability_statement
from libs.storage.models import AuditEventRow
from services.gateway import create_app
from tests.conftest import authorize
from tests.fhir.helpers import seed_reviewed_job
from tests.fhir.test_resources import source
from tests.reporting.helpers import model_output

AIAST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
         "display": "Artificial Intelligence asserted"}
HOSPITAL = "https://fhir.hospital.example/cxr"
STANDARD = ("http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org", "http://terminology.hl7.org/",
            "http://hl7.org/fhir/", "http://dicom.nema.org/", "urn:dicom:uid", "urn:ietf:rfc:3986")


def _urls(node: Any, key: str | None = None, inside_extension: bool = False) -> Iterator[tuple[str, str]]:
    """(kind, URL) of every extension url, system and definition in a JSON document (a complex
    extension's parts have relative urls: "x0", "instance")."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and (k == "system" or k == "definition"):
                yield k, v
            elif isinstance(v, str) and k == "url" and key == "extension" and not inside_extension:
                yield "extension", v
            else:
                yield from _urls(v, k, inside_extension or (key == "extension" and k == "extension"))
    elif isinstance(node, list):
        for item in node:
            yield from _urls(item, key, inside_extension)


def _ours(urls: list[tuple[str, str]]) -> list[str]:
    return [u for _, u in urls if not u.startswith(STANDARD)]


def test_every_ai_generated_resource_carries_the_aiast_label() -> None:
    res = build_resources(source())
    report = to_json(res.diagnostic_report)
    assert report["meta"] == {"versionId": "1", "security": [AIAST]}  # the draft is version 1
    assert res.observations and all(to_json(o)["meta"] == {"security": [AIAST]} for o in res.observations)
    # The Device (the model) and the Provenance (who authored what) assert nothing clinical.
    assert "meta" not in to_json(res.device) and "meta" not in to_json(res.provenance)
    bundle = to_json(transaction_bundle(res, "http://fhir.example.org/r4"))
    labelled = [e["resource"]["id"] for e in bundle["entry"] if e["resource"].get("meta", {}).get("security") == [AIAST]]
    assert labelled == [*(o.id for o in res.observations), res.diagnostic_report.id]
    for entry in bundle["entry"]:  # validates as R4 (R4B models) with the label
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    assert codes.AI_ASSERTED.coding() == AIAST


def test_the_default_definitions_are_unchanged() -> None:
    defs = codes.Definitions.of(None)
    assert defs is codes.DEFAULT and defs.base == "https://cxr-report.dev/fhir"
    assert codes.Definitions.of(type("S", (), {"fhir_definitions_base_url": "https://cxr-report.dev/fhir/"})()) is codes.DEFAULT
    assert codes.EXT_REQUIRES_REVIEW == "https://cxr-report.dev/fhir/StructureDefinition/requires-radiologist-review"
    assert codes.EXT_BOUNDING_BOX == "https://cxr-report.dev/fhir/StructureDefinition/bounding-box"
    assert codes.CHEXPERT_SYSTEM == "https://cxr-report.dev/fhir/CodeSystem/chexpert-observation"
    assert codes.CXR_SYSTEM == "https://cxr-report.dev/fhir/CodeSystem/cxr-report"
    assert codes.SUBJECT_SYSTEM == "https://cxr-report.dev/fhir/NamingSystem/study-pseudonym"
    assert codes.SEARCH_IMAGING_STUDY == "https://cxr-report.dev/fhir/SearchParameter/DiagnosticReport-imaging-study"
    res = build_resources(source())
    ours = _ours([u for r in res.all() for u in _urls(to_json(r))])
    assert ours and all(u.startswith("https://cxr-report.dev/fhir/") for u in ours)
    assert build_resources(source(), codes.DEFAULT).diagnostic_report.extension[0].url == codes.EXT_REQUIRES_REVIEW


def _row() -> AuditEventRow:
    return AuditEventRow(seq=7, at=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc), agent_type="apikey",
                         agent_id="ehr", action="R", outcome="0", entity_type="DiagnosticReport", entity_id="rpt-x",
                         operation="read", source_address="10.0.0.1", http_status=200, detail=None,
                         prev_hash="0" * 64, hash="1" * 64)


def test_a_configured_base_is_in_every_project_url_and_the_standard_ones_stay() -> None:
    from libs.core.config import Settings

    defs = codes.Definitions.of(Settings(fhir_definitions_base_url=HOSPITAL + "/"))
    assert defs.base == HOSPITAL
    res = build_resources(source(), defs)
    documents = [to_json(r) for r in res.all()]
    documents += [capability_statement("http://h/fhir", defs=defs), audit_event(_row(), defs)]
    urls = [u for d in documents for u in _urls(d)]
    ours = _ours(urls)
    assert "https://cxr-report.dev" not in str(documents)
    assert ours and all(u.startswith(HOSPITAL + "/") for u in ours), ours
    expected = {f"{HOSPITAL}/StructureDefinition/{n}" for n in
                ("requires-radiologist-review", "review-reason", "not-assessed", "bounding-box", "report-template",
                 "audit-chain-hash")}
    expected |= {f"{HOSPITAL}/CodeSystem/chexpert-observation", f"{HOSPITAL}/CodeSystem/cxr-report",
                 f"{HOSPITAL}/NamingSystem/study-pseudonym", f"{HOSPITAL}/NamingSystem/client",
                 f"{HOSPITAL}/NamingSystem/entity", f"{HOSPITAL}/SearchParameter/DiagnosticReport-imaging-study"}
    assert set(ours) == expected  # every project-defined URL is emitted somewhere, all under the base
    # standard systems are untouched
    systems = {u for kind, u in urls if kind == "system"}
    assert {codes.SNOMED, codes.LOINC, codes.UCUM, codes.V3_INTERPRETATION, codes.V2_0074} <= systems
    assert defs.chexpert_code(CHEXPERT_LABELS[2]).system == f"{HOSPITAL}/CodeSystem/chexpert-observation"
    for document in documents:
        get_fhir_model_class(document["resourceType"]).model_validate(document)


def test_the_definitions_base_must_be_a_uri() -> None:
    from libs.core.config import Settings

    with pytest.raises(ValueError):
        Settings(fhir_definitions_base_url="cxr report")
    with pytest.raises(ValueError):
        codes.Definitions("not a url")


def test_the_fhir_facade_uses_the_configured_base(make_settings) -> None:  # noqa: ANN001
    with TestClient(create_app(make_settings(fhir_definitions_base_url=HOSPITAL))) as client:
        authorize(client)
        job_id, study_uid, _ = seed_reviewed_job(client.app.state.engine, model_output({"Edema": 0.9}))
        report = client.get(f"/fhir/DiagnosticReport/rpt-{job_id}").json()
        assert report["meta"]["security"] == [AIAST]
        assert report["subject"]["identifier"]["system"] == f"{HOSPITAL}/NamingSystem/study-pseudonym"
        assert all(e["url"].startswith(HOSPITAL) for e in report["extension"])
        pseudonym = report["subject"]["identifier"]["value"]
        found = client.get("/fhir/DiagnosticReport",
                           params={"subject:identifier": f"{HOSPITAL}/NamingSystem/study-pseudonym|{pseudonym}"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [f"rpt-{job_id}"]
        old = client.get("/fhir/DiagnosticReport",
                         params={"subject:identifier": f"{codes.SUBJECT_SYSTEM}|{pseudonym}"}).json()
        assert old.get("entry") is None  # another system names another subject
        metadata = client.get("/fhir/metadata").json()
        params = {p["name"]: p for p in metadata["rest"][0]["resource"][0]["searchParam"]}
        assert params["imaging-study"]["definition"] == f"{HOSPITAL}/SearchParameter/DiagnosticReport-imaging-study"
