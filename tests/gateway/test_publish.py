"""The Celery backend against real Redis: publishing works, and a Redis outage is a clean 503."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from services.gateway import create_app
from tests.gateway.helpers import assert_problem, count_rows, stow
from tests.conftest import authorize

def _queued_messages(url: str) -> list[dict]:
    r = redis.Redis.from_url(url)
    out = []
    for key in r.scan_iter(match="ingestion*"):
        if r.type(key) != b"list":
            continue
        for raw in r.lrange(key, 0, -1):
            msg = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(msg["body"]))
            out.append({"task": msg["headers"]["task"], "kwargs": kwargs, "key": key})
    return out


def test_celery_publish_reaches_the_ingestion_queue(make_settings, make_chest_dicom, redis_url) -> None:  # noqa: ANN001
    settings = make_settings(queue_backend="celery", redis_url=redis_url)
    with TestClient(create_app(settings)) as c:
        authorize(c)
        study = generate_uid()
        assert stow(c, [make_chest_dicom(study_uid=study)]).status_code == 200
        r = c.post(f"/api/v1/studies/{study}/report", json={"priority": "stat"})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        [message] = _queued_messages(redis_url)
        assert message["task"] == "cxr.ingestion"
        assert message["kwargs"]["job_id"] == job_id and message["kwargs"]["priority"] == "stat"
        # A repeat of the request publishes nothing more.
        assert c.post(f"/api/v1/studies/{study}/report", json={"priority": "stat"}).status_code == 200
        assert len(_queued_messages(redis_url)) == 1


def test_redis_outage_is_503_and_leaves_no_job(make_settings, make_chest_dicom) -> None:  # noqa: ANN001
    settings = make_settings(queue_backend="celery", redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as c:
        authorize(c)
        study = generate_uid()
        assert stow(c, [make_chest_dicom(study_uid=study)]).status_code == 200
        start = time.monotonic()
        r = c.post(f"/api/v1/studies/{study}/report", json={})
        elapsed = time.monotonic() - start
        body = assert_problem(r, 503, "queue-unavailable")
        assert "unreachable" in body["detail"]
        assert elapsed < 10, elapsed
        assert count_rows(c.app) == {"instances": 1, "jobs": 0}
