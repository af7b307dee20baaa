"""A report SR that the PACS did not take is retried by the reconciler, not left failed; one out of
attempts is a dead letter that ops re-drive."""

from __future__ import annotations

import httpx
import pytest

from libs.core.config import Settings
from tests.integration.conftest import SERVICES, Platform
from tests.reliability.conftest import (
    RECONCILE_ENV,
    StowStandIn,
    job_row,
    pacs_env,
    small_dx,
    submit,
    wait_state,
    wait_until,
)

SRS = len(Settings().sr_templates)  # the SRs stored per report (text and TID 1500 by default)

pytestmark = pytest.mark.integration


def _results(engine, job_id: str) -> tuple[str | None, int]:  # noqa: ANN001
    row = job_row(engine, job_id)
    return row["results_state"], int((row["results"] or {}).get("attempts") or 0)


def test_sr_store_back_is_retried_until_stored_and_dead_lettered_when_out_of_attempts(
        platform: Platform, engine, stow_stand_in: StowStandIn, make_chest_dicom) -> None:  # noqa: ANN001
    env = {**pacs_env(stow_stand_in.entry()), "CXR_RESULTS_MAX_ATTEMPTS": "2"}
    for svc in SERVICES:
        platform.start(svc, **env)
    platform.start("gateway", **env)
    platform.start("reconciler", **env, **RECONCILE_ENV)
    platform.wait_ready()
    make = small_dx(make_chest_dicom)

    # The PACS is down for both attempts of A: A becomes a dead letter, its report is safe.
    _, a = submit(platform, make)
    assert wait_state(engine, a, {"reviewed", "failed"}, 90, platform) == "reviewed"
    wait_until(lambda: _results(engine, a) == ("dead", 2), 60, "A's store-back to run out of attempts", platform)
    detail = job_row(engine, a)["results"]["servers"]["archive"]
    assert detail["status"] == "failed" and detail["detail"]

    # B's first attempt fails; the PACS comes back; the reconciler's retry stores it, nobody acts.
    _, b = submit(platform, make)
    wait_until(lambda: _results(engine, b) == ("failed", 1), 90, "B's first store-back to fail", platform)
    stow_stand_in.start()
    wait_until(lambda: _results(engine, b) == ("stored", 2), 60, "B's retried store-back", platform)
    assert stow_stand_in.posts == SRS  # one STOW-RS request per report SR
    assert job_row(engine, b)["requeue_count"] >= 1
    assert _results(engine, a) == ("dead", 2)  # a dead letter waits for ops

    url = f"{platform.base_url}/api/v1/ops/dead-letters"
    [item] = httpx.get(url, headers=platform.headers).json()["items"]
    assert (item["job_id"], item["kind"], item["failed_step"], item["failed_from"], item["attempts"]) == \
        (a, "results", "qa", "reviewed", 2)
    done = httpx.post(f"{url}/{a}/redrive", headers=platform.headers)
    assert done.status_code == 202, done.text
    assert (done.json()["kind"], done.json()["status"], done.json()["step"]) == ("results", "reviewed", "qa")
    wait_until(lambda: _results(engine, a) == ("stored", 1), 60, "A's re-driven store-back", platform)
    assert stow_stand_in.posts == 2 * SRS
    assert httpx.get(url, headers=platform.headers).json()["total"] == 0
