"""The four pipeline steps. Each owns one state transition and is safe to run twice for one message.

A step reads the job, does its work, and writes its product together with the state change in one
compare-and-set (`crud.advance`). If the job is already past that step (a redelivered message after a
worker died), the step does no work; if it stopped exactly after this step (the worker died between
commit and publish), it publishes the next message again. That gives exactly one result per job.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from libs.automation import switch
from libs.core.errors import InputRejected
from libs.domain.job import JobState
from libs.domain.model_output import ModelOutput
from libs.domain.report import Report
from libs.domain.request import ReportRequest
from libs.domain.study import Study
from libs.observability.metrics import END_TO_END_SECONDS, STEP_SECONDS, record_review
from libs.pipeline.context import PipelineContext
from libs.pipeline.dispatch import Dispatcher
from libs.pipeline.messages import Step, StepMessage
from libs.storage import crud
from libs.storage.db import session_scope

log = logging.getLogger(__name__)

# step → (state it consumes, state it produces, step that follows)
TRANSITIONS: dict[Step, tuple[JobState, JobState, Step | None]] = {
    Step.INGESTION: (JobState.RECEIVED, JobState.PREPROCESSED, Step.INFERENCE),
    Step.INFERENCE: (JobState.PREPROCESSED, JobState.INFERRED, Step.FORMATTING),
    Step.FORMATTING: (JobState.INFERRED, JobState.FORMATTED, Step.QA),
    Step.QA: (JobState.FORMATTED, JobState.REVIEWED, None),
}

# state → the step that moves a job out of it: the message a job in that state is waiting for
# (what the reconciler and a re-drive send). A reviewed job's QA message finishes its SR store-back.
CONSUMER: dict[JobState, Step] = {consumes: step for step, (consumes, _, _) in TRANSITIONS.items()}
CONSUMER[JobState.REVIEWED] = Step.QA


def run_step(step: Step, message: StepMessage, ctx: PipelineContext, dispatcher: Dispatcher) -> JobState | None:
    """Runs one step for one message. Returns the job's state afterwards (None: unknown job).

    InputRejected fails the job with its reason; any other exception propagates so the queue retries.
    """
    consumes, produces, following = TRANSITIONS[step]
    with session_scope(ctx.engine) as session:
        state = crud.current_state(session, message.job_id)
    if state is None:
        log.warning("%s: job %s does not exist; message dropped", step.value, message.job_id)
        return None
    if state is produces and following is not None:
        # We committed but may not have published: publish again (the next step dedupes).
        dispatcher.send(following, StepMessage(job_id=message.job_id, priority=message.priority,
                                               image_path=message.image_path))
        return state
    if state is produces and step is Step.QA:
        # Reviewed, but the worker may have died before storing the SR to the PACS: finish that.
        _store_results(message.job_id, ctx)
        return state
    if state is not consumes:
        log.info("%s: job %s already %s; nothing to do", step.value, message.job_id, state.value)
        return state

    if ctx.settings.step_delay_s:
        time.sleep(ctx.settings.step_delay_s)  # fault-injection hook for tests; 0 in production
    started = time.perf_counter()
    try:
        fields = _WORK[step](message.job_id, ctx)
    except InputRejected as exc:
        with session_scope(ctx.engine) as session:
            # Not a dead letter: the same input would be rejected again, so re-driving cannot help.
            crud.fail(session, message.job_id, exc.reason, kind=crud.REJECTED)
        log.info("%s: job %s rejected: %s", step.value, message.job_id, exc.reason)
        STEP_SECONDS.labels(step.value, "rejected").observe(time.perf_counter() - started)
        return JobState.FAILED
    except Exception:
        STEP_SECONDS.labels(step.value, "error").observe(time.perf_counter() - started)
        raise

    with session_scope(ctx.engine) as session:
        won = crud.advance(session, message.job_id, consumes, produces, **fields)
    if not won:
        STEP_SECONDS.labels(step.value, "duplicate").observe(time.perf_counter() - started)
        log.info("%s: job %s was completed by another delivery; result discarded", step.value, message.job_id)
        with session_scope(ctx.engine) as session:
            return crud.current_state(session, message.job_id)
    STEP_SECONDS.labels(step.value, "done").observe(time.perf_counter() - started)
    if step is Step.QA:  # the job is reviewed: its whole time (queues and retries included) and its report
        report = Report.model_validate(fields["report"])
        END_TO_END_SECONDS.labels(message.priority).observe((report.processing_time_ms or 0) / 1000)
        record_review(report)
    if following is not None:
        dispatcher.send(following, StepMessage(job_id=message.job_id, priority=message.priority,
                                               image_path=fields.get("image_path", message.image_path)))
    if step is Step.INFERENCE:
        # After the report is on its way, never delaying it: the drift sample, and the model in trial.
        from libs.lifecycle.trial import after_inference

        after_inference(message.job_id, ctx)
    if step is Step.QA:
        _store_results(message.job_id, ctx)
    return produces


def _store_results(job_id: str, ctx: PipelineContext) -> None:
    """After the report is committed: store it as a DICOM SR to each PACS that takes results.

    Never raises: a PACS that is down cannot lose or delay the report; the outcome (retried with
    backoff inside) is recorded on the job (`results_state`, `results`).
    """
    if not ctx.settings.result_servers:
        return
    from libs.dicomweb.results import store_results

    store_results(job_id, ctx)


def _load(job_id: str, ctx: PipelineContext):  # noqa: ANN202
    with session_scope(ctx.engine) as session:
        job = crud.get_job(session, job_id)
        assert job is not None
        session.expunge(job)
        return job


# ---------------------------------------------------------------- the work of each step

def ingest(job_id: str, ctx: PipelineContext) -> dict:
    from libs.dicom import load_for_model

    job = _load(job_id, ctx)
    request = ReportRequest.model_validate(job.request)
    with session_scope(ctx.engine) as session:
        stored = crud.instances_for_study(session, job.study_uid)
    known = {i.sop_instance_uid for i in stored}
    if ctx.settings.pull_servers and (not stored or any(r.instance_uid not in known for r in request.images)):
        # Asked for before the PACS sent it: pull it (QIDO-RS + WADO-RS). A PACS that is down or
        # times out raises PacsUnavailable, which the queue retries; nothing is half-stored.
        from libs.dicomweb.pull import pull_study

        pull_study(ctx.engine, ctx.settings, job.study_uid, request.images)
        with session_scope(ctx.engine) as session:
            stored = crud.instances_for_study(session, job.study_uid)
    if request.images:
        by_uid = {i.sop_instance_uid: i for i in stored}
        chosen = []
        for ref in request.images:
            inst = by_uid.get(ref.instance_uid)
            if inst is None or inst.series_uid != ref.series_uid:
                raise InputRejected(f"instance {ref.instance_uid} of series {ref.series_uid} is not stored")
            chosen.append(inst.model_copy(update={"view": ref.view}) if ref.view else inst)
        stored = chosen
    if not stored:
        raise InputRejected("the study has no stored instances")
    frontal = Study(study_uid=job.study_uid, instances=stored).frontal_choice()
    if frontal is None:
        raise InputRejected(f"no frontal (PA/AP) image in the study: {len(stored)} lateral image(s) only")
    _, pre = load_for_model(Path(str(frontal.path)), size=model_input_size(ctx))
    out = ctx.settings.preprocessed_dir / f"{job_id}.npy"
    _atomic_save(out, pre.array.astype(np.float32, copy=False))
    return {
        "instance_uid": frontal.sop_instance_uid,
        "image_path": str(out),
        "geometry": pre.geometry.to_dict(),
    }


def model_input_size(ctx: PipelineContext) -> int:
    """The production bundle (registered, else configured) decides the input size; without one, the
    configured default. A model in trial reads the same size (the registry refuses one that does not)."""
    from libs.bundle.manifest import load_manifest
    from libs.core.errors import BundleUnavailable

    try:
        return load_manifest(ctx.deployment.production_path(ctx.settings)).input.size
    except BundleUnavailable:
        return ctx.settings.image_size


def infer(job_id: str, ctx: PipelineContext) -> dict:
    from libs.lifecycle.routing import served

    job = _load(job_id, ctx)
    image = np.load(job.image_path)
    context = ReportRequest.model_validate(job.request).clinical_context
    # The canary's share of studies (by a hash of the study: a retry keeps its arm), else production.
    deployment = ctx.deployment
    model, arm = served(deployment, job.study_uid)
    output = ctx.predict(image, job.priority, context, model=model)
    to_source_boxes(output, job.geometry)
    # No arm when nothing is registered: the configured bundle serves, as before the registry.
    return {"model_output": output.model_dump(mode="json"), "model_id": model.id if model else None,
            "model_arm": arm if deployment.trial is not None or model is not None else None}


def to_source_boxes(output: ModelOutput, geometry: dict) -> None:
    """Boxes leave the model in its input pixels; clinicians and the SR want source-image pixels."""
    from libs.dicom import ResizeGeometry

    resize = ResizeGeometry.from_dict(geometry)
    for pred in output.predictions:
        if pred.bounding_box is not None:
            pred.bounding_box = resize.to_source_box(pred.bounding_box)


def format_report(job_id: str, ctx: PipelineContext) -> dict:
    from libs.qa.laterality import image_info_for_job
    from libs.reporting.render import render_report

    job = _load(job_id, ctx)
    request = ReportRequest.model_validate(job.request)
    output = ModelOutput.model_validate(job.model_output)
    with session_scope(ctx.engine) as session:
        image = image_info_for_job(session, job)  # width and view: the side of each box
    report = render_report(job.id, job.study_uid, output, request, image=image)
    return {"report": report.model_dump(mode="json")}


def review(job_id: str, ctx: PipelineContext) -> dict:
    from libs.qa.laterality import image_info_for_job
    from libs.qa.review import review_report

    job = _load(job_id, ctx)
    request = ReportRequest.model_validate(job.request)
    output = ModelOutput.model_validate(job.model_output)
    report = Report.model_validate(job.report)
    with session_scope(ctx.engine) as session:
        image = image_info_for_job(session, job)
    verdict = review_report(report, output, request, image=image)
    with session_scope(ctx.engine) as session:
        automation = switch.state_in(session)
    reasons = list(verdict.reasons)
    if automation.paused:  # co-sign mode: a radiologist signs every report, nothing goes out by itself
        reasons.append(switch.review_reason(automation))
    requires_review = verdict.requires_review or automation.paused
    created = crud.aware(job.created_at)
    elapsed_ms = int((dt.datetime.now(dt.timezone.utc) - created).total_seconds() * 1000)
    report = report.model_copy(
        update={
            "requires_radiologist_review": requires_review,
            "review_reasons": reasons,
            "processing_time_ms": elapsed_ms,
            "qa": verdict.summary(),  # per-study hallucination/omission counts, for monitoring
        }
    )
    fields = {
        "report": report.model_dump(mode="json"),
        "requires_review": requires_review,
        "review_reasons": reasons,
    }
    if ctx.settings.result_servers:
        # Committed with the report; _store_results does the rest (held: sent when automation resumes).
        fields["results_state"] = crud.RESULTS_HELD if automation.paused else crud.RESULTS_PENDING
    return fields


_WORK = {Step.INGESTION: ingest, Step.INFERENCE: infer, Step.FORMATTING: format_report, Step.QA: review}


def _atomic_save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.part")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
