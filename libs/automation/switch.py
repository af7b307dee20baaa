"""Automatic or co-sign mode, kept in SQL so every process sees the same switch.

Co-sign mode ("pause automation"): the QA step marks every new report
`requires_radiologist_review` with the pause's reason, and holds its DICOM SR store-back
(`results_state = held`) instead of sending it; nothing else leaves the platform by itself. Resuming
(an ops user only: an alert that resolves does not resume) releases the held store-backs.

Every switch is a row in `automation_events` (who, why, from where); the latest is the state. No row:
automatic.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from libs.domain.job import JobState
from libs.storage import crud
from libs.storage.db import session_scope
from libs.storage.models import AutomationEventRow, JobRow

AUTOMATIC, CO_SIGN = "automatic", "co-sign"
MAX_REASON = 500


@dataclass(frozen=True)
class AutomationState:
    mode: str
    reason: str | None = None
    since: dt.datetime | None = None
    actor: str | None = None
    source: str | None = None

    @property
    def paused(self) -> bool:
        return self.mode == CO_SIGN


def current(engine: Engine) -> AutomationState:
    with session_scope(engine) as session:
        return state_in(session)


def state_in(session) -> AutomationState:  # noqa: ANN001 - Session
    row = session.scalars(select(AutomationEventRow).order_by(AutomationEventRow.id.desc()).limit(1)).first()
    if row is None:
        return AutomationState(AUTOMATIC)
    return AutomationState(row.mode, row.reason, crud.aware(row.at), row.actor, row.source)


def review_reason(state: AutomationState) -> str:
    return f"automation paused (co-sign mode): {state.reason}"


def _switch(engine: Engine, mode: str, reason: str, actor: str, source: str) -> tuple[AutomationState, bool]:
    reason = " ".join(reason.split())[:MAX_REASON]
    if not reason:
        raise ValueError("a reason is required")
    with session_scope(engine) as session:
        before = state_in(session)
        if before.mode == mode:
            return before, False  # already so: the first reason and actor stand
        session.add(AutomationEventRow(at=dt.datetime.now(dt.timezone.utc), mode=mode, reason=reason, actor=actor,
                                       source=source))
        session.flush()
        return state_in(session), True


def pause(engine: Engine, reason: str, actor: str, source: str) -> tuple[AutomationState, bool]:
    """Co-sign mode; (state, changed). Pausing while paused changes nothing."""
    return _switch(engine, CO_SIGN, reason, actor, source)


def resume(engine: Engine, reason: str, actor: str, source: str) -> tuple[AutomationState, bool, list[str]]:
    """Automatic mode; (state, changed, job ids whose held SR store-back is now pending: the caller
    sends each its QA message, or the reconciler does once they are stale)."""
    state, changed = _switch(engine, AUTOMATIC, reason, actor, source)
    released: list[str] = []
    if changed:
        with session_scope(engine) as session:
            released = list(session.scalars(select(JobRow.id).where(
                JobRow.state == JobState.REVIEWED.value, JobRow.results_state == crud.RESULTS_HELD)))
            if released:
                session.execute(update(JobRow).where(JobRow.id.in_(released), JobRow.results_state == crud.RESULTS_HELD)
                                .values(results_state=crud.RESULTS_PENDING).execution_options(synchronize_session=False))
    return state, changed, released
