"""Operations: dead letters (jobs the platform gave up on although their input was fine) and
re-driving them (shared with `cxr-report jobs`, libs/pipeline/redrive.py; docs/reliability.md); the
automation switch: pause, resume, and Alertmanager's webhook that pauses (libs/automation/switch.py)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.automation import switch as automation
from libs.domain.job import JobState
from libs.pipeline import redrive as dead
from libs.pipeline.dispatch import InProcessDispatcher
from libs.pipeline.messages import Step, StepMessage
from services.gateway.api.deps import EngineDep, PrincipalDep, SettingsDep
from services.gateway.publish import send_qa
from services.gateway.problems import ProblemError, problem_responses

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/ops", tags=["ops"])

MAX_PAGE = 200
MAX_OFFSET = 1_000_000_000


class DeadLetterOut(BaseModel):
    job_id: str
    study_id: str = Field(description="The Study Instance UID")
    kind: Literal["exhausted", "results"] = Field(
        description="exhausted: a step's retries ran out; results: the report is reviewed but its DICOM SR "
                    "store-back to the PACS ran out of attempts")
    failed_step: Step = Field(description="The step that gave up (qa for a store-back)")
    failed_from: JobState = Field(description="The state the job failed from; a re-drive puts it back there")
    reason: str = Field(description="Why it failed, PHI-free")
    failed_at: dt.datetime
    attempts: int | None = Field(description="Attempts of the step (or store-back) that ran out; null if unknown")
    requeue_count: int = Field(description="Times the reconciler or a re-drive sent the job's message again")
    links: dict[str, str]


class DeadLettersOut(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[DeadLetterOut]
    next: str | None = Field(default=None, description="The next page, when there is one")


class RedriveOut(BaseModel):
    job_id: str
    kind: Literal["exhausted", "results"]
    status: JobState = Field(description="The state the job is back in")
    step: Step = Field(description="The step whose message was sent")
    queued: bool = Field(description="False: the queue was unreachable; the reconciler sends the message "
                                     "once the job is stale (reconcile_stale_s)")
    links: dict[str, str]


def _job_link(job_id: str) -> dict[str, str]:
    return {"job": f"/api/v1/jobs/{job_id}"}


@router.get(
    "/dead-letters",
    response_model=DeadLettersOut,
    summary="List dead letters",
    description="Jobs whose retries ran out (`exhausted`) and reviewed reports whose SR store-back to the PACS ran "
                "out of attempts (`results`), newest first. A rejected input is not listed: it would fail again.",
    responses=problem_responses(422),
    tags=["jobs"],
)
def list_dead_letters(
    request: Request,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size")] = 50,
    # Bounded: the database's BIGINT ends at 2**63 - 1, and no listing is that long.
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip")] = 0,
) -> DeadLettersOut:
    total, letters = dead.dead_letters(engine, limit, offset)
    items = [DeadLetterOut(job_id=d.job_id, study_id=d.study_uid, kind=d.kind, failed_step=dead.failed_step(d),
                           failed_from=d.failed_from, reason=d.reason, failed_at=d.failed_at, attempts=d.attempts,
                           requeue_count=d.requeue_count, links=_job_link(d.job_id))
             for d in letters]
    following = None
    if offset + len(items) < total:
        following = f"{request.url.path}?limit={limit}&offset={offset + limit}"
    return DeadLettersOut(total=total, limit=limit, offset=offset, items=items, next=following)


@router.post(
    "/dead-letters/{job_id}/redrive",
    status_code=202,
    response_model=RedriveOut,
    summary="Re-drive a dead letter",
    description="Puts the job back to the state it failed from (a store-back: back to pending, with a fresh "
                "attempt budget), records it in the job's history and sends the step's message.",
    responses=problem_responses(404, 409, descriptions={404: "No such job", 409: "The job is not a dead letter"}),
    tags=["jobs"],
)
def redrive_job(job_id: str, response: Response, engine: EngineDep, settings: SettingsDep,
                request: Request, background: BackgroundTasks) -> RedriveOut:
    try:
        if settings.queue_backend.strip().lower() == "celery":
            with dead.celery_dispatcher(settings) as dispatcher:
                done = dead.redrive(engine, dispatcher, job_id, "the API")
        else:  # in-process pipeline: run the rest of the job after answering
            local = InProcessDispatcher()
            done = dead.redrive(engine, local, job_id, "the API")
            background.add_task(_drain, request.app.state.pipeline, local)
    except dead.UnknownJob:
        raise ProblemError(404, f"no job {job_id}", slug="unknown-job", title="Unknown job") from None
    except dead.NotADeadLetter as exc:
        raise ProblemError(409, str(exc), slug="not-a-dead-letter", title="Not a dead letter") from None
    response.headers["Location"] = f"/api/v1/jobs/{job_id}"
    return RedriveOut(job_id=done.job_id, kind=done.kind, status=done.state, step=done.step, queued=done.queued,
                      links=_job_link(done.job_id))


def _drain(ctx, dispatcher: InProcessDispatcher) -> None:  # noqa: ANN001 - PipelineContext
    from libs.pipeline.embedded import drain

    try:
        drain(ctx, dispatcher)
    except Exception as exc:  # noqa: BLE001 - drain stored the reason in the job
        log.warning("re-driven job failed again in the in-process pipeline: %s", type(exc).__name__)


# ---------------------------------------------------------------- the automation switch


class AutomationOut(BaseModel):
    mode: Literal["automatic", "co-sign"] = Field(
        description="co-sign: every new report requires a radiologist and nothing is sent to a PACS by itself")
    reason: str | None = None
    since: dt.datetime | None = None
    actor: str | None = Field(default=None, description="Who switched it (kind:id)")
    source: str | None = Field(default=None, description="api, cli or alertmanager")
    changed: bool | None = Field(default=None, description="False: it was already in this mode (nothing recorded)")
    released: int | None = Field(default=None, description="On resume: held SR store-backs now sent")
    rolled_back: list[str] | None = Field(default=None, description="Alertmanager: the lifecycle changes an alert "
                                          "labelled model=rollback made ('<model>: <from> -> <to>')")


class SwitchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=automation.MAX_REASON, description="Why (kept with who and when)")


def _automation_out(state: automation.AutomationState, **extra) -> AutomationOut:  # noqa: ANN003
    return AutomationOut(mode=state.mode, reason=state.reason, since=state.since, actor=state.actor,
                         source=state.source, **extra)


@router.get("/automation", response_model=AutomationOut, summary="Automation mode", tags=["automation"])
def automation_status(engine: EngineDep) -> AutomationOut:
    return _automation_out(automation.current(engine))


@router.post("/automation/pause", response_model=AutomationOut, summary="Pause automation (co-sign mode)",
             description="Every new report then requires a radiologist, with this reason, and its SR store-back "
                         "is held until automation resumes. Pausing while paused changes nothing.",
             responses=problem_responses(422), tags=["automation"])
def pause_automation(body: SwitchIn, engine: EngineDep, principal: PrincipalDep) -> AutomationOut:
    state, changed = automation.pause(engine, body.reason, principal.agent, "api")
    if changed:
        log.warning("automation paused by %s through the API", principal.agent)
    return _automation_out(state, changed=changed)


@router.post("/automation/resume", response_model=AutomationOut, summary="Resume automation",
             description="Back to automatic mode; held SR store-backs are sent. Only people resume: a resolved "
                         "alert does not.", responses=problem_responses(422), tags=["automation"])
def resume_automation(body: SwitchIn, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep,
                      request: Request, background: BackgroundTasks) -> AutomationOut:
    state, changed, released = automation.resume(engine, body.reason, principal.agent, "api")
    if changed:
        log.warning("automation resumed by %s through the API; %d held store-backs released", principal.agent,
                    len(released))
    send_qa(settings, request.app.state.pipeline, background, released)
    return _automation_out(state, changed=changed, released=len(released))


# Alertmanager's webhook payload (version 4): only what is read here is declared; the rest is ignored.
class AlertIn(BaseModel):
    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class AlertmanagerIn(BaseModel):
    version: str | None = None
    status: str | None = None
    alerts: list[AlertIn] = Field(default_factory=list, max_length=1000)


PAUSE_LABEL = ("automation", "pause")  # a rule with this label pauses automation while it fires
ROLLBACK_LABEL = ("model", "rollback")  # ... and this one rolls a canary or a fresh promotion back


def _firing(body: AlertmanagerIn, label: tuple[str, str]) -> list[AlertIn]:
    return [a for a in body.alerts if a.status == "firing" and a.labels.get(label[0]) == label[1]]


def _alert_reason(alerts: list[AlertIn]) -> str:
    names = sorted({a.labels.get("alertname", "unnamed alert") for a in alerts})
    summary = next((a.annotations.get("summary") for a in alerts if a.annotations.get("summary")), "")
    return f"alert {', '.join(names)}" + (f": {summary}" if summary else "")


@router.post("/alertmanager", response_model=AutomationOut, summary="Alertmanager webhook",
             description="Pauses automation when a firing alert carries the label `automation=\"pause\"`, and rolls "
                         "the model back (a canary off, or a production promoted within CXR_ROLLBACK_WINDOW_HOURS "
                         "replaced by the one before) when it carries `model=\"rollback\"` "
                         "(deploy/prometheus/rules.yml). Resolved alerts change nothing: an ops user resumes.",
             responses=problem_responses(422), tags=["automation"])
def alertmanager_webhook(body: AlertmanagerIn, engine: EngineDep, settings: SettingsDep,
                         principal: PrincipalDep) -> AutomationOut:
    rolled_back = None
    if rollback_alerts := _firing(body, ROLLBACK_LABEL):
        from libs.lifecycle import registry

        changes = registry.rollback(engine, settings, principal.agent, _alert_reason(rollback_alerts), "alertmanager")
        rolled_back = [f"{e.model_id}: {e.from_state} -> {e.to_state}" for e in changes]
        if changes:
            log.warning("model rolled back by Alertmanager (%s): %s", _alert_reason(rollback_alerts), "; ".join(rolled_back))
    firing = _firing(body, PAUSE_LABEL)
    if not firing:
        return _automation_out(automation.current(engine), changed=False, rolled_back=rolled_back)
    state, changed = automation.pause(engine, _alert_reason(firing), principal.agent, "alertmanager")
    if changed:
        log.warning("automation paused by Alertmanager (%s)", _alert_reason(firing))
    return _automation_out(state, changed=changed, rolled_back=rolled_back)
