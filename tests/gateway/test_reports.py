"""Report requests and results: happy path, idempotency, rejections that leave no job behind."""

from __future__ import annotations

import time

import pytest
from pydicom.uid import generate_uid

from libs.pipeline.messages import StepMessage
from services.gateway.publish import PublishFailed
from tests.gateway.helpers import assert_problem, count_rows, stow


def _store_study(client, make_chest_dicom, *, real: bool = False, view: str = "PA") -> tuple[str, str, str]:  # noqa: ANN001
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    r = stow(client, [make_chest_dicom(study_uid=study, series_uid=series, sop_uid=sop, real=real, view=view)])
    assert r.status_code == 200, r.text
    return study, series, sop


class Recorder:
    """A publisher that keeps messages instead of running them (the job stays `received`)."""

    def __init__(self, fail: bool = False) -> None:
        self.messages: list[StepMessage] = []
        self.fail = fail

    def publish(self, message: StepMessage) -> None:
        if self.fail:
            raise PublishFailed("the job queue is unreachable (test)")
        self.messages.append(message)

    def close(self) -> None:
        pass


def test_happy_path_real_chest_cr(client, make_chest_dicom) -> None:  # noqa: ANN001
    study, series, sop = _store_study(client, make_chest_dicom, real=True)
    request = {
        "study_id": study,
        "images": [{"series_uid": series, "instance_uid": sop, "view": "PA"}],
        "clinical_context": {"age": 67, "sex": "M", "indication": "Shortness of breath",
                             "prior_studies": ["2024-01-15", "2023-06-22"]},
        "report_template": "standard",
        "confidence_threshold": 0.85,
    }
    r = client.post(f"/api/v1/studies/{study}/report", json=request)
    assert r.status_code == 202, r.text
    accepted = r.json()
    job_id = accepted["job_id"]
    assert accepted["study_id"] == study and accepted["status"] == "received"
    assert r.headers["location"] == f"/api/v1/studies/{study}/report"
    assert accepted["links"] == {"report": f"/api/v1/studies/{study}/report", "job": f"/api/v1/jobs/{job_id}"}

    r = client.get(f"/api/v1/studies/{study}/report", params={"wait": 60})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["status"] == "reviewed", report
    assert report["job_id"] == job_id and report["study_id"] == study
    assert report["model_version"] == "0.0.0-test"
    assert report["report_id"]
    assert isinstance(report["findings"], list)
    for finding in report["findings"]:
        assert set(finding) >= {"finding", "confidence", "severity", "bounding_box", "is_critical"}
        assert 0.0 <= finding["confidence"] <= 1.0
    assert isinstance(report["impression"], str) and report["impression"]
    assert isinstance(report["recommendations"], str)
    assert isinstance(report["findings_text"], str)
    assert isinstance(report["requires_radiologist_review"], bool)
    assert isinstance(report["review_reasons"], list)
    assert isinstance(report["not_assessed"], list)
    # every assessed observation is in the response, negatives too, with the call its probability gives
    observations = report["observations"]
    assert len(observations) + len(report["not_assessed"]) == 13  # the 14 CheXpert labels less "No Finding"
    for obs in observations:
        assert set(obs) == {"label", "probability", "threshold", "present", "is_critical", "bounding_box"}
        assert obs["label"] not in report["not_assessed"]
        assert 0.0 <= obs["probability"] <= 1.0 and 0.0 <= obs["threshold"] <= 1.0
        assert obs["bounding_box"] is None or obs["present"]
    assert {f["label"] for f in report["findings"]} == {o["label"] for o in observations if o["present"]}
    assert report["processing_time_ms"] >= 0
    assert report["report_status"] == "preliminary"
    assert "error" not in report

    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "reviewed" and job["error"] is None
    assert list(job["history"]) == ["received", "preprocessed", "inferred", "formatted", "reviewed"]
    assert job["study_id"] == study


