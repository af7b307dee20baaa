"""One pass of the reconciler: send again the message of every job that stopped moving.

Job state lives in SQL, queue messages in Redis. When Redis loses its messages (a restart without
persistence, a flush, a failover) the SQL rows still say where each job is, but nothing would ever
move them again. This pass finds them and re-publishes the message each one is waiting for:

- a job in flight (received … formatted) unchanged for `reconcile_stale_s` — its max(updated_at,
  requeued_at) older than that — gets the message of the step that consumes its state;
- a reviewed job whose DICOM SR store-back is pending, partial or failed, equally stale, is set
  back to pending and gets its QA message again (the QA step on a reviewed job stores the SR);
  one out of attempts (`results_max_attempts`) becomes a dead letter instead.

Why duplicates are harmless: every step is a compare-and-set on the job's state (libs/pipeline/steps.py),
so a message sent again for a job whose original message was only slow does no second piece of work
and leaves no second result; the cost is at most a wasted step. That is why `reconcile_stale_s` should
exceed the longest a message normally waits in a queue plus the slowest step.

Each job is claimed with a compare-and-set on its state and staleness before its message goes out, so
two reconcilers (two replicas racing for the leader lock) never both send one. Nothing here logs or
returns patient data: job ids, states and steps only.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from libs.pipeline.context import PipelineContext
from libs.pipeline.dispatch import Dispatcher
from libs.pipeline.messages import Step, StepMessage
from libs.pipeline.steps import CONSUMER
from libs.storage import crud
from libs.storage.db import session_scope

log = logging.getLogger(__name__)

# Jobs handled per pass and kind; the rest wait for the next pass (it comes every reconcile_interval_s).
BATCH = 200

REQUEUED = "requeued"  # a pipeline job's step message was sent again
RESULTS_REQUEUED = "results-requeued"  # a store-back was set back to pending and its QA message sent
RESULTS_DEAD = "results-dead"  # a store-back ran out of attempts: now a dead letter


@dataclass(frozen=True)
class Action:
    """What the pass did to one job (for the log and the tests; ids and states only)."""

    job_id: str
    kind: str
    state: str  # the job's state, or the store-back's results_state before the action
    step: Step | None
    requeue_count: int | None


def reconcile_once(ctx: PipelineContext, dispatcher: Dispatcher, now: dt.datetime | None = None) -> list[Action]:
    """One pass. A failure to publish propagates (Redis is down: the next pass tries again; the job
    it was sending for was already marked requeued, so it goes out again one stale period later)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(seconds=ctx.settings.reconcile_stale_s)
    actions = _requeue_jobs(ctx, dispatcher, cutoff)
    # Only a reconciler configured with the PACS that take results retries them: without that list
    # the QA step would not store anything either, and the job would come back every pass.
    if ctx.settings.result_servers:
        actions += _requeue_results(ctx, dispatcher, cutoff)
    return actions


def _requeue_jobs(ctx: PipelineContext, dispatcher: Dispatcher, cutoff: dt.datetime) -> list[Action]:
    with session_scope(ctx.engine) as session:
        stale = crud.stale_jobs(session, cutoff, BATCH)
    actions = []
    for job in stale:
        with session_scope(ctx.engine) as session:
            count = crud.mark_requeued(session, job.id, job.state, cutoff)
        if count is None:  # it moved since we looked, or another reconciler claimed it
            continue
        step = CONSUMER[job.state]
        # Committed before publishing: a crash in between leaves the job stale again, never lost.
        dispatcher.send(step, StepMessage(job_id=job.id, priority=job.priority, image_path=job.image_path))
        actions.append(Action(job.id, REQUEUED, job.state.value, step, count))
    return actions


def _requeue_results(ctx: PipelineContext, dispatcher: Dispatcher, cutoff: dt.datetime) -> list[Action]:
    with session_scope(ctx.engine) as session:
        stale = crud.stale_results(session, cutoff, BATCH)
    actions = []
    for job in stale:
        out_of_attempts = job.results_state != crud.RESULTS_PENDING and job.attempts >= ctx.settings.results_max_attempts
        with session_scope(ctx.engine) as session:
            if out_of_attempts:  # results.py dead-letters on the last attempt; this catches a lowered limit
                if crud.dead_letter_results(session, job.id, job.results_state):
                    actions.append(Action(job.id, RESULTS_DEAD, job.results_state, None, None))
                continue
            count = crud.requeue_results(session, job.id, job.results_state, cutoff)
        if count is None:
            continue
        dispatcher.send(Step.QA, StepMessage(job_id=job.id, priority=job.priority))
        actions.append(Action(job.id, RESULTS_REQUEUED, job.results_state, Step.QA, count))
    return actions


def describe(action: Action) -> str:
    """One log line, PHI-free."""
    if action.kind == REQUEUED:
        return (f"re-enqueued job {action.job_id}: {action.state}, message for {action.step.value if action.step else '?'} "
                f"sent again (requeue #{action.requeue_count})")
    if action.kind == RESULTS_REQUEUED:
        return (f"re-drove the report SR store-back of job {action.job_id} ({action.state} → pending, "
                f"qa message sent, requeue #{action.requeue_count})")
    return f"report SR store-back of job {action.job_id} dead-lettered ({action.state}, out of attempts)"

