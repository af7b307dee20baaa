"""The Celery task around a step: transient errors are retried with backoff, then the job is failed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from libs.core.config import Settings
from libs.domain.job import JobState
from libs.domain.request import ReportRequest
from libs.pipeline.context import PipelineContext
from libs.pipeline.messages import Step
from libs.queue import celery_app as queue
from libs.storage import crud
from libs.storage.db import session_scope


@pytest.fixture
def eager_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    settings = Settings(data_dir=tmp_path, bundle_path=tmp_path / "no-bundle", task_max_retries=2,
                        task_retry_backoff_max_s=1, database_url=f"sqlite:///{tmp_path / 'q.db'}")
    ctx = PipelineContext.from_settings(settings)
    monkeypatch.setattr(queue, "_context", ctx)
    monkeypatch.setattr(queue, "get_settings", lambda: settings)
    monkeypatch.setattr(queue, "backoff_seconds", lambda retries, cap: 0)
    app = queue.make_celery(settings)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = False
    return app, ctx


def test_transient_failure_is_retried_then_the_job_fails_with_the_reason(eager_app) -> None:  # noqa: ANN001
    app, ctx = eager_app
    calls = []
    task = queue.register_step_task(app, Step.INFERENCE)
    image = ctx.settings.data_dir / "x.npy"
    np.save(image, np.zeros((64, 64), np.float32))
    with session_scope(ctx.engine) as s:
        job, _ = crud.create_job(s, "1.2.3", ReportRequest())
        crud.advance(s, job.id, JobState.RECEIVED, JobState.PREPROCESSED, image_path=str(image),
                     geometry={"source_rows": 64, "source_cols": 64, "scale": 1.0, "pad_top": 0, "pad_left": 0,
                               "size": 64})
        job_id = job.id

    original = queue.run_step

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return original(*args, **kwargs)

    queue.run_step = counting
    retries = REGISTRY.get_sample_value("cxr_step_retries_total", {"step": "inference"}) or 0.0
    exhausted = REGISTRY.get_sample_value("cxr_step_exhausted_total", {"step": "inference"}) or 0.0
    try:
        task.apply(kwargs={"job_id": job_id})
    finally:
        queue.run_step = original
    assert len(calls) == 3  # first attempt + 2 retries
    assert REGISTRY.get_sample_value("cxr_step_retries_total", {"step": "inference"}) == retries + 2
    assert REGISTRY.get_sample_value("cxr_step_exhausted_total", {"step": "inference"}) == exhausted + 1
    with session_scope(ctx.engine) as s:
        job = crud.get_job(s, job_id)
        assert job.state == "failed"
        assert job.error.startswith("inference failed after 3 attempts: ")
        assert "no model bundle installed" in job.error
