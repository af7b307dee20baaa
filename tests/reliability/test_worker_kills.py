"""kill -9 of each step worker in the middle of a step: every job is still reviewed, each state once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from libs.pipeline.steps import CONSUMER
from libs.domain.job import JobState
from tests.integration.conftest import SERVICES, Platform
from tests.reliability.conftest import (
    PIPELINE,
    RECONCILE_ENV,
    events,
    job_row,
    received_count,
    small_dx,
    submit,
    wait_state,
    wait_until,
    worker_pid,
)

pytestmark = pytest.mark.integration

STEP_DELAY_S = 3  # each step sleeps this long before working: the window the kill lands in
CONSUMES = {step.value: state.value for state, step in CONSUMER.items() if state is not JobState.REVIEWED}


def test_kill_9_of_each_worker_mid_step_every_job_completes_exactly_once(
        platform: Platform, engine, make_chest_dicom) -> None:  # noqa: ANN001
    for svc in SERVICES:
        platform.start(svc, CXR_STEP_DELAY_S=str(STEP_DELAY_S))
    platform.start("gateway")
    # Stale only after two slow steps: the redelivery of the killed worker's message (acks_late,
    # visibility timeout 6 s) usually comes first; either way the steps' compare-and-set keeps one result.
    platform.start("reconciler", **{**RECONCILE_ENV, "CXR_RECONCILE_STALE_S": "8"})
    platform.wait_ready()
    make = small_dx(make_chest_dicom)

    jobs, killed = [], []
    for svc in SERVICES:
        seen = received_count(platform, svc)
        _, job_id = submit(platform, make)
        jobs.append(job_id)
        # The job is waiting for this step and the worker has taken a message: it is inside the step's delay.
        wait_until(lambda: job_row(engine, job_id)["state"] == CONSUMES[svc] and received_count(platform, svc) > seen,
                   60, f"the {svc} worker to take job {job_id}", platform)
        time.sleep(0.5)
        assert job_row(engine, job_id)["state"] == CONSUMES[svc]  # still mid-step: nothing committed yet
        pid = worker_pid(platform, svc)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        # The supervisor starts a new worker process.
        wait_until(lambda: worker_pid(platform, svc) != pid, 30, f"a new {svc} worker", platform)

    for job_id in jobs:
        assert wait_state(engine, job_id, {"reviewed", "failed"}, 120, platform) == "reviewed"
    for job_id in jobs:
        assert events(engine, job_id) == PIPELINE, (job_id, events(engine, job_id))
    logs = "".join(p.read_text(errors="replace") for p in platform.log_dir.glob("*.log"))
    for pid in killed:
        assert f"(pid {pid}) killed by signal 9; starting it again" in logs