def test_same_request_twice_makes_one_job(client, make_chest_dicom) -> None:  # noqa: ANN001
    client.app.state.publisher = recorder = Recorder()
    study, _, _ = _store_study(client, make_chest_dicom)
    first = client.post(f"/api/v1/studies/{study}/report", json={"report_template": "standard"})
    second = client.post(f"/api/v1/studies/{study}/report", json={"report_template": "standard"})
    assert first.status_code == 202 and second.status_code == 200, second.text
    assert first.json()["job_id"] == second.json()["job_id"]
    assert second.headers["location"] == f"/api/v1/studies/{study}/report"
    assert count_rows(client.app)["jobs"] == 1
    assert [m.job_id for m in recorder.messages] == [first.json()["job_id"]]  # published once


def test_idempotency_key(client, make_chest_dicom) -> None:  # noqa: ANN001
    client.app.state.publisher = Recorder()
    study, _, _ = _store_study(client, make_chest_dicom)
    url = f"/api/v1/studies/{study}/report"
    key = {"Idempotency-Key": "ehr-order-42"}
    first = client.post(url, json={"priority": "stat"}, headers=key)
    again = client.post(url, json={"priority": "stat"}, headers=key)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["job_id"] == again.json()["job_id"]

    conflict = client.post(url, json={"priority": "routine"}, headers=key)
    assert "different request" in assert_problem(conflict, 422, "idempotency-conflict")["detail"]
    assert count_rows(client.app)["jobs"] == 1

    # Another key is another job, even for the same body.
    other = client.post(url, json={"priority": "stat"}, headers={"Idempotency-Key": "ehr-order-43"})
    assert other.status_code == 202 and other.json()["job_id"] != first.json()["job_id"]
    assert count_rows(client.app)["jobs"] == 2

    assert_problem(client.post(url, json={}, headers={"Idempotency-Key": "x" * 101}), 400, "invalid-idempotency-key")
    assert count_rows(client.app)["jobs"] == 2


def test_unknown_study_and_instances_create_no_job(client, make_chest_dicom) -> None:  # noqa: ANN001
    study, series, sop = _store_study(client, make_chest_dicom)
    unknown = generate_uid()
    body = assert_problem(client.post(f"/api/v1/studies/{unknown}/report", json={}), 404, "unknown-study")
    assert unknown in body["detail"]

    missing = generate_uid()
    r = client.post(f"/api/v1/studies/{study}/report",
                    json={"images": [{"series_uid": series, "instance_uid": sop},
                                     {"series_uid": series, "instance_uid": missing}]})
    assert missing in assert_problem(r, 404, "unknown-instance")["detail"]

    # The instance exists, but not under that series.
    r = client.post(f"/api/v1/studies/{study}/report",
                    json={"images": [{"series_uid": generate_uid(), "instance_uid": sop}]})
    assert_problem(r, 404, "unknown-instance")
    assert count_rows(client.app)["jobs"] == 0


@pytest.mark.parametrize(
    ("body", "status", "slug", "detail"),
    [
        ('{"report_template": "standard",', 400, "malformed-json", "not valid JSON"),
        ('{"confidence_threshold": 1.5}', 422, "validation-error", "body.confidence_threshold"),
        ('{"images": [{"series_uid": "1.2"}]}', 422, "validation-error", "body.images.0.instance_uid"),
        ('{"unexpected": 1}', 422, "validation-error", "body.unexpected"),
        ('{"report_template": "fancy"}', 422, "unknown-template", "fancy"),
        ('{"report_template": "../etc"}', 422, "validation-error", "body.report_template"),
        ('{"study_id": "1.2.3.4"}', 422, "study-mismatch", "differs"),
        ('[1, 2]', 422, "validation-error", "body"),
    ],
)
def test_bad_requests_create_no_job(client, make_chest_dicom, body: str, status: int, slug: str, detail: str) -> None:  # noqa: ANN001
    study, _, _ = _store_study(client, make_chest_dicom)
    r = client.post(f"/api/v1/studies/{study}/report", content=body, headers={"Content-Type": "application/json"})
    problem = assert_problem(r, status, slug)
    assert detail in problem["detail"], problem
    assert count_rows(client.app)["jobs"] == 0


