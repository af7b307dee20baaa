"""POST/GET /api/v1/reports/{report_id}/feedback: versions that never touch the draft, clear refusals,
and the quality metrics the feedback feeds."""

from __future__ import annotations

import Levenshtein
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from libs.auth import apikeys
from libs.domain.request import ReportRequest
from libs.storage import crud
from libs.storage.db import session_scope
from tests.gateway.helpers import assert_problem, reviewed_report


def _metrics(client, key: str) -> dict[tuple[str, tuple], float]:  # noqa: ANN001
    scraped = client.get("/metrics", headers={"X-API-Key": key})
    assert scraped.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(scraped.text) for s in f.samples}


def test_feedback_versions_refusals_and_quality_metrics(client, make_chest_dicom) -> None:  # noqa: ANN001
    engine = client.app.state.engine
    report = reviewed_report(client, make_chest_dicom)
    report_id = report["report_id"]
    url = f"/api/v1/reports/{report_id}/feedback"
    radiologist = {"X-API-Key": apikeys.create(engine, "dr test", "radiologist")[1]}
    ehr = {"X-API-Key": apikeys.create(engine, "an EHR", "ehr")[1]}
    ops = apikeys.create(engine, "ops", "ops")[1]
    assessed = {o["label"]: o["present"] for o in report["observations"]}
    flipped, call = next(iter(assessed.items()))

    assert client.post(url, json={"decision": "accepted"}, headers=ehr).status_code == 403  # EHRs read, never sign
    first = client.post(url, json={"decision": "accepted"}, headers=radiologist)
    assert first.status_code == 201, first.text
    assert (first.json()["version"], first.json()["edit_distance"]) == (1, None)
    assert first.json()["reviewer"].startswith("apikey:")

    signed = "No acute cardiopulmonary process.\n\nIMPRESSION: Normal chest."
    correction = {"observation": flipped, "present": not call}
    if not call:
        correction |= {"laterality": "left", "severity": "mild"}
    second = client.post(url, json={"decision": "edited", "final_text": signed, "corrections": [correction]},
                         headers=radiologist)
    assert second.status_code == 201, second.text
    draft = f"{report['findings_text'].strip()}\n\n{report['impression'].strip()}"
    assert second.json()["version"] == 2
    assert second.json()["edit_distance"] == Levenshtein.distance(draft, signed) > 0

    for body, slug in [
        ({"decision": "edited"}, "validation-error"),  # no final text
        ({"decision": "rejected"}, "validation-error"),  # no reason
        ({"decision": "accepted", "final_text": "x"}, "validation-error"),
        ({"decision": "accepted", "corrections": [{"observation": "Dragons", "present": True}]}, "validation-error"),
        ({"decision": "accepted", "corrections": [{"observation": flipped, "present": False, "laterality": "left"}]},
         "validation-error"),
        ({"decision": "accepted", "corrections": [correction, correction]}, "validation-error"),
    ]:
        assert_problem(client.post(url, json=body, headers=radiologist), 422, slug)
    assert_problem(client.post("/api/v1/reports/rpt-nope/feedback", json={"decision": "accepted"},
                               headers=radiologist), 404, "unknown-report")
    with session_scope(engine) as s:
        pending = crud.create_job(s, "1.2.3.4", ReportRequest())[0].id
    assert_problem(client.post(f"/api/v1/reports/rpt-{pending}/feedback", json={"decision": "accepted"},
                               headers=radiologist), 409, "report-not-ready")
    not_assessed = sorted({"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
                           "Fracture", "Lung Lesion", "Lung Opacity", "Pleural Effusion", "Pleural Other", "Pneumonia",
                           "Pneumothorax", "Support Devices"} - set(assessed))
    if not_assessed:
        assert_problem(client.post(url, json={"decision": "accepted", "corrections": [
            {"observation": not_assessed[0], "present": True}]}, headers=radiologist), 422, "not-assessed")

    versions = client.get(url, headers=radiologist)
    assert versions.status_code == 200
    assert [(v["version"], v["decision"]) for v in versions.json()] == [(1, "accepted"), (2, "edited")]
    again = client.get(f"/api/v1/studies/{report['study_id']}/report").json()
    assert (again["findings_text"], again["impression"]) == (report["findings_text"], report["impression"])

    got = _metrics(client, ops)
    assert got[("cxr_feedback_reports", (("decision", "edited"),))] == 1  # the latest version counts
    assert got[("cxr_feedback_reports", (("decision", "accepted"),))] == 0
    assert got[("cxr_feedback_edit_rate", ())] == 1.0 and got[("cxr_feedback_rejection_rate", ())] == 0.0
    assert got[("cxr_feedback_edit_distance_chars", ())] == second.json()["edit_distance"]
    wrong = "fp" if call else "fn"
    assert got[("cxr_head_calls", (("observation", flipped), ("outcome", wrong)))] == 1
    others = [label for label in assessed if label != flipped]
    for label in others:  # an edited report confirms the head's other calls
        right = "tp" if assessed[label] else "tn"
        assert got[("cxr_head_calls", (("observation", label), ("outcome", right)))] == 1
    with engine.connect() as conn:
        audit = conn.execute(text("SELECT entity_type, entity_id, action, http_status FROM audit_events "
                                  "WHERE operation = 'give_feedback' ORDER BY seq")).all()
    assert (("DiagnosticReport", report_id, "C", 201) in [tuple(r) for r in audit])
