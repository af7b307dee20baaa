"""Reads what the FHIR resources are built from: reviewed jobs, their report and model output, and the
views of the study's stored instances. Read-only; no patient identity exists to be read."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from libs.domain.job import JobState
from libs.domain.model_output import ModelOutput
from libs.domain.report import Report
from libs.domain.request import ReportRequest
from libs.domain.study import View
from libs.feedback import record as feedback
from libs.fhir.builder import ReportSource, device_id, study_pseudonym
from libs.storage import crud
from libs.storage.models import InstanceRow, JobRow


class ReportNotAvailable(Exception):
    """The job exists but has no reviewed report (still running, or failed)."""

    def __init__(self, job_id: str, state: JobState, error: str | None = None) -> None:
        reason = f"job {job_id} is {state.value}"
        if state is JobState.FAILED:
            reason += f": {error or 'no reason recorded'}"
        else:
            reason += "; its report is not reviewed yet"
        super().__init__(reason)
        self.state = state


class NoSuchVersion(Exception):
    """The report exists but not in this version."""


def load_source(session: Session, job_id: str, version: int | None = None) -> ReportSource | None:
    """The reviewed job's ReportSource, in its latest version or in `version` (1: the AI draft, then
    one per radiologist verdict); None for an unknown job; ReportNotAvailable when not reviewed;
    NoSuchVersion for a version it never had."""
    job = crud.get_job(session, job_id)
    if job is None:
        return None
    state = JobState(job.state)
    if state is not JobState.REVIEWED or job.report is None:
        raise ReportNotAvailable(job.id, state, job.error)
    if version is None:
        return _source(session, job)
    if version < 1:
        raise NoSuchVersion(f"report versions start at 1 (the AI draft), not {version}")
    verdict = feedback.latest(session, job.id, version - 1) if version > 1 else None
    if version > 1 and verdict is None:
        raise NoSuchVersion(f"the report has no version {version}")
    return _source(session, job, verdict=verdict, latest_verdict=False)


def _source(session: Session, job: JobRow, verdict=None, latest_verdict: bool = True) -> ReportSource:  # noqa: ANN001
    report = Report.model_validate(job.report)
    output = ModelOutput.model_validate(job.model_output) if job.model_output else None
    try:
        request = ReportRequest.model_validate(job.request)
    except ValueError:
        request = ReportRequest()
    rows = list(session.scalars(select(InstanceRow).where(InstanceRow.study_uid == job.study_uid)))
    by_uid = {r.sop_instance_uid: r for r in rows}
    if request.images:
        covered = [(by_uid.get(ref.instance_uid), ref.view) for ref in request.images]
        views = tuple(view or (View(row.view) if row else View.UNKNOWN) for row, view in covered)
        received = [row.received_at for row, _ in covered if row is not None]
    else:
        views = tuple(View(r.view) for r in rows)
        received = [r.received_at for r in rows]
    reviewed_at = next((ev.at for ev in job.events if ev.state == JobState.REVIEWED.value), job.updated_at)
    effective = min((crud.aware(t) for t in received), default=crud.aware(job.created_at))
    return ReportSource(
        job_id=job.id,
        study_uid=job.study_uid,
        report=report,
        output=output,
        views=views,
        instance_uid=job.instance_uid,
        effective=effective,
        issued=crud.aware(reviewed_at),
        verdict=feedback.latest(session, job.id) if latest_verdict else verdict,
    )


def search_sources(
    session: Session, *, study_uid: str | None = None, pseudonym: str | None = None, limit: int = 50
) -> list[ReportSource]:
    """Reviewed jobs, newest first, optionally of one study (by UID or by subject pseudonym)."""
    query = select(JobRow).where(JobRow.state == JobState.REVIEWED.value)
    if study_uid is not None:
        query = query.where(JobRow.study_uid == study_uid)
    if pseudonym is not None:
        # The pseudonym is a one-way hash: find its study among the reviewed ones.
        studies = session.scalars(
            select(JobRow.study_uid).where(JobRow.state == JobState.REVIEWED.value).distinct()
        )
        match = next((uid for uid in studies if study_pseudonym(uid) == pseudonym), None)
        if match is None or (study_uid is not None and match != study_uid):
            return []
        query = query.where(JobRow.study_uid == match)
    jobs = session.scalars(query.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit))
    return [_source(session, job) for job in jobs if job.report is not None]


def find_model(session: Session, resource_id: str) -> tuple[str, str] | None:
    """(model name, version) of the Device with this id, from the reviewed jobs' model outputs."""
    outputs = session.scalars(
        select(JobRow.model_output).where(JobRow.state == JobState.REVIEWED.value).order_by(JobRow.created_at.desc())
    )
    seen: set[tuple[str, str]] = set()
    for data in outputs:
        if not data:
            continue
        key = (str(data.get("model_name")), str(data.get("model_version")))
        if key in seen:
            continue
        seen.add(key)
        if device_id(*key) == resource_id:
            return key
    return None
