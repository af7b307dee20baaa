"""Redis loses every message while jobs are in flight; the reconciler re-enqueues them from SQL."""

from __future__ import annotations

import pytest

from tests.integration.conftest import SERVICES, Platform
from tests.reliability.conftest import (
    PIPELINE,
    RECONCILE_ENV,
    RedisServer,
    events,
    job_row,
    small_dx,
    submit,
    wait_state,
    wait_until,
)

pytestmark = pytest.mark.integration

JOBS = 5


def test_redis_restart_with_jobs_in_flight_every_job_is_reviewed_once(
        platform: Platform, redis_server: RedisServer, engine, make_chest_dicom) -> None:  # noqa: ANN001
    # Each step waits a second first, so five jobs are still spread over the queues when Redis dies.
    for svc in SERVICES:
        platform.start(svc, CXR_STEP_DELAY_S="1")
    platform.start("gateway", CXR_AUTH_DISABLED="true")
    platform.start("reconciler", **RECONCILE_ENV)
    platform.wait_ready()

    make = small_dx(make_chest_dicom)
    jobs = [submit(platform, make)[1] for _ in range(JOBS)]
    # At least one job has moved (the workers are taking work) and most are still waiting.
    wait_until(lambda: any(job_row(engine, j)["state"] != "received" for j in jobs), 60, "a job to start", platform)
    before = {j: job_row(engine, j)["state"] for j in jobs}
    redis_server.restart()  # kill -9, no persistence: queued and unacknowledged messages are gone
    waiting = [j for j, s in before.items() if s not in ("reviewed", "failed")]
    assert len(waiting) >= 3, before

    for job_id in jobs:
        assert wait_state(engine, job_id, {"reviewed", "failed"}, 90, platform) == "reviewed", platform.logs()
    for job_id in jobs:
        assert events(engine, job_id) == PIPELINE, (job_id, events(engine, job_id))
    # The reconciler, not luck, moved the jobs whose messages were lost.
    assert sum(job_row(engine, j)["requeue_count"] > 0 for j in waiting) >= 1, platform.logs()
    log = (platform.log_dir / next(p.name for p in platform.log_dir.glob("reconciler-*.log"))).read_text()
    assert "re-enqueued job" in log and "the leader" in log
