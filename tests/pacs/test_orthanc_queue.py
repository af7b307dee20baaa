"""With real worker processes (Celery on Redis, jobs in PostgreSQL): a PACS that is down is retried by
the queue with backoff, then the job fails with the reason; and a study pulled from a real Orthanc
is reported by the four workers, its SR stored back."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.integration.conftest import (  # noqa: F401 - fixtures
    Platform,
    SERVICES,
    pg_database,
    platform,
    platform_env,
    random_bundle_512,
)
from tests.pacs.conftest import ChestStudy
from tests.pacs.fakes import hanging_server
from tests.pacs.orthanc import Orthanc
from libs.core.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.pacs]


def _job(engine, job_id: str) -> dict:  # noqa: ANN001
    with engine.connect() as conn:
        row = conn.execute(text("SELECT state, error, results_state FROM jobs WHERE id = :id"), {"id": job_id}).one()
    return {"state": row[0], "error": row[1], "results_state": row[2]}


def _wait(engine, job_id: str, done, timeout: float, platform: Platform) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    job = _job(engine, job_id)
    while not done(job):
        assert time.monotonic() < deadline, (job, platform.logs())
        time.sleep(0.2)
        job = _job(engine, job_id)
    return job


def test_pacs_timing_out_is_retried_by_the_queue_then_fails(platform: Platform, chest_study: ChestStudy) -> None:
    server = hanging_server()
    try:
        pacs = [{"name": "slow", "url": server.url, "retries": 1, "backoff_s": 0.05, "read_timeout_s": 0.5}]
        platform.env.update(CXR_PACS=json.dumps(pacs), CXR_TASK_MAX_RETRIES="2", CXR_TASK_RETRY_BACKOFF_MAX_S="1")
        platform.start("ingestion")
        platform.start("gateway")
        platform.wait_ready()
        engine = create_engine(platform.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
        posted = httpx.post(f"{platform.base_url}/api/v1/studies/{chest_study.study_uid}/report", json={}, timeout=30, headers=platform.headers)
        assert posted.status_code == 202, posted.text
        job = _wait(engine, posted.json()["job_id"], lambda j: j["state"] == "failed", 120, platform)
        assert job["error"].startswith(
            f"ingestion failed after 3 attempts: PACS 'slow' ({server.url}) timed out while looking for study "
            f"{chest_study.study_uid} (QIDO-RS): no answer within 0.5 s, after 2 attempt(s)"), job
        assert server.connections == 6  # 3 deliveries by the queue x (1 try + 1 HTTP retry)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM instances")).scalar() == 0
        engine.dispose()
    finally:
        server.close()


def test_pull_report_and_store_back_with_four_workers(platform: Platform, orthanc: Orthanc,
                                                      chest_study: ChestStudy) -> None:
    for data in chest_study.files:
        orthanc.upload(data)
    platform.env.update(CXR_PACS=json.dumps([orthanc.pacs_entry(store_results=True)]))
    for svc in SERVICES:
        platform.start(svc)
    platform.start("gateway")
    platform.wait_ready()
    engine = create_engine(platform.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    posted = httpx.post(f"{platform.base_url}/api/v1/studies/{chest_study.study_uid}/report", json={}, timeout=30, headers=platform.headers)
    assert posted.status_code == 202, posted.text
    job = _wait(engine, posted.json()["job_id"],
                lambda j: j["state"] == "failed" or j["results_state"] not in (None, "pending"), 180, platform)
    assert (job["state"], job["results_state"]) == ("reviewed", "stored"), (job, platform.logs())
    with orthanc.client() as c:
        found = c.get("/dicom-web/studies/" + chest_study.study_uid + "/series", params={"Modality": "SR"}).json()
    assert len(found) == len(Settings().sr_templates)  # each report SR in its own series
    engine.dispose()
