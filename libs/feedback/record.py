"""Stores a radiologist's feedback as the next version for its report; the draft is never changed.

The report is found by its id (`rpt-<job id>`, libs/reporting/render.py). Feedback names only the
observations that report assessed. Nothing here logs report text: it may hold what a radiologist
wrote about a patient.
"""

from __future__ import annotations

import datetime as dt
import uuid

import Levenshtein
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from libs.auth.principal import Principal
from libs.domain.feedback import FeedbackIn, FeedbackOut
from libs.domain.job import JobState
from libs.domain.report import Report
from libs.storage.db import session_scope
from libs.storage.models import JobRow, ReportFeedbackRow

REPORT_PREFIX = "rpt-"


class UnknownReport(Exception):
    pass


class NoReportYet(Exception):
    """The job exists but has not produced its report (or failed)."""


class NotAssessed(ValueError):
    """A correction names an observation the report's model did not assess."""


def draft_text(report: Report) -> str:
    """What `final_text` is compared with: the draft's findings and impression."""
    return f"{report.findings_text.strip()}\n\n{report.impression.strip()}".strip()


def _job_id(report_id: str) -> str:
    if not report_id.startswith(REPORT_PREFIX) or len(report_id) > 64:
        raise UnknownReport(report_id)
    return report_id[len(REPORT_PREFIX):]


def _load_report(session, report_id: str) -> tuple[JobRow, Report]:  # noqa: ANN001 - Session
    job = session.get(JobRow, _job_id(report_id))
    if job is None:
        raise UnknownReport(report_id)
    if job.state != JobState.REVIEWED.value or not job.report:
        raise NoReportYet(f"report {report_id} is not drafted yet (job {job.state})")
    return job, Report.model_validate(job.report)


def _out(row: ReportFeedbackRow) -> FeedbackOut:
    return FeedbackOut(report_id=row.report_id, version=row.version, decision=row.decision, final_text=row.final_text,
                       reason=row.reason, corrections=row.corrections, edit_distance=row.edit_distance,
                       reviewer=f"{row.reviewer_type}:{row.reviewer_id}", reviewer_name=row.reviewer_name,
                       rating=row.rating, created_at=row.created_at)


def record(engine: Engine, report_id: str, feedback: FeedbackIn, reviewer: Principal) -> FeedbackOut:
    """The stored version. Raises UnknownReport, NoReportYet or NotAssessed (nothing stored)."""
    for _ in range(5):  # two reviewers at once: the unique (report, version) makes one retry
        try:
            with session_scope(engine) as session:
                job, report = _load_report(session, report_id)
                # reports drafted before `observations` existed name what they assessed only as findings
                assessed = {o.label for o in report.observations} or {f.label for f in report.findings}
                unknown = [c.observation for c in feedback.corrections if c.observation not in assessed]
                if unknown:
                    raise NotAssessed(f"the report did not assess: {', '.join(unknown)}")
                draft = draft_text(report)
                version = 1 + int(session.scalar(select(func.max(ReportFeedbackRow.version))
                                                 .where(ReportFeedbackRow.report_id == report_id)) or 0)
                row = ReportFeedbackRow(
                    id=str(uuid.uuid4()), report_id=report_id, job_id=job.id, version=version,
                    decision=feedback.decision, final_text=feedback.final_text, reason=feedback.reason,
                    corrections=[c.model_dump(mode="json") for c in feedback.corrections],
                    edit_distance=Levenshtein.distance(draft, feedback.final_text.strip())
                    if feedback.decision == "edited" and feedback.final_text else None,
                    draft_chars=len(draft), reviewer_type=reviewer.kind, reviewer_id=reviewer.id,
                    reviewer_name=(reviewer.name or reviewer.id)[:200], rating=feedback.rating,
                    created_at=dt.datetime.now(dt.timezone.utc))
                session.add(row)
                session.flush()
                return _out(row)
        except IntegrityError:
            continue
    raise RuntimeError(f"could not store feedback on {report_id}: concurrent versions kept colliding")


def history(engine: Engine, report_id: str) -> list[FeedbackOut]:
    """Every version, oldest first. Raises UnknownReport."""
    with session_scope(engine) as session:
        if session.get(JobRow, _job_id(report_id)) is None:
            raise UnknownReport(report_id)
        rows = session.scalars(select(ReportFeedbackRow).where(ReportFeedbackRow.report_id == report_id)
                               .order_by(ReportFeedbackRow.version)).all()
        return [_out(r) for r in rows]


def report_version(feedback: FeedbackOut | None) -> int:
    """The report's version: 1 for the AI draft, then one more per feedback given on it."""
    return 1 if feedback is None else feedback.version + 1


def latest(session, job_id: str, version: int | None = None) -> FeedbackOut | None:  # noqa: ANN001 - Session
    """The latest feedback on the job's report (or feedback `version`); None when there is none."""
    query = select(ReportFeedbackRow).where(ReportFeedbackRow.job_id == job_id)
    if version is not None:
        query = query.where(ReportFeedbackRow.version == version)
    row = session.scalars(query.order_by(ReportFeedbackRow.version.desc()).limit(1)).first()
    return _out(row) if row is not None else None
