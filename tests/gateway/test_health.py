"""Probes, routing errors as problems, OpenAPI."""

from __future__ import annotations

import time

import numpy as np
from fastapi.testclient import TestClient

from services.gateway import create_app
from tests.gateway.helpers import assert_problem
from tests.conftest import authorize


def test_healthz(sqlite_client) -> None:  # noqa: ANN001
    r = sqlite_client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_ready(sqlite_client) -> None:  # noqa: ANN001
    r = sqlite_client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and body["checks"] == {"database": "ok", "bundle": "ok"}
    assert isinstance(body["inference"], list)


def test_readyz_with_missing_bundle(make_settings, tmp_path) -> None:  # noqa: ANN001
    with TestClient(create_app(make_settings(bundle_path=tmp_path / "no-bundle"))) as c:
        authorize(c)
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "not ready"
        assert body["checks"]["database"] == "ok"
        assert "no model bundle installed" in body["checks"]["bundle"]
        # Liveness does not depend on readiness.
        assert c.get("/healthz").status_code == 200


def test_readyz_ignores_image_size_when_the_bundle_sets_its_own(make_settings) -> None:  # noqa: ANN001
    # The pipeline resizes to the bundle's input size (64 here), whatever CXR_IMAGE_SIZE says: the
    # platform can do its job, so it is ready (a probe that said otherwise never routed traffic).
    with TestClient(create_app(make_settings(image_size=128))) as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["bundle"] == "ok"


def test_readyz_with_redis_down(make_settings) -> None:  # noqa: ANN001
    settings = make_settings(queue_backend="celery", redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as c:
        authorize(c)
        r = c.get("/readyz")
        assert r.status_code == 503
        checks = r.json()["checks"]
        assert checks["database"] == "ok" and checks["bundle"] == "ok"
        assert checks["redis"].startswith("redis unreachable")


def test_readyz_is_ready_once_every_step_has_a_live_worker(make_settings, redis_url: str) -> None:  # noqa: ANN001
    from libs.observability.runtime_status import Heartbeat, WorkerBeat

    settings = make_settings(queue_backend="celery", redis_url=redis_url)
    beats = []
    try:
        with TestClient(create_app(settings)) as c:
            r = c.get("/readyz")
            assert r.status_code == 503, r.text
            assert r.json()["checks"] == {"database": "ok", "redis": "ok", "bundle": "ok",
                                          "workers": "no live worker for: ingestion, inference, formatting, qa"}
            for step in ("ingestion", "inference", "formatting"):
                beats.append(Heartbeat(redis_url, beat=WorkerBeat(step, f"{step}-w1", time.time())).start())
            time.sleep(0.3)
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["checks"]["workers"] == "no live worker for: qa"
            beats.append(Heartbeat(redis_url, beat=WorkerBeat("qa", "qa-w1", time.time())).start())
            time.sleep(0.3)
            r = c.get("/readyz")
            assert r.status_code == 200, r.text
            assert r.json()["workers"] == {s: [f"{s}-w1"] for s in ("ingestion", "inference", "formatting", "qa")}
            beats.pop().stop()  # a worker that stops leaves the board at once
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["workers"]["qa"] == []
        # Listed but not deciding: for deployments whose gateway must accept while workers are away
        with TestClient(create_app(make_settings(queue_backend="celery", redis_url=redis_url,
                                                 ready_requires_workers=False))) as c:
            r = c.get("/readyz")
            assert r.status_code == 200 and "workers" not in r.json()["checks"]
            assert r.json()["workers"]["qa"] == [] and r.json()["workers"]["ingestion"] == ["ingestion-w1"]
    finally:
        for beat in beats:
            beat.stop()


def test_readyz_with_database_down(make_settings) -> None:  # noqa: ANN001
    app = create_app(make_settings(database_url="postgresql://postgres@127.0.0.1:1/none"))
    # Not entered as a context manager: no lifespan, whose migration would fail. The probe itself
    # must still answer.
    c = TestClient(app)
    r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"].startswith("database unavailable")


def test_routing_errors_are_problems(sqlite_client) -> None:  # noqa: ANN001
    assert_problem(sqlite_client.get("/nowhere"), 404, "not-found")
    r = sqlite_client.delete("/healthz")
    assert_problem(r, 405, "method-not-allowed")
    assert r.headers["allow"] == "GET"


def test_openapi_declares_problem_responses(sqlite_client) -> None:  # noqa: ANN001
    assert sqlite_client.get("/docs").status_code == 200
    spec = sqlite_client.get("/openapi.json").json()
    assert "Problem" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    post = spec["paths"]["/api/v1/studies/{study_id}/report"]["post"]
    assert post["summary"]
    for status in ("400", "404", "415", "422", "503"):
        assert list(post["responses"][status]["content"]) == ["application/problem+json"], status
    stow = spec["paths"]["/dicomweb/studies"]["post"]
    assert "application/dicom+json" in stow["responses"]["200"]["content"]
    assert "multipart/related" in stow["requestBody"]["content"]
    assert list(stow["responses"]["409"]["content"]) == ["application/problem+json"]
    ready = spec["paths"]["/readyz"]["get"]
    assert ready["responses"]["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ReadyOut")


def test_readyz_answers_when_a_check_hangs(sqlite_client, monkeypatch) -> None:  # noqa: ANN001
    from services.gateway.api.routes import health

    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.3)
    monkeypatch.setattr(health, "_check_bundle", lambda settings, engine: time.sleep(1.5) or "ok")
    start = time.monotonic()
    r = sqlite_client.get("/readyz")
    assert time.monotonic() - start < 1.2
    assert r.status_code == 503
    assert r.json()["checks"] == {"database": "ok", "bundle": "bundle check timed out after 0.3 s"}


