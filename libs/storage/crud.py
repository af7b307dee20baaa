"""Reads and writes of instances and jobs. Every state change is a compare-and-set on `jobs.state`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from libs.domain.job import InvalidTransition, Job, JobState, check_redrive, check_transition
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


# Why a failed job failed (jobs.failure_kind). Only EXHAUSTED jobs are dead letters: their input was
# fine and a re-drive may succeed; a REJECTED input fails the same way every time.
REJECTED = "rejected"
EXHAUSTED = "exhausted"


def fail(session: Session, job_id: str, reason: str, kind: str | None = None) -> bool:
    """Marks a non-terminal job failed with its reason (and `kind`: REJECTED, EXHAUSTED or None for
    anything else); False when it was already finished."""
    # Read the state from the database, not the session's identity map: advance() updates with a
    # plain UPDATE, so an object loaded earlier in this session may hold a stale state. Retry on a race.
    for _ in range(5):
        state = session.scalar(select(JobRow.state).where(JobRow.id == job_id))
        if state is None or JobState(state).terminal:
            return False
        if advance(session, job_id, JobState(state), JobState.FAILED, error=reason[:2000], failure_kind=kind):
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


# ---------------------------------------------------------------- reconciliation (libs/pipeline/reconcile.py)

# DICOM SR store-back states (jobs.results_state, written by libs/dicomweb/results.py): pending, then
# stored | partial | failed after each attempt. The reconciler retries partial and failed (and a pending
# one whose worker died) until results_max_attempts; then `dead`: a dead letter, listed for ops.
RESULTS_PENDING = "pending"
RESULTS_STORED = "stored"
RESULTS_PARTIAL = "partial"
RESULTS_FAILED = "failed"
RESULTS_DEAD = "dead"
RESULTS_HELD = "held"  # co-sign mode: not sent until automation resumes (libs/automation/switch.py)
RESULTS_RETRYABLE = (RESULTS_PENDING, RESULTS_PARTIAL, RESULTS_FAILED)

_IN_FLIGHT = [s.value for s in JobState if not s.terminal]


@dataclass(frozen=True)
class StaleJob:
    id: str
    state: JobState
    priority: str
    image_path: str | None


@dataclass(frozen=True)
class StaleResults:
    id: str
    priority: str
    results_state: str
    attempts: int


def _unchanged_since(cutoff: dt.datetime) -> ColumnElement[bool]:
    """max(updated_at, requeued_at) < cutoff: neither the pipeline nor the reconciler touched it since."""
    return and_(JobRow.updated_at < cutoff, or_(JobRow.requeued_at.is_(None), JobRow.requeued_at < cutoff))


def stale_jobs(session: Session, cutoff: dt.datetime, limit: int) -> list[StaleJob]:
    """Jobs in flight (not reviewed, not failed) that nothing moved since `cutoff`, oldest first."""
    rows = session.execute(
        select(JobRow.id, JobRow.state, JobRow.priority, JobRow.image_path)
        .where(JobRow.state.in_(_IN_FLIGHT), _unchanged_since(cutoff))
        .order_by(JobRow.updated_at, JobRow.id).limit(limit)
    )
    return [StaleJob(r.id, JobState(r.state), r.priority, r.image_path) for r in rows]


def mark_requeued(session: Session, job_id: str, state: JobState, cutoff: dt.datetime) -> int | None:
    """Claims a stale job for one re-send: compare-and-set on its state and staleness, so a job that
    moved meanwhile, or that another reconciler just claimed, is left alone (None)."""
    return session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.state == state.value, _unchanged_since(cutoff))
        .values(requeued_at=utcnow(), requeue_count=JobRow.requeue_count + 1)
        .returning(JobRow.requeue_count)
        .execution_options(synchronize_session=False)
    ).scalar()


def results_attempts(results: dict[str, Any] | None) -> int:
    return int((results or {}).get("attempts") or 0)


def stale_results(session: Session, cutoff: dt.datetime, limit: int) -> list[StaleResults]:
    """Reviewed jobs whose SR store-back is unfinished (pending, partial, failed) and untouched since `cutoff`."""
    rows = session.execute(
        select(JobRow.id, JobRow.priority, JobRow.results_state, JobRow.results)
        .where(JobRow.state == JobState.REVIEWED.value, JobRow.results_state.in_(RESULTS_RETRYABLE),
               _unchanged_since(cutoff))
        .order_by(JobRow.updated_at, JobRow.id).limit(limit)
    )
    return [StaleResults(r.id, r.priority, r.results_state, results_attempts(r.results)) for r in rows]


def requeue_results(session: Session, job_id: str, results_state: str, cutoff: dt.datetime) -> int | None:
    """Claims a stale store-back for one more attempt: back to pending (the QA step stores only a
    pending one); None when it changed meanwhile."""
    return session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.state == JobState.REVIEWED.value,
               JobRow.results_state == results_state, _unchanged_since(cutoff))
        .values(results_state=RESULTS_PENDING, requeued_at=utcnow(), requeue_count=JobRow.requeue_count + 1)
        .returning(JobRow.requeue_count)
        .execution_options(synchronize_session=False)
    ).scalar()


def dead_letter_results(session: Session, job_id: str, results_state: str) -> bool:
    """A store-back out of attempts becomes a dead letter (compare-and-set on its results_state)."""
    result = session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.results_state == results_state)
        .values(results_state=RESULTS_DEAD)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# ---------------------------------------------------------------- dead letters

DEAD_PIPELINE = "exhausted"  # a failed job whose step ran out of retries
DEAD_RESULTS = "results"  # a reviewed job whose SR store-back ran out of attempts

# celery_app writes "<step> failed after N attempts: ..." when retries run out
_ATTEMPTS = re.compile(r"failed after (\d+) attempts")


class NotADeadLetter(Exception):
    """The job exists but is not a dead letter (in flight, reviewed and stored, or rejected)."""


@dataclass(frozen=True)
class DeadLetter:
    job_id: str
    study_uid: str
    kind: str  # DEAD_PIPELINE or DEAD_RESULTS
    failed_from: JobState  # the state the job was in when it failed (reviewed for a store-back)
    reason: str
    failed_at: dt.datetime
    attempts: int | None
    requeue_count: int


@dataclass(frozen=True)
class Redriven:
    job_id: str
    kind: str
    state: JobState  # the state the job is back in
    priority: str
    image_path: str | None


def _dead_letter_filter() -> ColumnElement[bool]:
    return or_(
        and_(JobRow.state == JobState.FAILED.value, JobRow.failure_kind == EXHAUSTED),
        and_(JobRow.state == JobState.REVIEWED.value, JobRow.results_state == RESULTS_DEAD),
    )


def failed_from(session: Session, job_id: str) -> JobState | None:
    """The state a failed job failed from: the state entered just before its last `failed`."""
    newest = session.scalars(
        select(JobEventRow.state).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id.desc()).limit(2)
    ).all()
    if len(newest) == 2 and newest[0] == JobState.FAILED.value:
        return JobState(newest[1])
    return None


def _results_reason(results: dict[str, Any] | None) -> str:
    results = results or {}
    details = [str(s.get("detail")) for s in (results.get("servers") or {}).values() if s.get("status") != RESULTS_STORED]
    if results.get("error"):
        details.insert(0, str(results["error"]))
    return "; ".join(details) or "the report SR was not stored"


def _results_failed_at(results: dict[str, Any] | None, fallback: dt.datetime) -> dt.datetime:
    stamp = (results or {}).get("attempted_at")
    try:
        return aware(dt.datetime.fromisoformat(stamp)) if stamp else aware(fallback)
    except ValueError:
        return aware(fallback)


def count_dead_letters(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(JobRow).where(_dead_letter_filter())) or 0)


def list_dead_letters(session: Session, limit: int = 50, offset: int = 0) -> list[DeadLetter]:
    """Dead letters, newest first (by the job's last state change)."""
    rows = session.execute(
        select(JobRow.id, JobRow.study_uid, JobRow.state, JobRow.error, JobRow.updated_at, JobRow.results,
               JobRow.requeue_count)
        .where(_dead_letter_filter())
        .order_by(JobRow.updated_at.desc(), JobRow.id).limit(limit).offset(offset)
    ).all()
    out = []
    for r in rows:
        if r.state == JobState.FAILED.value:
            match = _ATTEMPTS.search(r.error or "")
            out.append(DeadLetter(
                job_id=r.id, study_uid=r.study_uid, kind=DEAD_PIPELINE,
                failed_from=failed_from(session, r.id) or JobState.RECEIVED, reason=r.error or "",
                failed_at=aware(r.updated_at), attempts=int(match.group(1)) if match else None,
                requeue_count=r.requeue_count or 0))
        else:
            out.append(DeadLetter(
                job_id=r.id, study_uid=r.study_uid, kind=DEAD_RESULTS, failed_from=JobState.REVIEWED,
                reason=_results_reason(r.results), failed_at=_results_failed_at(r.results, r.updated_at),
                attempts=results_attempts(r.results), requeue_count=r.requeue_count or 0))
    return out


def redrive(session: Session, job_id: str, by: str) -> Redriven | None:
    """Puts a dead letter back to work; None for an unknown job, NotADeadLetter for any other job.

    A failed job goes back to the state it failed from (the one exception the state machine allows
    out of `failed`), its error cleared (the `failed` event keeps it); a dead store-back goes back to
    pending with a fresh attempt budget. Either way a job_events row records the re-drive and `by`
    (through what: "the API", "the CLI"). The caller publishes the message after commit; should that
    fail, the reconciler re-sends it once stale.
    """
    row = session.execute(
        select(JobRow.state, JobRow.failure_kind, JobRow.results_state, JobRow.results, JobRow.priority,
               JobRow.image_path).where(JobRow.id == job_id)
    ).one_or_none()
    if row is None:
        return None
    now = utcnow()
    if row.state == JobState.FAILED.value and row.failure_kind == EXHAUSTED:
        origin = failed_from(session, job_id)
        if origin is None:
            raise NotADeadLetter(f"job {job_id} has no state to go back to")
        try:
            check_redrive(JobState.FAILED, origin, origin)
        except InvalidTransition:
            raise NotADeadLetter(f"job {job_id} has no state to go back to") from None
        changed = session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.state == JobState.FAILED.value, JobRow.failure_kind == EXHAUSTED)
            .values(state=origin.value, error=None, failure_kind=None, updated_at=now, requeued_at=now,
                    requeue_count=JobRow.requeue_count + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        kind, state = DEAD_PIPELINE, origin
        detail = f"dead letter re-driven through {by}: back to {origin.value}"
    elif row.state == JobState.REVIEWED.value and row.results_state == RESULTS_DEAD:
        results = {**(row.results or {}), "attempts": 0}
        changed = session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.results_state == RESULTS_DEAD)
            .values(results_state=RESULTS_PENDING, results=results, requeued_at=now,
                    requeue_count=JobRow.requeue_count + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        kind, state = DEAD_RESULTS, JobState.REVIEWED
        detail = f"report SR store-back re-driven through {by}"
    else:
        what = f"{row.state} ({row.failure_kind})" if row.failure_kind else row.state
        raise NotADeadLetter(f"job {job_id} is {what}, not a dead letter")
    if changed != 1:  # a concurrent re-drive won
        raise NotADeadLetter(f"job {job_id} was re-driven by someone else just now")
    session.add(JobEventRow(job_id=job_id, state=state.value, at=now, detail=detail))
    session.flush()
    return Redriven(job_id=job_id, kind=kind, state=state, priority=row.priority, image_path=row.image_path)
