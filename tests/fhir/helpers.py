"""Reviewed jobs made directly in the database (deterministic reports), and FHIR response checks."""

from __future__ import annotations

import datetime as dt
import uuid

from pydicom.uid import generate_uid
from sqlalchemy import Engine

from libs.domain.job import JobState
from libs.domain.model_output import ModelOutput
from libs.domain.request import ImageRef, ReportRequest
from libs.domain.study import Instance, View
from libs.qa.laterality import ImageInfo
from libs.qa.review import review_report
from libs.reporting.render import render_report
from libs.storage import crud
from libs.storage.db import session_scope

FHIR_JSON = "application/fhir+json"


def seed_reviewed_job(
    engine: Engine,
    output: ModelOutput,
    *,
    views: tuple[View, ...] = (View.PA,),
    template: str = "standard",
    study_uid: str | None = None,
    width: int = 1000,
    stop_at: JobState = JobState.REVIEWED,
) -> tuple[str, str, str]:
    """(job_id, study_uid, frontal instance uid) of a job taken through the states with a real report."""
    study_uid = study_uid or generate_uid()
    series = generate_uid()
    instances = [Instance(study_uid=study_uid, series_uid=series, sop_instance_uid=generate_uid(), modality="DX",
                          view=view, rows=800, columns=width, path=f"/nonexistent/{i}.dcm")
                 for i, view in enumerate(views)]
    frontal = next(i for i in instances if i.view.is_frontal)
    request = ReportRequest(report_template=template, images=[
        ImageRef(series_uid=series, instance_uid=i.sop_instance_uid) for i in instances])
    with session_scope(engine) as session:
        for inst in instances:
            crud.store_instance(session, inst, 1000)
        job, _ = crud.create_job(session, study_uid, request, idempotency_key=str(uuid.uuid4()))
        job_id = job.id
    image = ImageInfo(width=width, view=frontal.view)
    report = render_report(job_id, study_uid, output, request, image=image)
    verdict = review_report(report, output, request, image=image)
    report = report.model_copy(update={"requires_radiologist_review": verdict.requires_review,
                                       "review_reasons": verdict.reasons, "qa": verdict.summary(),
                                       "processing_time_ms": 1234})
    geometry = {"source_rows": 800, "source_cols": width, "scale": 0.064, "pad_top": 6, "pad_left": 0, "size": 64}
    steps = [
        (JobState.RECEIVED, JobState.PREPROCESSED,
         {"instance_uid": frontal.sop_instance_uid, "image_path": "/nonexistent.npy", "geometry": geometry}),
        (JobState.PREPROCESSED, JobState.INFERRED, {"model_output": output.model_dump(mode="json")}),
        (JobState.INFERRED, JobState.FORMATTED, {"report": report.model_dump(mode="json")}),
        (JobState.FORMATTED, JobState.REVIEWED, {"report": report.model_dump(mode="json"),
                                                 "requires_review": verdict.requires_review,
                                                 "review_reasons": verdict.reasons}),
    ]
    with session_scope(engine) as session:
        for current, target, fields in steps:
            if current is stop_at:
                break
            assert crud.advance(session, job_id, current, target, **fields)
    return job_id, study_uid, frontal.sop_instance_uid


def assert_outcome(response, status: int, code: str | None = None) -> dict:  # noqa: ANN001
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers
    body = response.json()
    OperationOutcome.model_validate(body)
    assert body["resourceType"] == "OperationOutcome"
    [issue] = body["issue"]
    assert issue["severity"] == "error" and issue["diagnostics"]
    if code is not None:
        assert issue["code"] == code, body
    return body


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
