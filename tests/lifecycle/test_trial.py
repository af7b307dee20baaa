"""Shadow and canary in the real pipeline steps (in-process queue): which model drafts, what the other
model leaves behind (never shown), the drift sample, and the report naming the model that drafted it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from libs.domain.request import ReportRequest
from libs.lifecycle import registry
from libs.lifecycle.routing import in_canary
from libs.pipeline.context import PipelineContext
from libs.pipeline.embedded import run_study
from libs.storage.db import session_scope
from libs.storage.models import DriftSampleRow, JobRow, ModelOutputRow
from tests.lifecycle.conftest import two_models


def _study(tmp_path: Path, make_chest_dicom, n: int, canary: bool | None = None) -> list[Path]:  # noqa: ANN001
    """A study file; with `canary`, one whose UID falls in (or out of) the 50 % canary arm."""
    from pydicom.uid import generate_uid

    uid = generate_uid()
    while canary is not None and in_canary(uid, 0.5) is not canary:
        uid = generate_uid()
    path = tmp_path / f"study-{n}.dcm"
    path.write_bytes(make_chest_dicom(study_uid=uid))
    return [path]


def test_shadow_then_canary_in_the_pipeline(lifecycle_settings, engine, make_bundle, make_chest_dicom,  # noqa: ANN001
                                            tmp_path: Path) -> None:
    s = lifecycle_settings.model_copy(update={"canary_share": 0.5})
    a, b = two_models(engine, s, make_bundle, trial="shadow")
    ctx = PipelineContext.from_settings(s)

    shadowed = run_study(ctx, _study(tmp_path, make_chest_dicom, 0), ReportRequest())
    assert shadowed.report is not None and shadowed.report.model_version == "1.0.0"  # production drafted it
    with session_scope(ctx.engine) as db:
        job = db.get(JobRow, shadowed.job_id)
        assert (job.model_id, job.model_arm) == (a, "production")
        (row,) = db.scalars(select(ModelOutputRow).where(ModelOutputRow.job_id == job.id)).all()
        assert (row.model_id, row.role) == (b, "shadow") and row.output["model_version"] == "2.0.0"
        assert row.report["model_version"] == "2.0.0" and "qa" in row.report  # what it would have sent
        sample = db.get(DriftSampleRow, job.id)
        assert sample.model_id == a and len(sample.embedding) > 0 and sample.meta["view"] == "PA"

    registry.promote(engine, s, b, "canary", "t", "shadow looked fine")
    ctx_canary = PipelineContext.from_settings(s)  # a fresh process: no cached deployment
    arms = {}
    for n in range(1, 5):
        result = run_study(ctx_canary, _study(tmp_path, make_chest_dicom, n, canary=n % 2 == 0), ReportRequest())
        with session_scope(ctx.engine) as db:
            job = db.get(JobRow, result.job_id)
            assert in_canary(job.study_uid, 0.5) is (job.model_arm == "canary")  # the study's hash decides
            arms[job.model_arm] = (job.model_id, result.report.model_version)
            (row,) = db.scalars(select(ModelOutputRow).where(ModelOutputRow.job_id == job.id)).all()
            assert row.role == "paired" and row.model_id == (a if job.model_arm == "canary" else b)
    assert arms == {"production": (a, "1.0.0"), "canary": (b, "2.0.0")}


def test_a_promotion_reaches_a_running_worker(lifecycle_settings, engine, make_bundle, monkeypatch) -> None:  # noqa: ANN001
    """A worker process that already serves production switches to the new one on its next study: the
    runner, the batcher and what its heartbeat says (the runtime status /readyz lists)."""
    from libs.observability import runtime_status

    monkeypatch.setattr(runtime_status, "LOCAL", {})
    s = lifecycle_settings
    a, b = two_models(engine, s, make_bundle, trial="canary")
    ctx = PipelineContext.from_settings(s)
    assert ctx.runner.model_version == "1.0.0" and ctx.batcher is not None
    first_batcher = ctx.batcher
    registry.store_comparison(engine, b, {"decision": "promote", "why": "better"}, "t")
    registry.promote(engine, s, b, "production", "t", "canary won")
    ctx._deployments.clear()  # what the 5-second cache does by itself
    assert ctx.runner.model_version == "2.0.0"
    assert ctx.batcher is not first_batcher
    assert ctx.runtime_status().model_version == "2.0.0"
    assert [w.model_version for w in runtime_status.LOCAL.values()] == ["2.0.0"]
