"""Pipeline metrics at the gateway's /metrics: jobs by state and dead letters from SQL, queue depth
and the oldest message's age from the real Redis; a source that cannot be read says so."""

from __future__ import annotations

import time

import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from libs.domain.request import ReportRequest
from libs.observability.pipeline import PipelineCollector, queue_keys
from libs.pipeline.dispatch import CeleryDispatcher
from libs.pipeline.messages import Step, StepMessage
from libs.queue.celery_app import make_sender
from libs.storage import crud
from libs.storage.db import session_scope
from services.gateway.main import create_app
from tests.conftest import authorize


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _job(engine, study_uid: str) -> str:  # noqa: ANN001
    with session_scope(engine) as s:
        return crud.create_job(s, study_uid, ReportRequest())[0].id


def test_jobs_dead_letters_and_queues_as_the_sources_hold_them(make_settings, redis_url: str) -> None:  # noqa: ANN001
    settings = make_settings(queue_backend="celery", redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    sender = make_sender(settings)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as c:
            authorize(c)
            engine = c.app.state.engine
            jobs = [_job(engine, f"1.2.3.{i}") for i in range(3)]
            with session_scope(engine) as s:
                crud.fail(s, jobs[0], "inference failed after 6 attempts: x", kind=crud.EXHAUSTED)
                crud.fail(s, jobs[1], "not a chest image", kind=crud.REJECTED)
            dispatcher = CeleryDispatcher(sender)
            dispatcher.send(Step.INFERENCE, StepMessage(job_id="a"))
            time.sleep(1.2)
            dispatcher.send(Step.INFERENCE, StepMessage(job_id="b", priority="stat"))
            dispatcher.send(Step.QA, StepMessage(job_id="c"))

            got = _samples(c.get("/metrics").text)
            assert got[("cxr_jobs", (("state", "failed"),))] == 2
            assert got[("cxr_jobs", (("state", "received"),))] == 1
            assert got[("cxr_jobs", (("state", "reviewed"),))] == 0
            assert got[("cxr_dead_letters", ())] == 1  # the rejected one is not a dead letter
            assert got[("cxr_queue_messages", (("queue", "inference"),))] == 2
            assert got[("cxr_queue_messages", (("queue", "qa"),))] == 1
            assert got[("cxr_queue_messages", (("queue", "ingestion"),))] == 0
            assert 1.0 <= got[("cxr_queue_oldest_message_age_seconds", (("queue", "inference"),))] < 30
            assert got[("cxr_queue_oldest_message_age_seconds", (("queue", "qa"),))] < 1.0
            assert got[("cxr_queue_oldest_message_age_seconds", (("queue", "ingestion"),))] == 0
            assert got[("cxr_pipeline_source_up", (("source", "database"),))] == 1
            assert got[("cxr_pipeline_source_up", (("source", "redis"),))] == 1
            assert sum(client.llen(k) for k in queue_keys("inference")) == 2  # read, never consumed
            # readiness as /readyz decides it: no workers run here
            assert got[("cxr_ready", ())] == 0 and got[("cxr_ready_check", (("check", "workers"),))] == 0
            assert got[("cxr_ready_check", (("check", "database"),))] == 1
            assert got[("cxr_step_workers", (("step", "qa"),))] == 0
            assert c.get("/readyz").status_code == 503
    finally:
        sender.close()


def test_an_unreachable_redis_is_reported_not_counted_as_empty(make_settings) -> None:  # noqa: ANN001
    settings = make_settings()
    with TestClient(create_app(settings)) as c:
        collector = PipelineCollector(c.app.state.engine, "redis://127.0.0.1:1/0")
        families = {f.name: f for f in collector.collect()}
    assert "cxr_queue_messages" not in families and "cxr_queue_oldest_message_age_seconds" not in families
    up = {s.labels["source"]: s.value for s in families["cxr_pipeline_source_up"].samples}
    assert up == {"database": 1, "redis": 0}
