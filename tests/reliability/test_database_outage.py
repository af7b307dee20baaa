"""PostgreSQL briefly unreachable (a TCP proxy in front of it is cut): the gateway answers 503 with a
reason (problem details; OperationOutcome under /fhir), then serves again without a restart, and the
job that was in flight finishes exactly once."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.integration.conftest import SERVICES, Platform
from tests.reliability.conftest import (
    PIPELINE,
    TcpProxy,
    events,
    small_dx,
    submit,
    wait_state,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_database_outage_is_a_503_with_a_reason_then_recovery_without_restart(
        platform: Platform, pg_proxy: TcpProxy, engine, make_chest_dicom) -> None:  # noqa: ANN001
    # Every process reaches PostgreSQL through the proxy; the test's own engine goes direct.
    platform.env["DATABASE_URL"] = make_url(platform.env["DATABASE_URL"]).set(port=pg_proxy.port).render_as_string(
        hide_password=False)
    for svc in SERVICES:
        platform.start(svc, CXR_STEP_DELAY_S="2")
    gateway = platform.start("gateway")
    platform.wait_ready()
    make = small_dx(make_chest_dicom)
    study, job = submit(platform, make)
    report_url = f"{platform.base_url}/api/v1/studies/{study}/report"
    fhir_url = f"{platform.base_url}/fhir/DiagnosticReport"

    pg_proxy.stop()  # the job is in its first steps
    answer = httpx.get(report_url, headers=platform.headers, timeout=30)
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers.get("retry-after")
    problem = answer.json()
    assert problem["status"] == 503 and "retry later" in problem["detail"]
    fhir = httpx.get(fhir_url, params={"study": study}, headers=platform.headers, timeout=30)
    assert fhir.status_code == 503, fhir.text
    outcome = fhir.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    ready = httpx.get(f"{platform.base_url}/readyz", timeout=30)
    assert ready.status_code == 503 and "database unavailable" in ready.text
    assert httpx.get(f"{platform.base_url}/healthz", timeout=10).status_code == 200  # alive, not ready
    time.sleep(3)  # a worker step or two meet the outage and retry

    pg_proxy.start()
    wait_until(lambda: httpx.get(f"{platform.base_url}/readyz", timeout=30).status_code == 200, 60,
               "the gateway to be ready again", platform)
    back = httpx.get(report_url, headers=platform.headers, timeout=30)
    assert back.status_code in (200, 202), back.text
    assert gateway.poll() is None  # the same gateway process
    assert wait_state(engine, job, {"reviewed", "failed"}, 120, platform) == "reviewed"
    assert events(engine, job) == PIPELINE
    report = httpx.get(report_url, headers=platform.headers, timeout=30)
    assert report.status_code == 200 and report.json()["status"] == "reviewed"
