"""The radiologists' worklist: drafted reports, STAT and critical first, then the longest waiting.

A row is a job whose report is drafted (state `reviewed`); its status is the latest radiologist
feedback on it (libs/feedback/record.py): unread, accepted, edited or rejected. Patient name and ID
come from the DICOM header of the image the model read (the worklist is a clinical view, behind
the radiologist's sign-in and the audit trail; nothing here is logged).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import pydicom
from sqlalchemy import Engine, and_, case, func, select

from libs.domain.job import JobState
from libs.domain.report import Report
from libs.feedback.record import REPORT_PREFIX
from libs.storage.db import session_scope
from libs.storage.models import InstanceRow, JobRow, ReportFeedbackRow

Status = Literal["unread", "accepted", "edited", "rejected"]
MAX_ROWS = 200


@dataclass(frozen=True)
class Filters:
    flagged: bool = False  # only reports QA sent for review
    status: Literal["all", "unread", "read"] = "unread"
    mine: str | None = None  # reviewer id: only reports this radiologist signed
    modality: str | None = None  # CR | DX
    view: str | None = None  # PA | AP | LATERAL ...
    since: dt.date | None = None
    until: dt.date | None = None


@dataclass(frozen=True)
class WorklistRow:
    report_id: str
    job_id: str
    study_uid: str
    priority: str
    drafted_at: dt.datetime
    critical: list[str]
    requires_review: bool
    review_reasons: list[str]
    status: Status
    reviewer: str | None
    modality: str
    view: str
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    findings: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> str:
        minutes = max(0, int((dt.datetime.now(dt.timezone.utc) - self.drafted_at).total_seconds() // 60))
        return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h" if minutes < 2880 else f"{minutes // 1440} d"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def patient_header(path: str | None) -> tuple[str, str, str]:
    if not path:
        return "", "", ""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientName", "PatientID", "StudyDate"])
    except (OSError, pydicom.errors.InvalidDicomError):
        return "", "", ""
    name = str(ds.get("PatientName") or "").replace("^", ", ", 1).replace("^", " ").strip(", ")
    return name, str(ds.get("PatientID") or ""), str(ds.get("StudyDate") or "")


def rows(engine: Engine, filters: Filters = Filters(), limit: int = MAX_ROWS) -> list[WorklistRow]:
    latest = (select(ReportFeedbackRow.job_id, func.max(ReportFeedbackRow.version).label("version"))
              .group_by(ReportFeedbackRow.job_id).subquery())
    query = (select(JobRow, ReportFeedbackRow, InstanceRow)
             .outerjoin(latest, latest.c.job_id == JobRow.id)
             .outerjoin(ReportFeedbackRow, and_(ReportFeedbackRow.job_id == JobRow.id,
                                                ReportFeedbackRow.version == latest.c.version))
             .outerjoin(InstanceRow, InstanceRow.sop_instance_uid == JobRow.instance_uid)
             .where(JobRow.state == JobState.REVIEWED.value, JobRow.report.is_not(None)))
    if filters.flagged:
        query = query.where(JobRow.requires_review.is_(True))
    if filters.status == "unread":
        query = query.where(ReportFeedbackRow.id.is_(None))
    elif filters.status == "read":
        query = query.where(ReportFeedbackRow.id.is_not(None))
    if filters.mine:
        query = query.where(ReportFeedbackRow.reviewer_id == filters.mine)
    if filters.modality:
        query = query.where(InstanceRow.modality == filters.modality)
    if filters.view:
        query = query.where(InstanceRow.view == filters.view)
    if filters.since:
        query = query.where(JobRow.created_at >= dt.datetime.combine(filters.since, dt.time(), dt.timezone.utc))
    if filters.until:
        end = dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
        query = query.where(JobRow.created_at < end)
    # The order's first keys in SQL, so the limit never cuts a STAT or flagged report off for an older
    # routine one; critical findings (inside the report JSON) are ordered below, among these rows.
    query = query.order_by(case((JobRow.priority == "stat", 0), else_=1),
                           case((JobRow.requires_review.is_(True), 0), else_=1),
                           JobRow.created_at).limit(max(1, min(limit, MAX_ROWS)) * 2)
    out: list[WorklistRow] = []
    with session_scope(engine) as session:
        for job, feedback, instance in session.execute(query).all():
            report = Report.model_validate(job.report)
            critical = sorted({f.label for f in report.findings if f.is_critical}
                              | set(report.qa.critical if report.qa else []))
            name, patient_id, study_date = patient_header(instance.path if instance else None)
            out.append(WorklistRow(
                report_id=f"{REPORT_PREFIX}{job.id}", job_id=job.id, study_uid=job.study_uid,
                priority=job.priority or "routine", drafted_at=_aware(job.updated_at or job.created_at),
                critical=critical, requires_review=bool(job.requires_review),
                review_reasons=list(job.review_reasons or []),
                status=feedback.decision if feedback else "unread",
                reviewer=feedback.reviewer_id if feedback else None,
                modality=instance.modality if instance else "", view=instance.view if instance else "",
                patient_name=name, patient_id=patient_id, study_date=study_date,
                findings=[f.label for f in report.findings]))
    # STAT first, then critical findings, then flagged for review, then the longest waiting.
    out.sort(key=lambda r: (r.priority != "stat", not r.critical, not r.requires_review, r.drafted_at))
    return out[:limit]
