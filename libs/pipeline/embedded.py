"""The whole pipeline in one process: SQLite (or any DATABASE_URL) and an in-process queue.

Used by `cxr-report run`, the demo and the latency benchmark; the steps are the ones the
Celery services run, so behaviour is the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from libs.core.errors import CxrError, InputRejected
from libs.domain.job import JobState
from libs.domain.report import Report
from libs.domain.request import ReportRequest
from libs.pipeline.context import PipelineContext
from libs.pipeline.dispatch import InProcessDispatcher
from libs.pipeline.intake import accept_instance
from libs.pipeline.messages import Step, StepMessage
from libs.pipeline.steps import run_step
from libs.storage import crud
from libs.storage.db import session_scope


@dataclass
class EmbeddedResult:
    job_id: str
    state: JobState
    error: str | None
    report: Report | None


def collect_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            files.append(path)
        else:
            raise InputRejected(f"{path}: no such file or directory")
    if not files:
        raise InputRejected("no files given")
    return files


def store_files(ctx: PipelineContext, files: list[Path]) -> str:
    """Stores every file (all or nothing per file) and returns the one StudyInstanceUID they share."""
    studies: set[str] = set()
    for path in files:
        try:
            with session_scope(ctx.engine) as session:
                accepted = accept_instance(session, path.read_bytes(), ctx.settings.dicom_dir)
        except InputRejected as exc:
            raise InputRejected(f"{path.name}: {exc.reason}") from None
        studies.add(accepted.instance.study_uid)
    if len(studies) != 1:
        raise InputRejected(f"the files belong to {len(studies)} different studies; give one study at a time")
    return studies.pop()


def drain(ctx: PipelineContext, dispatcher: InProcessDispatcher) -> None:
    while (item := dispatcher.pop()) is not None:
        step, message = item
        try:
            run_step(step, message, ctx, dispatcher)
        except Exception as exc:
            # No retries in one process: the reason goes into the job, then up to the caller.
            reason = exc.reason if isinstance(exc, CxrError) else f"{step.value} failed: {exc}"
            with session_scope(ctx.engine) as session:
                crud.fail(session, message.job_id, reason)
            raise


def run_study(ctx: PipelineContext, files: list[Path], request: ReportRequest) -> EmbeddedResult:
    study_uid = store_files(ctx, collect_files(files))
    with session_scope(ctx.engine) as session:
        # A fresh key per run: running the CLI again (say after installing a bundle) makes a new job.
        job, _ = crud.create_job(session, study_uid, request, idempotency_key=f"cli-{uuid.uuid4()}")
        job_id = job.id
    dispatcher = InProcessDispatcher()
    dispatcher.send(Step.INGESTION, StepMessage(job_id=job_id, priority=request.priority))
    drain(ctx, dispatcher)
    return result_of(ctx, job_id)


def result_of(ctx: PipelineContext, job_id: str) -> EmbeddedResult:
    with session_scope(ctx.engine) as session:
        job = crud.get_job(session, job_id)
        assert job is not None
        report = Report.model_validate(job.report) if job.report and job.state == JobState.REVIEWED.value else None
        return EmbeddedResult(job_id=job.id, state=JobState(job.state), error=job.error, report=report)
