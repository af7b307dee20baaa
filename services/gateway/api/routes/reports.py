"""Report requests (POST) and results (GET), and job status."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from libs.core.errors import InputRejected
from libs.domain.job import JobState
from libs.domain.report import Report
from libs.domain.request import ReportRequest
from libs.pipeline.intake import check_uid
from libs.pipeline.messages import StepMessage
from libs.reporting.render import check_template
from libs.storage import crud
from libs.storage.db import session_scope
from services.gateway.api.deps import EngineDep, PublisherDep, SettingsDep, audit_entity
from services.gateway.multipart import MultipartError, parse_media_type
from services.gateway.problems import ProblemError, problem_responses
from services.gateway.publish import PublishFailed
from services.gateway.schemas import FindingOut, JobAccepted, JobOut, ObservationOut, ReportOut, links_for

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["reports"])

# Stored as "key:<value>" in a 128-character column; visible ASCII only (it is echoed in logs).
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,100}$")
POLL_INTERVAL_S = 0.2
RETRY_AFTER_S = "1"


def require_json(request: Request) -> None:
    """415 for a body that is not JSON (no Content-Type with an empty body is fine: all defaults)."""
    value = request.headers.get("content-type")
    if value is None:
        return
    try:
        media = parse_media_type(value)
    except MultipartError:
        media = None
    if media is None or not (media.type == "application/json" or media.type.endswith("+json")):
        raise ProblemError(415, "the request body must be application/json")


def _valid_study_uid(study_id: str) -> str:
    try:
        return check_uid(study_id, "study_id in the path")
    except InputRejected as exc:
        raise ProblemError(422, exc.reason, slug="invalid-uid", title="Invalid UID") from None


def _unknown_study(study_id: str) -> ProblemError:
    return ProblemError(
        404, f"unknown study {study_id}: no instances of it are stored (send them with STOW-RS first, "
             "or configure a PACS to pull studies from: docs/pacs.md)",
        slug="unknown-study", title="Unknown study",
    )


@router.post(
    "/studies/{study_id}/report",
    status_code=202,
    response_model=JobAccepted,
    response_description="Job created and queued",
    summary="Request a draft report for a stored study",
    description=(
        "Starts a report job for a study whose instances were stored with STOW-RS "
        "(`POST /dicomweb/studies`). Every image named in `images` must be stored under its series; "
        "with no `images`, every stored instance of the study is used. When a PACS is configured "
        "(docs/pacs.md), a study or image not stored yet is not an error: the job is created and its "
        "ingestion step pulls the study from the PACS (QIDO-RS + WADO-RS) first.\n\n"
        "Idempotent: repeating the same request (or the same `Idempotency-Key`) returns the job the "
        "first one made (status 200 instead of 202); an `Idempotency-Key` reused with a different body "
        "is rejected with 422. If the job queue is unreachable the job is not kept and the answer is 503: "
        "retry later with the same request."
    ),
    responses={
        200: {"model": JobAccepted, "description": "This request was made before: its job is returned"},
        **problem_responses(
            400, 404, 415, 422, 503,
            descriptions={
                400: "Malformed JSON or Idempotency-Key",
                404: "Unknown study, or a named instance is not stored",
                415: "The body is not JSON",
                422: "Invalid request: schema, template, study_id mismatch, Idempotency-Key reused",
                503: "The job queue is unreachable; nothing was kept",
            },
        ),
    },
    dependencies=[Depends(require_json)],
)
def request_report(
    study_id: str,
    response: Response,
    engine: EngineDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    body: Annotated[ReportRequest | None, Body()] = None,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Client key making retries safe (1-100 visible ASCII)"),
    ] = None,
) -> JobAccepted:
    study_id = _valid_study_uid(study_id)
    request = body or ReportRequest()
    if request.study_id is not None and request.study_id != study_id:
        raise ProblemError(422, "study_id in the body differs from the study in the path",
                           slug="study-mismatch", title="Study mismatch")
    try:
        check_template(request.report_template)
    except InputRejected as exc:
        raise ProblemError(422, exc.reason, slug="unknown-template", title="Unknown report template") from None
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ProblemError(400, "Idempotency-Key must be 1 to 100 visible ASCII characters",
                           slug="invalid-idempotency-key", title="Invalid Idempotency-Key")

    with session_scope(engine) as session:
        stored = crud.instances_for_study(session, study_id)
        pull = bool(settings.pull_servers)  # missing images are then fetched by the ingestion step
        if not stored and not pull:
            raise _unknown_study(study_id)
        by_uid = {i.sop_instance_uid: i for i in stored}
        for ref in request.images:
            inst = by_uid.get(ref.instance_uid)
            if inst is None and pull:
                continue
            if inst is None or inst.series_uid != ref.series_uid:
                raise ProblemError(
                    404,
                    f"instance {ref.instance_uid} of series {ref.series_uid} is not stored in study {study_id}",
                    slug="unknown-instance", title="Unknown instance",
                )
        try:
            job, created = crud.create_job(session, study_id, request, idempotency_key)
        except crud.IdempotencyConflict as exc:
            raise ProblemError(422, str(exc), slug="idempotency-conflict", title="Idempotency-Key reused") from None
        job_id, state, priority = job.id, JobState(job.state), job.priority

    if created:
        # The job is committed before its message is published, so a worker can never receive a
        # message for a job it cannot read yet. If publishing fails the job is deleted again:
        # no orphan `received` job is left, and the client's retry creates a fresh one.
        try:
            publisher.publish(StepMessage(job_id=job_id, priority=priority))
        except PublishFailed as exc:
            log.error("job %s for study %s not queued: %s; job removed", job_id, study_id, exc)
            _delete_job(engine, job_id)
            raise ProblemError(503, f"{exc}; the request was not kept, retry later", slug="queue-unavailable",
                               title="Job queue unavailable", headers={"Retry-After": "5"}) from None
        log.info("job %s created for study %s (%s)", job_id, study_id, priority)
    else:
        response.status_code = 200
        log.info("job %s returned again for study %s (idempotent repeat)", job_id, study_id)

    links = links_for(study_id, job_id)
    response.headers["Location"] = links.report
    return JobAccepted(job_id=job_id, study_id=study_id, status=state, links=links)


def _delete_job(engine: Engine, job_id: str) -> None:
    try:
        with session_scope(engine) as session:
            job = crud.get_job(session, job_id)
            if job is not None:
                session.delete(job)
    except Exception:  # noqa: BLE001 - the 503 still goes out; the log says what is left behind
        log.exception("could not remove unqueued job %s", job_id)


@dataclass(frozen=True)
class _Snapshot:
    job_id: str
    study_id: str
    state: JobState
    error: str | None
    report: dict[str, Any] | None


def _latest(engine: Engine, study_id: str) -> _Snapshot | None:
    with session_scope(engine) as session:
        job = crud.latest_job_for_study(session, study_id)
        if job is None:
            return None
        return _Snapshot(job.id, job.study_uid, JobState(job.state), job.error, job.report)


def _no_report(engine: Engine, study_id: str) -> ProblemError:
    with session_scope(engine) as session:
        known = bool(crud.instances_for_study(session, study_id))
    if not known:
        return _unknown_study(study_id)
    return ProblemError(404, f"no report has been requested for study {study_id}", slug="no-report",
                        title="No report requested")


def _report_out(snap: _Snapshot) -> ReportOut:
    links = links_for(snap.study_id, snap.job_id)
    base = {"status": snap.state, "job_id": snap.job_id, "study_id": snap.study_id, "links": links}
    if snap.state is JobState.FAILED:
        return ReportOut(**base, error=snap.error or "the job failed without a recorded reason")
    if snap.state is not JobState.REVIEWED:
        return ReportOut(**base)
    if snap.report is None:
        raise ProblemError(500, f"job {snap.job_id} is reviewed but holds no report")
    report = Report.model_validate(snap.report)
    return ReportOut(
        **base,
        report_id=report.report_id,
        findings=[
            FindingOut(**f.model_dump(include={"finding", "confidence", "severity", "bounding_box",
                                                "is_critical", "label", "laterality"}))
            for f in report.findings
        ],
        findings_text=report.findings_text,
        impression=report.impression,
        recommendations=report.recommendations,
        observations=[ObservationOut(**o.model_dump()) for o in report.observations],
        not_assessed=report.not_assessed,
        processing_time_ms=report.processing_time_ms,
        model_version=report.model_version,
        requires_radiologist_review=report.requires_radiologist_review,
        review_reasons=report.review_reasons,
        report_status=report.report_status,
    )


@router.get(
    "/studies/{study_id}/report",
    response_model=ReportOut,
    summary="Get the study's latest report (long-poll with ?wait)",
    description=(
        "The latest job of the study. `reviewed`: 200 with the report (the design's response fields plus "
        "`status`, `job_id`, `findings_text`, `not_assessed`, `review_reasons`). Still running: 202 with "
        "`status` and a `Retry-After` header. `failed`: 200 with `status: failed` and `error`.\n\n"
        "`wait=SECONDS` holds the request until the job finishes or the time is up (capped by the "
        "server's `long_poll_max_s`)."
    ),
    responses={
        202: {"model": ReportOut, "description": "The job is still running"},
        **problem_responses(404, 422, descriptions={404: "Unknown study, or no report requested for it"}),
    },
)
async def get_report(
    study_id: str,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    wait: Annotated[float, Query(ge=0, description="Seconds to wait for the job to finish")] = 0.0,
) -> JSONResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, settings.long_poll_max_s)
    while True:
        snap = await run_in_threadpool(_latest, engine, study_id)
        if snap is None:
            raise await run_in_threadpool(_no_report, engine, study_id)
        remaining = deadline - loop.time()
        if snap.state.terminal or remaining <= 0 or await request.is_disconnected():
            break
        await asyncio.sleep(min(POLL_INTERVAL_S, remaining))
    out = _report_out(snap)
    if out.report_id:  # the audit trail names the report that was disclosed, not only its study
        audit_entity(request, "DiagnosticReport", out.report_id)
    if snap.state is JobState.REVIEWED:
        # Every field of the design's response is present, null where it does not apply.
        content = out.model_dump(mode="json", exclude={"error"})
    else:
        content = out.model_dump(mode="json", exclude_none=True)
    if snap.state.terminal:
        return JSONResponse(content)
    return JSONResponse(content, status_code=202, headers={"Retry-After": RETRY_AFTER_S})


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="Get a job's state and history",
    description="The job's state, when it entered each state, and the reason when it failed.",
    responses=problem_responses(404, descriptions={404: "No such job"}),
    tags=["jobs"],
)
def get_job(job_id: str, engine: EngineDep) -> JobOut:
    with session_scope(engine) as session:
        row = crud.get_job(session, job_id)
        if row is None:
            raise ProblemError(404, f"no job {job_id}", slug="unknown-job", title="Unknown job")
        job = crud.to_domain(row)
        pacs_results = {"state": row.results_state, **(row.results or {})} if row.results_state else None
    return JobOut(
        job_id=job.id,
        study_id=job.study_uid,
        status=job.state,
        priority=job.priority,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
        history=job.history,
        pacs_results=pacs_results,
        links=links_for(job.study_uid, job.id),
    )
