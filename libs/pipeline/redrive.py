"""Dead letters, and re-driving them: shared by the ops API (services/gateway/api/routes/ops.py) and
the command line (`cxr-report jobs`, libs/pipeline/cli.py).

A dead letter is a job the platform gave up on although its input was fine:
- `exhausted`: a step's retries ran out (failed, failure_kind "exhausted"); re-driving puts the job
  back to the state it failed from and sends that state's step message, with a fresh retry budget;
- `results`: the report is reviewed but its DICOM SR store-back to the PACS ran out of attempts;
  re-driving sets it back to pending with a fresh attempt budget and sends the QA message.
A rejected input (failure_kind "rejected") is not one: it would be rejected again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from libs.core.config import Settings
from libs.domain.job import JobState
from libs.pipeline.dispatch import CeleryDispatcher, Dispatcher
from libs.pipeline.messages import Step, StepMessage
from libs.pipeline.steps import CONSUMER
from libs.storage import crud
from libs.storage.db import session_scope

log = logging.getLogger(__name__)


class UnknownJob(Exception):
    pass


NotADeadLetter = crud.NotADeadLetter


@dataclass(frozen=True)
class Redrive:
    job_id: str
    kind: str  # crud.DEAD_PIPELINE or crud.DEAD_RESULTS
    state: JobState  # the state the job is back in
    step: Step  # whose message was sent
    queued: bool  # False: publishing failed; the reconciler sends it once the job is stale


def failed_step(letter: crud.DeadLetter) -> Step:
    """The step that gave up: the one consuming the state the job failed from (QA for a store-back)."""
    return CONSUMER[letter.failed_from]


def dead_letters(engine: Engine, limit: int = 50, offset: int = 0) -> tuple[int, list[crud.DeadLetter]]:
    """(total, one page of dead letters, newest first)."""
    with session_scope(engine) as session:
        return crud.count_dead_letters(session), crud.list_dead_letters(session, limit, offset)


def redrive(engine: Engine, dispatcher: Dispatcher, job_id: str, by: str) -> Redrive:
    """Re-drives one dead letter. Raises UnknownJob, or NotADeadLetter for any other job.

    `by` says through what the operator acted ("the API", "the CLI"); who it was is in the audit trail.
    """
    with session_scope(engine) as session:
        back = crud.redrive(session, job_id, by)
    if back is None:
        raise UnknownJob(f"no job {job_id}")
    step = CONSUMER[back.state]
    try:
        dispatcher.send(step, StepMessage(job_id=back.job_id, priority=back.priority, image_path=back.image_path))
        queued = True
    except Exception as exc:  # noqa: BLE001 - committed already: the reconciler sends it when stale
        log.warning("job %s re-driven but its %s message not sent (%s); the reconciler will send it",
                    job_id, step.value, type(exc).__name__)
        queued = False
    log.info("dead letter %s (%s) re-driven through %s: back in %s, %s message %s", job_id, back.kind, by,
             back.state.value, step.value, "sent" if queued else "pending")
    return Redrive(job_id=back.job_id, kind=back.kind, state=back.state, step=step, queued=queued)


@contextlib.contextmanager
def celery_dispatcher(settings: Settings) -> Iterator[CeleryDispatcher]:
    """A short-lived publisher on `settings`' broker (closed afterwards): re-drives are rare."""
    from libs.queue.celery_app import make_sender

    app = make_sender(settings)
    try:
        yield CeleryDispatcher(app)
    finally:
        app.close()
