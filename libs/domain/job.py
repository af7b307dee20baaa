"""A report job and its state machine.

received → preprocessed → inferred → formatted → reviewed, and any non-terminal state → failed.
Each step of the pipeline owns exactly one transition; the storage layer applies it with a
compare-and-set so a redelivered queue message can never run a step twice.

One way leads out of `failed`: an operator re-driving a dead letter (retries ran out) puts the job
back to the state it failed from (`check_redrive`); nothing else may leave a terminal state.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum

from pydantic import BaseModel, Field


class JobState(str, Enum):
    RECEIVED = "received"
    PREPROCESSED = "preprocessed"
    INFERRED = "inferred"
    FORMATTED = "formatted"
    REVIEWED = "reviewed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobState.REVIEWED, JobState.FAILED)


# The step that moves a job out of each state, in pipeline order.
PIPELINE: tuple[JobState, ...] = (
    JobState.RECEIVED,
    JobState.PREPROCESSED,
    JobState.INFERRED,
    JobState.FORMATTED,
    JobState.REVIEWED,
)


class InvalidTransition(Exception):
    def __init__(self, current: JobState, target: JobState):
        super().__init__(f"job cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def next_state(state: JobState) -> JobState | None:
    if state.terminal:
        return None
    return PIPELINE[PIPELINE.index(state) + 1]


def check_transition(current: JobState, target: JobState) -> None:
    if target is JobState.FAILED and not current.terminal:
        return
    if next_state(current) is not target:
        raise InvalidTransition(current, target)


def check_redrive(current: JobState, target: JobState, failed_from: JobState | None) -> None:
    """failed → the state it failed from, and only that: the re-drive of a dead letter.

    Kept apart from `check_transition` on purpose, so no pipeline step can ever take this edge;
    only the re-drive path (libs/pipeline/redrive.py via crud.redrive) calls it.
    """
    if current is JobState.FAILED and failed_from is not None and not failed_from.terminal and target is failed_from:
        return
    raise InvalidTransition(current, target)


class Job(BaseModel):
    id: str
    study_uid: str
    state: JobState
    priority: str = "routine"
    error: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    history: dict[str, dt.datetime] = Field(default_factory=dict, description="state → when it was entered")
