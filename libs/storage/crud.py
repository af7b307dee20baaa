"""Reads and writes of instances and jobs. Every state change is a compare-and-set on `jobs.state`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from libs.domain.job import Job, JobState, check_transition
from libs.domain.request import ReportRequest
from libs.domain.study import Instance, View
from libs.storage.models import InstanceRow, JobEventRow, JobRow, utcnow


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


# ---------------------------------------------------------------- instances

def store_instance(session: Session, instance: Instance, size_bytes: int) -> bool:
    """Records an instance; False when that SOPInstanceUID was already stored (nothing changes)."""
    if session.get(InstanceRow, instance.sop_instance_uid) is not None:
        return False
    session.add(
        InstanceRow(
            sop_instance_uid=instance.sop_instance_uid,
            study_uid=instance.study_uid,
            series_uid=instance.series_uid,
            modality=instance.modality,
            view=instance.view.value,
            rows=instance.rows,
            columns=instance.columns,
            transfer_syntax_uid=instance.transfer_syntax_uid,
            path=str(instance.path),
            size_bytes=size_bytes,
        )
    )
    session.flush()
    return True


def _instance(row: InstanceRow) -> Instance:
    return Instance(
        study_uid=row.study_uid,
        series_uid=row.series_uid,
        sop_instance_uid=row.sop_instance_uid,
        modality=row.modality,
        view=View(row.view),
        rows=row.rows,
        columns=row.columns,
        transfer_syntax_uid=row.transfer_syntax_uid,
        path=row.path,
    )


def instances_for_study(session: Session, study_uid: str) -> list[Instance]:
    rows = session.scalars(
        select(InstanceRow).where(InstanceRow.study_uid == study_uid).order_by(InstanceRow.received_at)
    )
    return [_instance(r) for r in rows]


def get_instance(session: Session, sop_instance_uid: str) -> Instance | None:
    row = session.get(InstanceRow, sop_instance_uid)
    return _instance(row) if row else None


# ---------------------------------------------------------------- jobs

def request_fingerprint(study_uid: str, request: ReportRequest) -> str:
    canonical = json.dumps(
        {"study": study_uid, "request": request.model_dump(mode="json")}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(
    session: Session, study_uid: str, request: ReportRequest, idempotency_key: str | None = None
) -> tuple[JobRow, bool]:
    """Creates a job, or returns the one this same request (or Idempotency-Key) already made.

    Without an Idempotency-Key, a repeat of a request whose job FAILED makes a new job (the client is
    asking again, say after the study was re-sent); with a key, the key's job is always the answer.

    Returns (job, created). Raises IdempotencyConflict when a client key is reused for another request.
    """
    fingerprint = request_fingerprint(study_uid, request)
    key = f"key:{idempotency_key}" if idempotency_key else f"auto:{fingerprint}"
    existing = session.scalar(select(JobRow).where(JobRow.idempotency_key == key))
    if existing is not None:
        _check_same_request(existing, study_uid, request)
        if idempotency_key or existing.state != JobState.FAILED.value:
            return existing, False
        # Retire the failed job's key so the new attempt can take it; the old job stays for audit.
        existing.idempotency_key = f"{key}#retired-{existing.id}"
        session.flush()
    now = utcnow()
    job = JobRow(
        id=str(uuid.uuid4()),
        study_uid=study_uid,
        idempotency_key=key,
        request=request.model_dump(mode="json"),
        state=JobState.RECEIVED.value,
        priority=request.priority,
        created_at=now,
        updated_at=now,
    )
    job.events.append(JobEventRow(state=JobState.RECEIVED.value, at=now))
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        # A concurrent identical POST won the race: hand back its job.
        existing = session.scalar(select(JobRow).where(JobRow.idempotency_key == key))
        if existing is None:
            raise
        _check_same_request(existing, study_uid, request)
        return existing, False
    return job, True


def _check_same_request(job: JobRow, study_uid: str, request: ReportRequest) -> None:
    if job.study_uid != study_uid or job.request != request.model_dump(mode="json"):
        raise IdempotencyConflict("this Idempotency-Key was already used for a different request")


def get_job(session: Session, job_id: str) -> JobRow | None:
    return session.get(JobRow, job_id)


def latest_job_for_study(session: Session, study_uid: str) -> JobRow | None:
    return session.scalar(
        select(JobRow).where(JobRow.study_uid == study_uid).order_by(JobRow.created_at.desc()).limit(1)
    )


def advance(session: Session, job_id: str, current: JobState, target: JobState, **fields: Any) -> bool:
    """Moves a job from `current` to `target` and writes the step's results, atomically.

    False when the job is no longer in `current` (another delivery of the same message already did it):
    the caller then discards its work, which is what makes redelivered messages harmless.
    """
    check_transition(current, target)
    now = utcnow()
    result = session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.state == current.value)
        .values(state=target.value, updated_at=now, **fields)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    session.add(JobEventRow(job_id=job_id, state=target.value, at=now, detail=fields.get("error")))
    session.flush()
    return True


def fail(session: Session, job_id: str, reason: str) -> bool:
    """Marks a non-terminal job failed with its reason; False when it was already finished."""
    # Read the state from the database, not the session's identity map: advance() updates with a
    # plain UPDATE, so an object loaded earlier in this session may hold a stale state. Retry on a race.
    for _ in range(5):
        state = session.scalar(select(JobRow.state).where(JobRow.id == job_id))
        if state is None or JobState(state).terminal:
            return False
        if advance(session, job_id, JobState(state), JobState.FAILED, error=reason[:2000]):
            return True
    return False


def current_state(session: Session, job_id: str) -> JobState | None:
    state = session.scalar(select(JobRow.state).where(JobRow.id == job_id))
    return JobState(state) if state is not None else None


def aware(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def to_domain(job: JobRow) -> Job:
    history: dict[str, Any] = {}
    for ev in job.events:
        history.setdefault(ev.state, aware(ev.at))
    return Job(
        id=job.id,
        study_uid=job.study_uid,
        state=JobState(job.state),
        priority=job.priority,
        error=job.error,
        created_at=aware(job.created_at),
        updated_at=aware(job.updated_at),
        history=history,
    )
