"""One reconciler pass (libs/pipeline/reconcile.py): what it re-sends, what it leaves alone."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import update

from libs.core.config import PacsServer, Settings
from libs.pipeline import reconcile
from libs.pipeline.context import PipelineContext
from libs.pipeline.dispatch import InProcessDispatcher
from libs.pipeline.embedded import drain, store_files
from libs.pipeline.messages import Step
from libs.storage import crud
from libs.storage.db import session_scope
from libs.storage.models import JobRow
from libs.domain.request import ReportRequest

STALE_S = 0.3


def _ctx(tmp_path: Path, bundle: Path, **extra) -> PipelineContext:  # noqa: ANN003
    return PipelineContext.from_settings(Settings(
        data_dir=tmp_path / "data", bundle_path=bundle, queue_backend="inprocess",
        database_url=f"sqlite:///{tmp_path / 'cxr.db'}", reconcile_stale_s=STALE_S, **extra))


def _job(ctx: PipelineContext, chest_pa: Path) -> str:
    """A new job for the sample image as a study of its own (one job per study and request)."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(chest_pa)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = ctx.settings.data_dir / "incoming" / f"{ds.SOPInstanceUID}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    study = store_files(ctx, [path])
    with session_scope(ctx.engine) as s:
        return crud.create_job(s, study, ReportRequest())[0].id


def _row(ctx: PipelineContext, job_id: str) -> JobRow:
    with session_scope(ctx.engine) as s:
        row = crud.get_job(s, job_id)
        s.expunge(row)
        return row


def test_a_stale_job_gets_its_message_once_per_stale_period_and_then_completes(
        tmp_path: Path, small_bundle: Path, chest_pa: Path) -> None:
    ctx = _ctx(tmp_path, small_bundle)
    job_id = _job(ctx, chest_pa)  # received; its message "lost": nobody sent one
    sent = InProcessDispatcher()
    assert reconcile.reconcile_once(ctx, sent) == []  # fresh: it may just be waiting in a queue
    time.sleep(STALE_S + 0.1)
    [action] = reconcile.reconcile_once(ctx, sent)
    assert (action.job_id, action.kind, action.state, action.step, action.requeue_count) == \
        (job_id, reconcile.REQUEUED, "received", Step.INGESTION, 1)
    assert [(step, m.job_id) for step, m in sent.pending] == [(Step.INGESTION, job_id)]
    assert reconcile.reconcile_once(ctx, sent) == []  # just re-sent: not again before another stale period
    assert "re-enqueued job" in reconcile.describe(action)

    drain(ctx, sent)
    assert _row(ctx, job_id).state == "reviewed"
    time.sleep(STALE_S + 0.1)
    assert reconcile.reconcile_once(ctx, sent) == []  # finished jobs are never touched
    assert _row(ctx, job_id).requeue_count == 1


def test_an_unfinished_store_back_is_retried_and_one_out_of_attempts_is_dead_lettered(
        tmp_path: Path, small_bundle: Path, chest_pa: Path) -> None:
    pacs = PacsServer(name="archive", url="http://127.0.0.1:9/dicom-web", store_results=True)
    ctx = _ctx(tmp_path, small_bundle, pacs=[pacs], results_max_attempts=3)
    retry, dead = _job(ctx, chest_pa), _job(ctx, chest_pa)
    with session_scope(ctx.engine) as s:
        for job_id, attempts in ((retry, 1), (dead, 3)):
            s.execute(update(JobRow).where(JobRow.id == job_id).values(
                state="reviewed", results_state="failed", results={"attempts": attempts, "servers": {}}))
    sent = InProcessDispatcher()
    time.sleep(STALE_S + 0.1)
    actions = {a.job_id: a for a in reconcile.reconcile_once(ctx, sent)}
    assert (actions[retry].kind, actions[retry].step) == (reconcile.RESULTS_REQUEUED, Step.QA)
    assert actions[dead].kind == reconcile.RESULTS_DEAD
    assert [(step, m.job_id) for step, m in sent.pending] == [(Step.QA, retry)]
    assert (_row(ctx, retry).results_state, _row(ctx, dead).results_state) == ("pending", "dead")
    with session_scope(ctx.engine) as s:
        [letter] = crud.list_dead_letters(s)
    assert (letter.job_id, letter.kind, letter.attempts) == (dead, crud.DEAD_RESULTS, 3)


def test_without_a_pacs_taking_results_store_backs_are_left_alone(
        tmp_path: Path, small_bundle: Path, chest_pa: Path) -> None:
    ctx = _ctx(tmp_path, small_bundle)
    job_id = _job(ctx, chest_pa)
    with session_scope(ctx.engine) as s:
        s.execute(update(JobRow).where(JobRow.id == job_id).values(state="reviewed", results_state="failed"))
    time.sleep(STALE_S + 0.1)
    assert reconcile.reconcile_once(ctx, InProcessDispatcher()) == []


def test_cli_redrives_a_dead_letter_in_the_embedded_pipeline_to_its_report(
        tmp_path: Path, small_bundle: Path, chest_pa: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    from libs.cli import main
    from libs.core.config import get_settings
    from libs.pipeline.steps import run_step
    from libs.pipeline.messages import StepMessage

    ctx = _ctx(tmp_path, small_bundle)
    job_id = _job(ctx, chest_pa)
    run_step(Step.INGESTION, StepMessage(job_id=job_id), ctx, InProcessDispatcher())
    with session_scope(ctx.engine) as s:  # what celery_app records when inference's retries run out
        crud.fail(s, job_id, "inference failed after 6 attempts: the model bundle is unavailable", kind=crud.EXHAUSTED)
    for key, value in {"DATABASE_URL": ctx.settings.database_url, "CXR_QUEUE_BACKEND": "inprocess",
                       "CXR_DATA_DIR": str(ctx.settings.data_dir), "CXR_BUNDLE_PATH": str(small_bundle)}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        assert main(["jobs", "dead-letters"]) == 0
        listed = capsys.readouterr().out
        assert job_id in listed and "inference" in listed and "failed after 6 attempts" in listed
        assert main(["jobs", "redrive", job_id]) == 0
        assert "back in preprocessed, inference message sent" in capsys.readouterr().out
        assert _row(ctx, job_id).state == "reviewed"  # drained in this process
        assert main(["jobs", "redrive", job_id]) == 1
        assert "not a dead letter" in capsys.readouterr().err
        assert main(["jobs", "dead-letters"]) == 0 and "no dead letters" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
    from sqlalchemy import text

    with ctx.engine.connect() as conn:
        rows = conn.execute(text("SELECT agent_type, entity_id, operation FROM audit_events")).all()
    assert [tuple(r) for r in rows] == [("cli", job_id, "jobs redrive")]
