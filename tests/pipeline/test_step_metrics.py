"""Step and end-to-end latency histograms, observed where the steps run."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from libs.pipeline.dispatch import InProcessDispatcher
from libs.pipeline.embedded import drain
from libs.pipeline.messages import Step, StepMessage
from libs.pipeline.steps import run_step
from tests.pipeline.test_steps import _job


def _count(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0


def test_each_step_once_as_done_a_redelivery_as_nothing_and_the_whole_job_once(ctx, chest_pa: Path) -> None:  # noqa: ANN001
    steps = [s.value for s in Step]
    before = {s: _count("cxr_step_duration_seconds", {"step": s, "outcome": "done"}) for s in steps}
    e2e = _count("cxr_job_end_to_end_seconds", {"priority": "routine"})
    job_id = _job(ctx, [chest_pa])
    d = InProcessDispatcher()
    d.send(Step.INGESTION, StepMessage(job_id=job_id))
    drain(ctx, d)
    for s in steps:
        assert _count("cxr_step_duration_seconds", {"step": s, "outcome": "done"}) == before[s] + 1, s
    assert _count("cxr_job_end_to_end_seconds", {"priority": "routine"}) == e2e + 1
    run_step(Step.INFERENCE, StepMessage(job_id=job_id), ctx, InProcessDispatcher())  # a late redelivery
    assert _count("cxr_step_duration_seconds", {"step": "inference", "outcome": "done"}) == before["inference"] + 1
    assert _count("cxr_job_end_to_end_seconds", {"priority": "routine"}) == e2e + 1
    total = REGISTRY.get_sample_value("cxr_job_end_to_end_seconds_sum", {"priority": "routine"})
    assert total is not None and total > 0


def test_a_reviewed_report_is_counted_once_with_its_findings_and_qa_flags(ctx, chest_pa: Path) -> None:  # noqa: ANN001
    from libs.domain.report import Report
    from libs.storage import crud
    from libs.storage.db import session_scope

    def value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    version = {"model_version": "0.0.0-test"}
    reports, review = value("cxr_reports_total", version), value("cxr_reports_review_required_total", version)
    flagged = {r: value("cxr_qa_reports_flagged_total", {"reason": r}) for r in ("hallucination", "omission", "critical")}
    job_id = _job(ctx, [chest_pa])
    d = InProcessDispatcher()
    d.send(Step.INGESTION, StepMessage(job_id=job_id))
    drain(ctx, d)
    with session_scope(ctx.engine) as s:
        report = Report.model_validate(crud.get_job(s, job_id).report)
    findings = {f.label: value("cxr_findings_total", {"observation": f.label}) for f in report.findings}
    run_step(Step.QA, StepMessage(job_id=job_id), ctx, InProcessDispatcher())  # redelivered: not counted again
    assert value("cxr_reports_total", version) == reports + 1
    assert value("cxr_reports_review_required_total", version) == review + int(report.requires_radiologist_review)
    assert value("cxr_model_info", version) == 1
    for label, count in findings.items():
        assert value("cxr_findings_total", {"observation": label}) == count  # unchanged by the redelivery
    for reason, field_name in (("hallucination", "hallucinations"), ("omission", "omissions"), ("critical", "critical")):
        assert value("cxr_qa_reports_flagged_total", {"reason": reason}) == flagged[reason] + bool(
            getattr(report.qa, field_name)), reason
