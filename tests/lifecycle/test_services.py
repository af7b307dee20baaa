"""The lifecycle with the real services: gateway and the four Celery workers on Redis and PostgreSQL.
A registered production model and a shadow candidate; then the candidate as a 50 % canary; then an
Alertmanager alert labelled model=rollback turns the canary off, and the workers follow within seconds."""

from __future__ import annotations

import time

import httpx
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, select

from libs.core.config import Settings
from libs.lifecycle import registry
from libs.lifecycle.routing import in_canary
from libs.storage.db import session_scope
from libs.storage.models import DriftSampleRow, JobRow, ModelOutputRow
from tests.integration.conftest import (  # noqa: F401 - fixtures
    SERVICES,
    Platform,
    pg_database,
    platform,
    platform_env,
    random_bundle_512,
)
from tests.integration.test_workers import stow
from tests.lifecycle.conftest import passed_gate

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]
DEPLOYMENT_CACHE_S = 6  # the workers re-read the registry at most every 5 s


def _report(platform: Platform, api: httpx.Client, make_chest_dicom, canary: bool) -> dict:  # noqa: ANN001
    uid = generate_uid()
    while in_canary(uid, 0.5) is not canary:
        uid = generate_uid()
    assert stow(platform.base_url, make_chest_dicom(study_uid=uid), platform.headers).status_code == 200
    assert api.post(f"/api/v1/studies/{uid}/report", json={}).status_code == 202
    got = api.get(f"/api/v1/studies/{uid}/report", params={"wait": 60}).json()
    assert got["status"] == "reviewed", platform.logs()
    return got


def _job(engine, job_id: str, wait_for_other: bool = True):  # noqa: ANN001, ANN202
    """(job row, the other model's outputs): the other model runs after the report, so wait for it a little."""
    deadline = time.monotonic() + 20
    while True:
        with session_scope(engine) as db:
            job = db.get(JobRow, job_id)
            db.expunge(job)
            others = [(o.model_id, o.role) for o in db.scalars(select(ModelOutputRow).where(ModelOutputRow.job_id == job_id))]
            sample = db.get(DriftSampleRow, job_id) is not None
        if (others and sample) or not wait_for_other or time.monotonic() > deadline:
            return job, others, sample
        time.sleep(0.3)


def test_shadow_canary_and_rollback_with_the_real_workers(platform: Platform, make_chest_dicom, tmp_path) -> None:  # noqa: ANN001, F811
    from libs.bundle.testing import build_random_bundle

    settings = Settings(data_dir=platform.env["CXR_DATA_DIR"], database_url=platform.env["DATABASE_URL"],
                        shadow_min_hours=0)
    engine = create_engine(platform.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    a = registry.register(engine, settings, build_random_bundle(tmp_path / "a", image_size=512, version="1.0.0"), "t").id
    b = registry.register(engine, settings, build_random_bundle(tmp_path / "b", image_size=512, seed=1, version="2.0.0"),
                          "t").id
    for m in (a, b):
        passed_gate(engine, m)
    registry.promote(engine, settings, a, "production", "t", "first")
    registry.promote(engine, settings, b, "shadow", "t", "trial")
    for svc in SERVICES:
        platform.start(svc, CXR_CANARY_SHARE="0.5")
    platform.start("gateway", CXR_CANARY_SHARE="0.5")
    platform.wait_ready()
    api = httpx.Client(base_url=platform.base_url, headers=platform.headers, timeout=90)

    shadowed = _report(platform, api, make_chest_dicom, canary=True)  # in shadow nobody is in the canary arm
    assert shadowed["model_version"] == "1.0.0"
    job, others, sample = _job(engine, shadowed["job_id"])
    assert (job.model_id, job.model_arm) == (a, "production") and others == [(b, "shadow")] and sample

    registry.promote(engine, settings, b, "canary", "t", "shadow looked fine")
    time.sleep(DEPLOYMENT_CACHE_S)
    canaried = _report(platform, api, make_chest_dicom, canary=True)
    assert canaried["model_version"] == "2.0.0"
    job, others, _ = _job(engine, canaried["job_id"])
    assert (job.model_id, job.model_arm) == (b, "canary") and others == [(a, "paired")]
    fhir = api.get(f"/fhir/DiagnosticReport/{canaried['report_id']}?_include=DiagnosticReport:result")
    assert "2.0.0" in fhir.text  # the Device the report names is the canary's
    assert _report(platform, api, make_chest_dicom, canary=False)["model_version"] == "1.0.0"

    alert = {"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {
        "alertname": "CriticalFindingSensitivityLow", "model": "rollback", "severity": "page"},
        "annotations": {"summary": "critical-finding sensitivity 90% against radiologists (< 95 %)"}}]}
    r = api.post("/api/v1/ops/alertmanager", json=alert)
    assert r.status_code == 200 and r.json()["rolled_back"] == [f"{b}: canary -> candidate"], r.text
    assert r.json()["mode"] == "automatic"  # no automation=pause label: automation stays on
    assert registry.get(engine, b).state == registry.CANDIDATE
    (event,) = [e for e in registry.events(engine, b) if e.action == "rollback"]
    assert event.source == "alertmanager" and "CriticalFindingSensitivityLow" in event.reason
    time.sleep(DEPLOYMENT_CACHE_S)
    after = _report(platform, api, make_chest_dicom, canary=True)
    assert after["model_version"] == "1.0.0"
    job, others, _ = _job(engine, after["job_id"], wait_for_other=False)
    assert job.model_id == a and others == []
    assert "cxr_model_last_rollback_timestamp_seconds" in api.get("/metrics").text
    engine.dispose()
