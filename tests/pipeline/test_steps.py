"""Each step runs once per job however many times its message is delivered."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from libs.domain.job import JobState
from libs.domain.request import ImageRef, ReportRequest
from libs.pipeline.dispatch import InProcessDispatcher
from libs.pipeline.embedded import drain, store_files
from libs.pipeline.messages import Step, StepMessage
from libs.pipeline.steps import run_step
from libs.storage import crud
from libs.storage.db import session_scope
from libs.storage.models import JobEventRow


def _job(ctx, files: list[Path], request: ReportRequest | None = None) -> str:  # noqa: ANN001
    study = store_files(ctx, files)
    with session_scope(ctx.engine) as s:
        job, _ = crud.create_job(s, study, request or ReportRequest())
        return job.id


def _events(ctx, job_id: str) -> list[str]:  # noqa: ANN001
    with session_scope(ctx.engine) as s:
        return list(s.scalars(select(JobEventRow.state).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)))


def test_pipeline_runs_each_step_once(ctx, chest_pa: Path) -> None:  # noqa: ANN001
    job_id = _job(ctx, [chest_pa])
    d = InProcessDispatcher()
    d.send(Step.INGESTION, StepMessage(job_id=job_id))
    drain(ctx, d)
    assert _events(ctx, job_id) == ["received", "preprocessed", "inferred", "formatted", "reviewed"]
    with session_scope(ctx.engine) as s:
        job = crud.get_job(s, job_id)
        assert job.report["model_version"] == "0.0.0-test"
        assert job.requires_review is not None
        assert Path(job.image_path).exists()


def test_redelivered_message_does_no_work_twice(ctx, chest_pa: Path) -> None:  # noqa: ANN001
    job_id = _job(ctx, [chest_pa])
    d = InProcessDispatcher()
    msg = StepMessage(job_id=job_id)
    assert run_step(Step.INGESTION, msg, ctx, d) is JobState.PREPROCESSED
    assert len(d.pending) == 1
    # Same message again (the worker died after commit, before ack): no new work, but the next
    # message is published again in case the first publish was lost; the next step dedupes.
    assert run_step(Step.INGESTION, msg, ctx, d) is JobState.PREPROCESSED
    assert [s for s, _ in d.pending] == [Step.INFERENCE, Step.INFERENCE]
    drain(ctx, d)
    assert _events(ctx, job_id) == ["received", "preprocessed", "inferred", "formatted", "reviewed"]
    # Once finished, any late duplicate is ignored.
    assert run_step(Step.INFERENCE, msg, ctx, d) is JobState.REVIEWED
    assert not d.pending


def test_rejected_input_fails_the_job_with_its_reason(ctx, chest_pa: Path) -> None:  # noqa: ANN001
    job_id = _job(ctx, [chest_pa], ReportRequest(images=[ImageRef(series_uid="1.2", instance_uid="9.9.9")]))
    d = InProcessDispatcher()
    assert run_step(Step.INGESTION, StepMessage(job_id=job_id), ctx, d) is JobState.FAILED
    with session_scope(ctx.engine) as s:
        job = crud.get_job(s, job_id)
        assert job.error == "instance 9.9.9 of series 1.2 is not stored"
    assert not d.pending


def test_only_lateral_views_are_rejected(ctx, chest_pa: Path) -> None:  # noqa: ANN001
    study = store_files(ctx, [chest_pa])
    with session_scope(ctx.engine) as s:
        inst = crud.instances_for_study(s, study)[0]
        job, _ = crud.create_job(s, study, ReportRequest(
            images=[ImageRef(series_uid=inst.series_uid, instance_uid=inst.sop_instance_uid, view="LATERAL")]))
        job_id = job.id
    assert run_step(Step.INGESTION, StepMessage(job_id=job_id), ctx, InProcessDispatcher()) is JobState.FAILED
    with session_scope(ctx.engine) as s:
        assert crud.get_job(s, job_id).error.startswith("no frontal (PA/AP) image in the study")


def test_unknown_job_is_dropped(ctx) -> None:  # noqa: ANN001
    d = InProcessDispatcher()
    assert run_step(Step.INFERENCE, StepMessage(job_id="nope"), ctx, d) is None
    assert not d.pending


def test_stat_jumps_the_in_process_queue() -> None:
    d = InProcessDispatcher()
    d.send(Step.INGESTION, StepMessage(job_id="a"))
    d.send(Step.INGESTION, StepMessage(job_id="b", priority="stat"))
    assert d.pop()[1].job_id == "b"


def test_clinical_context_reaches_the_model(ctx, chest_pa: Path) -> None:  # noqa: ANN001
    """The decoder is conditioned on age/sex/indication: the inference step must hand them over."""
    from libs.domain.context import ClinicalContext

    seen = []
    real = ctx.runner

    class Spy:
        def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the real runner's
            return getattr(real, name)

        def predict(self, images, contexts=None):  # noqa: ANN001, ANN201
            seen.extend(contexts)
            return real.predict(images, contexts)

    ctx._runners["configured"] = Spy()  # the configured bundle serves (nothing registered)
    request = ReportRequest(clinical_context=ClinicalContext(age=67, sex="M", indication="cough"))
    job_id = _job(ctx, [chest_pa], request)
    d = InProcessDispatcher()
    d.send(Step.INGESTION, StepMessage(job_id=job_id))
    drain(ctx, d)
    assert seen == [request.clinical_context]