def test_non_json_body_is_415_and_invalid_path_uid_is_422(client, make_chest_dicom) -> None:  # noqa: ANN001
    study, _, _ = _store_study(client, make_chest_dicom)
    r = client.post(f"/api/v1/studies/{study}/report", content=b"<xml/>", headers={"Content-Type": "text/xml"})
    assert_problem(r, 415)
    assert_problem(client.post("/api/v1/studies/abc/report", json={}), 422, "invalid-uid")
    assert count_rows(client.app)["jobs"] == 0


def test_empty_body_uses_defaults(client, make_chest_dicom) -> None:  # noqa: ANN001
    client.app.state.publisher = Recorder()
    study, _, _ = _store_study(client, make_chest_dicom)
    r = client.post(f"/api/v1/studies/{study}/report")
    assert r.status_code == 202, r.text


def test_publish_failure_is_503_and_keeps_no_job(client, make_chest_dicom) -> None:  # noqa: ANN001
    study, _, _ = _store_study(client, make_chest_dicom)
    client.app.state.publisher = Recorder(fail=True)
    r = client.post(f"/api/v1/studies/{study}/report", json={}, headers={"Idempotency-Key": "k1"})
    assert_problem(r, 503, "queue-unavailable")
    assert r.headers["retry-after"] == "5"
    assert count_rows(client.app)["jobs"] == 0
    assert_problem(client.get(f"/api/v1/studies/{study}/report"), 404, "no-report")

    # The client's retry, once the queue is back, creates and publishes the job.
    client.app.state.publisher = recorder = Recorder()
    r = client.post(f"/api/v1/studies/{study}/report", json={}, headers={"Idempotency-Key": "k1"})
    assert r.status_code == 202
    assert [m.job_id for m in recorder.messages] == [r.json()["job_id"]]


def test_report_while_running_is_202_and_wait_is_capped(client, make_chest_dicom) -> None:  # noqa: ANN001
    client.app.state.publisher = Recorder()  # nothing runs the job
    client.app.state.settings = client.app.state.settings.model_copy(update={"long_poll_max_s": 0.5})
    study, _, _ = _store_study(client, make_chest_dicom)
    job_id = client.post(f"/api/v1/studies/{study}/report", json={"priority": "stat"}).json()["job_id"]

    r = client.get(f"/api/v1/studies/{study}/report")
    assert r.status_code == 202
    assert r.headers["retry-after"] == "1"
    assert r.json() == {"status": "received", "job_id": job_id, "study_id": study,
                        "links": {"report": f"/api/v1/studies/{study}/report", "job": f"/api/v1/jobs/{job_id}"}}

    start = time.monotonic()
    r = client.get(f"/api/v1/studies/{study}/report", params={"wait": 30})
    assert r.status_code == 202
    assert 0.4 <= time.monotonic() - start < 5

    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "received" and job["priority"] == "stat" and list(job["history"]) == ["received"]
    assert_problem(client.get(f"/api/v1/studies/{study}/report", params={"wait": -1}), 422)


def test_failed_job_reports_its_reason(client, make_chest_dicom) -> None:  # noqa: ANN001
    # A lateral view alone cannot be read: the ingestion step fails the job with the reason.
    study, _, _ = _store_study(client, make_chest_dicom, view="LATERAL")
    job_id = client.post(f"/api/v1/studies/{study}/report", json={}).json()["job_id"]
    r = client.get(f"/api/v1/studies/{study}/report", params={"wait": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "failed" and body["job_id"] == job_id
    assert "frontal" in body["error"]
    assert "findings" not in body
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and "frontal" in job["error"]
    assert list(job["history"]) == ["received", "failed"]


def test_unknown_report_and_job_are_404(client) -> None:  # noqa: ANN001
    assert_problem(client.get(f"/api/v1/studies/{generate_uid()}/report"), 404, "unknown-study")
    assert_problem(client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000"), 404, "unknown-job")
