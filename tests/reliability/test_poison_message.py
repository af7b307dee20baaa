"""A poison message: a study whose step kills its worker every time (as a crash in a native image decoder,
or the OOM killer, would). Under acks_late it would be delivered for ever; with the delivery count the job
fails as a dead letter after CXR_MAX_DELIVERIES deliveries, says why, and a re-drive starts it afresh."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from tests.integration.conftest import SERVICES, Platform
from tests.reliability.conftest import (
    PIPELINE,
    events,
    job_row,
    received_count,
    small_dx,
    submit,
    wait_state,
    wait_until,
    worker_pid,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

MAX_DELIVERIES = 2


def test_a_message_that_kills_its_worker_becomes_a_dead_letter_and_can_be_redriven(
        platform: Platform, engine, make_chest_dicom) -> None:  # noqa: ANN001
    for svc in SERVICES:
        # The ingestion step waits 3 s before working: the window in which its worker "crashes".
        extra = {"CXR_STEP_DELAY_S": "3"} if svc == "ingestion" else {}
        platform.start(svc, CXR_MAX_DELIVERIES=str(MAX_DELIVERIES), **extra)
    platform.start("gateway")
    platform.wait_ready()
    seen = received_count(platform, "ingestion")
    _, job_id = submit(platform, small_dx(make_chest_dicom))
    for crash in range(MAX_DELIVERIES):
        wait_until(lambda: received_count(platform, "ingestion") > seen, 60,  # noqa: B023 - read at once
                   f"delivery {crash + 1} of job {job_id} to ingestion", platform)
        seen = received_count(platform, "ingestion")
        pid = worker_pid(platform, "ingestion")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: worker_pid(platform, "ingestion") != pid, 30, "a new ingestion worker", platform)
        assert job_row(engine, job_id)["state"] == "received"
    # The next delivery is not run: the job fails, with the reason, as a dead letter.
    assert wait_state(engine, job_id, {"failed"}, 90, platform) == "failed"
    row = job_row(engine, job_id)
    assert row["failure_kind"] == "exhausted"
    assert f"its worker died {MAX_DELIVERIES} times" in row["error"]
    api = httpx.Client(base_url=platform.base_url, headers=platform.headers, timeout=30)
    letters = api.get("/api/v1/ops/dead-letters").json()
    assert job_id in [d["job_id"] for d in letters["items"]]
    # Fixed (here: nobody kills the worker any more), it is re-driven and completes once.
    assert api.post(f"/api/v1/ops/dead-letters/{job_id}/redrive").status_code in (200, 202)
    assert wait_state(engine, job_id, {"reviewed", "failed"}, 90, platform) == "reviewed"
    assert events(engine, job_id)[-len(PIPELINE) + 1:] == PIPELINE[1:]
