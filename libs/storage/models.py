"""SQLAlchemy tables. No patient identifiers are stored: UIDs, geometry, results and timings only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class InstanceRow(Base):
    __tablename__ = "instances"

    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(16))
    view: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[str] = mapped_column(String(16), default="routine")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Filled in as the job moves along the pipeline.
    instance_uid: Mapped[str | None] = mapped_column(String(64))
    image_path: Mapped[str | None] = mapped_column(Text)
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model_output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requires_review: Mapped[bool | None] = mapped_column(Boolean)
    review_reasons: Mapped[list[str] | None] = mapped_column(JSON)
    # DICOM SR store-back to the PACS (migration 0002): null when no PACS takes results.
    results_state: Mapped[str | None] = mapped_column(String(16))
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Reliability (migration 0003): when the reconciler last re-sent the job's message, how often,
    # and why a failed job failed ("rejected": the input; "exhausted": retries ran out, a dead letter).
    requeued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    requeue_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_kind: Mapped[str | None] = mapped_column(String(16))
    # Model lifecycle (migration 0008): the registered model that drafted the report (null: the configured
    # bundle, no registry) and its arm, production or canary (libs/lifecycle/routing.py).
    model_id: Mapped[str | None] = mapped_column(String(200), index=True)
    model_arm: Mapped[str | None] = mapped_column(String(16))

    events: Mapped[list["JobEventRow"]] = relationship(
        back_populates="job", order_by="JobEventRow.id", cascade="all, delete-orphan"
    )


class JobEventRow(Base):
    """One row per state entered: the job's audit trail and its per-state timestamps."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    detail: Mapped[str | None] = mapped_column(Text)

    job: Mapped[JobRow] = relationship(back_populates="events")


class ApiKeyRow(Base):
    """An API key for a PACS or device that cannot do OAuth. Only a hash of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the key's public prefix
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEventRow(Base):
    """One audited action. Append-only (database triggers refuse UPDATE and DELETE) and chained:
    `hash` covers the row's fields and the previous row's hash, so an edit anywhere breaks the chain."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    agent_type: Mapped[str] = mapped_column(String(16))  # jwt | apikey | system | anonymous | cli
    agent_id: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(1))  # FHIR AuditEvent.action: C R U D E
    outcome: Mapped[str] = mapped_column(String(2))  # FHIR AuditEvent.outcome: 0 4 8 12
    entity_type: Mapped[str] = mapped_column(String(64), index=True)
    entity_id: Mapped[str | None] = mapped_column(String(200), index=True)
    operation: Mapped[str] = mapped_column(String(64))  # the route or command
    source_address: Mapped[str | None] = mapped_column(String(64))
    http_status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """A single row: the last sequence number and hash. Appending updates it first, which serialises
    writers (a row lock in PostgreSQL, the write lock in SQLite) so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ReportFeedbackRow(Base):
    """One radiologist's verdict on a drafted report; each new one is the next version (the draft in
    `jobs.report` is never changed). `edit_distance`: Levenshtein distance from the draft's findings +
    impression to `final_text` (edited only); `draft_chars` is that draft's length."""

    __tablename__ = "report_feedback"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))  # accepted | edited | rejected
    final_text: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    corrections: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    edit_distance: Mapped[int | None] = mapped_column(Integer)
    draft_chars: Mapped[int] = mapped_column(Integer)
    reviewer_type: Mapped[str] = mapped_column(String(16))
    reviewer_id: Mapped[str] = mapped_column(String(200))
    # The reviewer's display name (API key name or token name) for the signed report (migration 0006).
    reviewer_name: Mapped[str | None] = mapped_column(String(200))
    rating: Mapped[int | None] = mapped_column(Integer)  # 1-5, optional (migration 0008)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class AutomationEventRow(Base):
    """One switch of the automation mode (libs/automation/switch.py); the latest row is the state."""

    __tablename__ = "automation_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    mode: Mapped[str] = mapped_column(String(16))  # automatic | co-sign
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))  # kind:id of who switched it
    source: Mapped[str] = mapped_column(String(32))  # api | cli | alertmanager


class WorkstationSessionRow(Base):
    """A radiologist signed in to the review workstation (libs/auth/sessions.py). Only a hash of the
    cookie's secret is kept; a session ends at `expires_at`, at sign-out, or when its API key is revoked."""

    __tablename__ = "workstation_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie value
    principal_kind: Mapped[str] = mapped_column(String(16))  # apikey | jwt
    principal_id: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ReportCorrectionRow(Base):
    """A radiologist's corrected findings for a draft and the draft the model regenerated from them
    (libs/feedback/corrections.py): RaDialog's correction task. The draft in `jobs.report` is never
    changed; what is signed goes to report_feedback."""

    __tablename__ = "report_corrections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    # One FindingCorrection per observation the radiologist changed: present/absent, side, severity.
    corrections: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))  # pending | done | failed
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the regenerated Report
    text_from_model: Mapped[bool | None] = mapped_column(Boolean)  # False: the bundle has no decoder
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(200))  # kind:id
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ModelVersionRow(Base):
    """A registered model bundle (libs/lifecycle/registry.py): its copy in the registry folder, the hash of
    that copy, its manifest, the validation gate's report, and where it is in the lifecycle."""

    __tablename__ = "model_versions"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # <name>:<version>
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)  # candidate|shadow|canary|production|retired
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    validation: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the gate's report (latest run)
    comparison: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the canary comparison (latest run)
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    registered_by: Mapped[str] = mapped_column(String(200))
    state_since: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ModelEventRow(Base):
    """Every lifecycle change of a model (register, validate, promote, rollback, retire): who, why, when."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # register|validate|promote|rollback|retire|compare
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32))  # cli | api | alertmanager
    reason: Mapped[str] = mapped_column(Text)


class ModelOutputRow(Base):
    """The output of the model that did NOT draft a job's report, run after the pipeline moved on: the
    shadow candidate, or during a canary the other arm's model (both models on every trial study, for the
    paired comparison). Stored and compared, never shown or sent."""

    __tablename__ = "model_outputs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # shadow | paired
    output: Mapped[dict[str, Any]] = mapped_column(JSON)  # ModelOutput
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the draft it would have written
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class DriftSampleRow(Base):
    """What drift monitoring keeps of a served study (libs/lifecycle/drift.py): the encoder embedding, the
    head's probabilities, and acquisition metadata that identifies no one (age as a 10-year band)."""

    __tablename__ = "drift_samples"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    embedding: Mapped[list[float] | None] = mapped_column(JSON)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)  # manufacturer, view, modality, pixel spacing, age band, sex


class DriftCheckRow(Base):
    """One drift check's result per signal: the statistic, its p-value, and whether it alarmed."""

    __tablename__ = "drift_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_id: Mapped[str] = mapped_column(String(200))
    signal: Mapped[str] = mapped_column(String(64))  # embedding_mmd | meta:<field> | label:<observation>
    statistic: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    alarm: Mapped[bool] = mapped_column(Boolean)
    samples: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
