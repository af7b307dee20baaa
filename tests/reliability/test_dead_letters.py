"""Dead letters: a job whose retries ran out is listed (ops API and CLI) and re-driven (API and CLI)
to a reviewed report; each re-drive is in the job's history and in the audit trail."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import text

from libs.auth import apikeys
from tests.integration.conftest import Platform
from tests.reliability.conftest import PIPELINE, cli, events, job_row, small_dx, submit, wait_state

pytestmark = pytest.mark.integration

BROKEN = {"CXR_BUNDLE_PATH": "/nonexistent/bundle", "CXR_TASK_MAX_RETRIES": "1", "CXR_TASK_RETRY_BACKOFF_MAX_S": "1"}
# A failed job's history, then the re-drive back to where it failed, then the rest of the pipeline.
REDRIVEN = ["received", "preprocessed", "failed", "preprocessed", "inferred", "formatted", "reviewed"]


def test_exhausted_jobs_are_listed_and_redriven_by_api_and_cli(platform: Platform, engine, make_chest_dicom) -> None:  # noqa: ANN001
    for svc in ("ingestion", "formatting", "qa"):
        platform.start(svc)
    platform.start("inference", **BROKEN)  # no model: every inference attempt fails, retries run out
    platform.start("gateway")
    platform.wait_ready()
    make = small_dx(make_chest_dicom)
    by_api, by_cli = (submit(platform, make)[1] for _ in range(2))
    for job_id in (by_api, by_cli):
        assert wait_state(engine, job_id, {"failed", "reviewed"}, 90, platform) == "failed"
        assert job_row(engine, job_id)["failure_kind"] == "exhausted"

    ops = {"X-API-Key": apikeys.create(engine, "ops on call", "ops")[1]}
    ehr = {"X-API-Key": apikeys.create(engine, "an EHR", "ehr")[1]}
    url = f"{platform.base_url}/api/v1/ops/dead-letters"
    assert httpx.get(url, headers=ehr).status_code == 403
    listing = httpx.get(url, headers=ops)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["total"] == 2 and {i["job_id"] for i in body["items"]} == {by_api, by_cli}
    for item in body["items"]:
        assert (item["kind"], item["failed_step"], item["failed_from"], item["attempts"]) == \
            ("exhausted", "inference", "preprocessed", 2)
        assert "inference failed after 2 attempts" in item["reason"]
    page = httpx.get(url, headers=ops, params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next"].endswith("limit=1&offset=1")

    env = platform.env
    listed = cli(env, "jobs", "dead-letters", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {i["job_id"] for i in json.loads(listed.stdout)["items"]} == {by_api, by_cli}

    platform.kill("inference")  # the model is back
    platform.start("inference")

    redrive = f"{url}/{by_api}/redrive"
    assert httpx.post(redrive, headers=ehr).status_code == 403
    done = httpx.post(redrive, headers=ops)
    assert done.status_code == 202, done.text
    assert done.json() | {"links": None} == {"job_id": by_api, "kind": "exhausted", "status": "preprocessed",
                                             "step": "inference", "queued": True, "links": None}
    assert wait_state(engine, by_api, {"reviewed", "failed"}, 90, platform) == "reviewed"
    again = httpx.post(redrive, headers=ops)
    assert again.status_code == 409 and "not a dead letter" in again.json()["detail"]
    assert httpx.post(f"{url}/no-such-job/redrive", headers=ops).status_code == 404

    ran = cli(env, "jobs", "redrive", by_cli)
    assert ran.returncode == 0, ran.stderr
    assert "re-driven (exhausted), back in preprocessed" in ran.stdout
    assert wait_state(engine, by_cli, {"reviewed", "failed"}, 90, platform) == "reviewed"
    assert cli(env, "jobs", "redrive", by_cli).returncode == 1  # not a dead letter any more

    for job_id in (by_api, by_cli):
        assert events(engine, job_id) == REDRIVEN
        assert job_row(engine, job_id)["error"] is None
    assert httpx.get(url, headers=ops).json()["total"] == 0
    with engine.connect() as conn:
        audit = conn.execute(text(
            "SELECT agent_type, entity_type, entity_id, action, outcome, http_status FROM audit_events "
            "WHERE operation IN ('redrive_job', 'jobs redrive') ORDER BY seq")).all()
    api_key_id = next(i.id for i in apikeys.list_keys(engine) if i.name == "ops on call")
    assert [tuple(r) for r in audit] == [
        ("apikey", "Job", by_api, "U", "4", 403),  # the EHR key, refused
        ("apikey", "Job", by_api, "U", "0", 202),
        ("apikey", "Job", by_api, "U", "4", 409),
        ("apikey", "Job", "no-such-job", "U", "4", 404),
        ("cli", "Job", by_cli, "U", "0", None),
    ]
    with engine.connect() as conn:
        agents = conn.execute(text("SELECT agent_id FROM audit_events WHERE operation = 'redrive_job' AND "
                                   "http_status = 202")).scalars().all()
    assert agents == [api_key_id]
