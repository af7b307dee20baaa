"""The four services as separate worker processes over the real Redis, with job state in PostgreSQL."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.integration.conftest import SERVICES, Platform

pytestmark = pytest.mark.integration


def stow(base_url: str, dicom: bytes, headers: dict[str, str]) -> httpx.Response:
    boundary = "cxr-test-boundary"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + dicom
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return httpx.post(
        f"{base_url}/dicomweb/studies",
        content=body,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}', **headers},
        timeout=60,
    )


def wait_for_state(engine, job_id: str, states: set[str], timeout: float, platform: Platform | None = None) -> str:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            state = conn.execute(text("SELECT state FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
        if state in states:
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stuck in {state}" + (f"\n{platform.logs()}" if platform else ""))


def test_study_goes_through_four_worker_processes(platform: Platform, chest_dicom) -> None:  # noqa: ANN001
    from tests.integration.conftest import free_port

    metrics_port = free_port()
    for svc in SERVICES:
        platform.start(svc, **({"CXR_METRICS_PORT": str(metrics_port)} if svc == "inference" else {}))
    platform.start("gateway")
    platform.wait_ready()

    study_uid, dicom = chest_dicom()
    assert stow(platform.base_url, dicom, platform.headers).status_code == 200, platform.logs()
    body = {"clinical_context": {"age": 67, "sex": "M", "indication": "Shortness of breath"},
            "confidence_threshold": 0.85}
    posted = httpx.post(f"{platform.base_url}/api/v1/studies/{study_uid}/report", json=body, timeout=30, headers=platform.headers)
    assert posted.status_code == 202, posted.text
    got = httpx.get(f"{platform.base_url}/api/v1/studies/{study_uid}/report", params={"wait": 90}, timeout=120, headers=platform.headers)
    assert got.status_code == 200, platform.logs()
    report = got.json()
    assert report["status"] == "reviewed", (report, platform.logs())
    assert report["model_version"] == "0.0.0-test"
    assert isinstance(report["requires_radiologist_review"], bool)
    assert report["impression"] and report["recommendations"]
    # Each worker did its own step: each log shows its own task name.
    logs = {p.name: p.read_text(errors="replace") for p in platform.log_dir.glob("*.log")}
    for svc in SERVICES:
        assert any(f"cxr.{svc}" in text_ for name, text_ in logs.items() if name.startswith(svc)), logs
    # The inference worker reports its runtime: /readyz lists it (Redis heartbeat) and its own /metrics
    # endpoint counted the batch that ran this study.
    [worker] = httpx.get(f"{platform.base_url}/readyz", timeout=10, headers=platform.headers).json()["inference"]
    assert worker["providers"] == ["CPUExecutionProvider"] and worker["model_version"] == "0.0.0-test"
    assert worker["batching"] is True and worker["max_batch_size"] == 8
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    assert 'cxr_inference_execution_provider{model_name="' in metrics
    batches = [line for line in metrics.splitlines() if line.startswith("cxr_inference_batch_size_count")]
    assert batches and float(batches[0].split()[-1]) >= 1, metrics[-2000:]


def test_killed_worker_mid_task_job_completes_exactly_once(platform: Platform, chest_dicom) -> None:  # noqa: ANN001
    engine = create_engine(platform.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    for svc in ("ingestion", "formatting", "qa"):
        platform.start(svc)
    # This inference worker sleeps 30 s inside the step: we kill it while it holds the message.
    platform.start("inference", CXR_STEP_DELAY_S="30")
    platform.start("gateway")
    platform.wait_ready()

    study_uid, dicom = chest_dicom()
    assert stow(platform.base_url, dicom, platform.headers).status_code == 200
    posted = httpx.post(f"{platform.base_url}/api/v1/studies/{study_uid}/report", json={}, timeout=30, headers=platform.headers)
    job_id = posted.json()["job_id"]
    wait_for_state(engine, job_id, {"preprocessed"}, timeout=60)
    deadline = time.monotonic() + 30
    inference_log = next(platform.log_dir.glob("inference-*.log"))
    while "cxr.inference" not in inference_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, platform.logs()
        time.sleep(0.1)
    platform.kill("inference")  # SIGKILL: no chance to ack, requeue or clean up

    platform.start("inference")  # a replacement worker, as an orchestrator would start
    state = wait_for_state(engine, job_id, {"reviewed", "failed"}, timeout=90, platform=platform)
    assert state == "reviewed", platform.logs()
    with engine.connect() as conn:
        events = [r[0] for r in conn.execute(
            text("SELECT state FROM job_events WHERE job_id = :id ORDER BY id"), {"id": job_id})]
        jobs = conn.execute(text("SELECT count(*) FROM jobs WHERE study_uid = :s"), {"s": study_uid}).scalar()
    assert events == ["received", "preprocessed", "inferred", "formatted", "reviewed"]
    assert jobs == 1
    engine.dispose()