def test_readyz_lists_the_in_process_inference_runtime(make_settings, monkeypatch) -> None:  # noqa: ANN001
    from libs.observability import runtime_status
    from libs.pipeline.context import PipelineContext

    monkeypatch.setattr(runtime_status, "LOCAL", {})
    settings = make_settings()
    with TestClient(create_app(settings)) as c:
        authorize(c)
        assert c.get("/readyz").json()["inference"] == []  # the bundle loads on the first study
        runner = PipelineContext.from_settings(settings).runner
        [worker] = c.get("/readyz").json()["inference"]
    assert worker["model_name"] == runner.model_name and worker["model_version"] == runner.model_version
    assert worker["providers"] == ["CPUExecutionProvider"]
    assert worker["batching"] is True and worker["max_batch_size"] == 8 and worker["max_queue_delay_ms"] == 100
    assert worker["num_beams"] is None  # this test bundle has no report decoder


def test_readyz_lists_inference_workers_from_redis_heartbeats(make_settings) -> None:  # noqa: ANN001
    import uuid

    from libs.observability.runtime_status import Heartbeat, InferenceStatus

    settings = make_settings(queue_backend="celery")
    status = InferenceStatus(worker=f"test-{uuid.uuid4().hex[:8]}", model_name="m", model_version="9.9.9",
                             providers=["CUDAExecutionProvider", "CPUExecutionProvider"], batching=True,
                             max_batch_size=8, max_queue_delay_ms=100.0)
    beat = Heartbeat(settings.redis_url, status, ttl_s=30).start()
    try:
        with TestClient(create_app(settings)) as c:
            authorize(c)
            deadline = time.monotonic() + 5
            while True:  # the heartbeat thread publishes right after start
                listed = [w for w in c.get("/readyz").json()["inference"] if w["worker"] == status.worker]
                if listed or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert listed == [{**status.__dict__}]
            beat.stop()  # a stopped worker leaves the board at once (a dead one when its key expires)
            assert not [w for w in c.get("/readyz").json()["inference"] if w["worker"] == status.worker]
    finally:
        beat.stop()


def test_metrics_endpoint_exposes_the_inference_runtime(make_settings) -> None:  # noqa: ANN001
    from libs.pipeline.context import PipelineContext

    settings = make_settings()
    ctx = PipelineContext.from_settings(settings)
    ctx.predict(np.zeros((ctx.runner.image_size, ctx.runner.image_size), dtype=np.float32))
    ctx.close()
    with TestClient(create_app(settings)) as c:
        authorize(c)
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'cxr_inference_execution_provider{model_name="' in text and 'provider="CPUExecutionProvider",rank="0"' in text
    assert "cxr_inference_batch_size_bucket" in text and "cxr_inference_queue_wait_seconds_count" in text
