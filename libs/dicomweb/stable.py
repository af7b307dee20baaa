"""The stable-study watcher: a study pushed with STOW-RS gets a report job on its own once complete.

A PACS forwarding a study sends its instances one request at a time (or in a few), and nothing
says "that was the last one". Like Orthanc's StableAge, a study counts as complete when no instance
of it has arrived for `stable_study_age_s` seconds. The watcher then creates a job with the default
request (every stored instance, standard template) unless the study already has one, for example
because the EHR asked for it (POST /api/v1/studies/{id}/report, which starts at once).

Where it runs: in the gateway process, as a background task of its lifespan, when
`CXR_AUTO_REPORT_ON_STABLE=true` (services/gateway/main.py). It needs what the gateway has: the
database and the publisher. Several gateway replicas may all run it: the job's idempotency key
(`stable:<StudyInstanceUID>`) makes the first one win, and only the winner publishes.
Studies whose last instance is older than `stable_study_lookback_s` are never picked up, so
switching the watcher on does not report an archive's worth of old studies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import Engine, exists, func, select
from sqlalchemy.orm import Session

from libs.core.config import Settings
from libs.domain.request import ReportRequest
from libs.pipeline.messages import StepMessage
from libs.storage import crud
from libs.storage.db import session_scope
from libs.storage.models import InstanceRow, JobRow

log = logging.getLogger(__name__)

BATCH = 50


def stable_studies(session: Session, *, now: dt.datetime, age_s: float, lookback_s: float,
                   limit: int = BATCH) -> list[str]:
    """Studies whose newest instance arrived between `lookback_s` and `age_s` ago and that have no job."""
    since = now - dt.timedelta(seconds=lookback_s)
    cutoff = now - dt.timedelta(seconds=age_s)
    latest = (
        select(InstanceRow.study_uid.label("study_uid"), func.max(InstanceRow.received_at).label("last"))
        .where(InstanceRow.received_at >= since)
        .group_by(InstanceRow.study_uid)
        .subquery()
    )
    query = (
        select(latest.c.study_uid)
        .where(latest.c.last <= cutoff)
        .where(~exists().where(JobRow.study_uid == latest.c.study_uid))
        .order_by(latest.c.last)
        .limit(limit)
    )
    return list(session.scalars(query))


def stable_key(study_uid: str) -> str:
    return f"stable:{study_uid}"


def sweep(engine: Engine, settings: Settings, publish: Callable[[StepMessage], None],
          now: dt.datetime | None = None) -> list[str]:
    """One pass: creates and publishes a job per stable study; returns the new jobs' ids."""
    now = now or dt.datetime.now(dt.timezone.utc)
    with session_scope(engine) as session:
        studies = stable_studies(session, now=now, age_s=settings.stable_study_age_s,
                                 lookback_s=settings.stable_study_lookback_s)
    created_ids = []
    for study_uid in studies:
        with session_scope(engine) as session:
            job, created = crud.create_job(session, study_uid, ReportRequest(), idempotency_key=stable_key(study_uid))
            job_id, priority = job.id, job.priority
        if not created:
            continue
        try:
            publish(StepMessage(job_id=job_id, priority=priority))
        except Exception as exc:  # noqa: BLE001 - the queue is down: drop the job, the next pass retries
            log.error("stable study %s: job %s not queued (%s); it will be tried again", study_uid, job_id, exc)
            with session_scope(engine) as session:
                row = crud.get_job(session, job_id)
                if row is not None:
                    session.delete(row)
            continue
        log.info("stable study %s: no new instance for %gs, job %s created", study_uid,
                 settings.stable_study_age_s, job_id)
        created_ids.append(job_id)
    return created_ids


class StableStudyWatcher:
    """Runs `sweep` every `stable_study_poll_s` seconds on an asyncio loop (the gateway's)."""

    def __init__(self, engine: Engine, settings: Settings, publish: Callable[[StepMessage], None]) -> None:
        self.engine = engine
        self.settings = settings
        self.publish = publish
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stable-study-watcher")
        log.info("stable-study watcher on: a pushed study gets a job %gs after its last instance",
                 self.settings.stable_study_age_s)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(sweep, self.engine, self.settings, self.publish)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the watcher
                log.exception("stable-study sweep failed; trying again")
            await asyncio.sleep(self.settings.stable_study_poll_s)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
