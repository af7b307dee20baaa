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
