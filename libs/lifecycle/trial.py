"""What the inference step does after the served model's output is committed and the report is on its
way (libs/pipeline/steps.py): keep a drift sample, and run the model in trial.

- Shadow: the candidate runs on every study after production; its output and the draft it would have
  written (rendered and reviewed by QA like any draft) are stored in model_outputs, never shown or sent.
- Canary: the other arm's model runs too (production on a canary study, the candidate on a production
  study), so every trial study has both models' outputs: the comparison pairs them on the radiologist's
  calls (libs/lifecycle/canary.py).

Nothing here can fail or delay a report: every error is logged and dropped (the report does not depend
on it), and a redelivered message finds its rows already written.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np

from libs.lifecycle import registry
from libs.lifecycle.routing import PRODUCTION_ARM, other
from libs.storage.db import session_scope
from libs.storage.models import InstanceRow, JobRow, ModelOutputRow

log = logging.getLogger(__name__)


def after_inference(job_id: str, ctx) -> None:  # noqa: ANN001 - PipelineContext
    try:
        _after(job_id, ctx)
    except Exception as exc:  # noqa: BLE001 - monitoring must never cost a report
        log.warning("job %s: drift sample / trial model skipped: %s: %s", job_id, type(exc).__name__, exc)


def _after(job_id: str, ctx) -> None:  # noqa: ANN001
    from libs.domain.model_output import ModelOutput
    from libs.domain.request import ReportRequest
    from libs.lifecycle import drift

    with session_scope(ctx.engine) as session:
        job = session.get(JobRow, job_id)
        if job is None or job.model_output is None:
            return
        session.expunge(job)
        instance = session.get(InstanceRow, job.instance_uid) if job.instance_uid else None
        if instance is not None:
            session.expunge(instance)
    request = ReportRequest.model_validate(job.request)
    output = ModelOutput.model_validate(job.model_output)
    served = registry.get(ctx.engine, job.model_id) if job.model_id else None
    runner = ctx.runner_for(served)
    image = np.load(job.image_path)
    embedding = runner.embed(image[None])[0] if runner.has_embedding else None
    drift.record_sample(ctx.engine, job_id, f"{output.model_name}:{output.model_version}", embedding, output,
                        drift.sample_meta(instance, request))
    deployment = ctx.deployment
    trial_model = other(deployment, job.model_arm or PRODUCTION_ARM)
    if trial_model is None:
        return
    with session_scope(ctx.engine) as session:
        if session.get(ModelOutputRow, (job_id, trial_model.id)) is not None:
            return  # a redelivered message
    role = "shadow" if trial_model.state == registry.SHADOW else "paired"
    out, report = run_other(ctx, job, request, image, trial_model)
    with session_scope(ctx.engine) as session:
        if session.get(ModelOutputRow, (job_id, trial_model.id)) is None:
            session.add(ModelOutputRow(job_id=job_id, model_id=trial_model.id, role=role,
                                       output=out.model_dump(mode="json"), report=report.model_dump(mode="json"),
                                       created_at=dt.datetime.now(dt.timezone.utc)))


def run_other(ctx, job: JobRow, request, image: np.ndarray, model: registry.ModelVersion):  # noqa: ANN001, ANN201
    """(ModelOutput, reviewed draft) of `model` on the job's image: what it would have sent."""
    from libs.pipeline.steps import to_source_boxes
    from libs.qa.laterality import image_info_for_job

    out = ctx.predict(image, "routine", request.clinical_context, model=model)
    to_source_boxes(out, job.geometry)
    with session_scope(ctx.engine) as session:
        info = image_info_for_job(session, job)
    return out, reviewed_draft(job.id, job.study_uid, out, request, info)


def reviewed_draft(job_id: str, study_uid: str, output, request, image=None):  # noqa: ANN001, ANN201 - Report
    """The draft `output` makes, rendered and reviewed by QA as the pipeline's formatting and QA steps do
    (without the automation switch): what a model would have sent (a trial, the validation gate)."""
    from libs.qa.review import review_report
    from libs.reporting.render import render_report

    report = render_report(job_id, study_uid, output, request, image=image)
    verdict = review_report(report, output, request, image=image)
    return report.model_copy(update={"qa": verdict.summary(), "requires_radiologist_review": verdict.requires_review,
                                     "review_reasons": list(verdict.reasons)})
