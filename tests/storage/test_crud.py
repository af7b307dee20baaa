"""Job creation, idempotency and compare-and-set transitions, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.domain.job import InvalidTransition, JobState
from libs.domain.request import ReportRequest
from libs.storage import crud
from libs.storage.db import get_engine, session_scope, upgrade_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path: Path):  # noqa: ANN001, ANN201
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    eng = get_engine(url)
    upgrade_schema(eng)
    return eng


def test_same_request_twice_is_one_job(engine) -> None:  # noqa: ANN001
    with session_scope(engine) as s:
        a, created_a = crud.create_job(s, "1.2.3", ReportRequest(confidence_threshold=0.8))
        b, created_b = crud.create_job(s, "1.2.3", ReportRequest(confidence_threshold=0.8))
        c, created_c = crud.create_job(s, "1.2.3", ReportRequest(confidence_threshold=0.9))
    assert (created_a, created_b, created_c) == (True, False, True)
    assert a.id == b.id != c.id


def test_repeat_after_failure_makes_a_new_job_unless_a_key_pins_it(engine) -> None:  # noqa: ANN001
    with session_scope(engine) as s:
        first, _ = crud.create_job(s, "1.2.3", ReportRequest())
        keyed, _ = crud.create_job(s, "1.2.3", ReportRequest(), idempotency_key="order-1")
        assert crud.fail(s, first.id, "no frontal image")
        assert crud.fail(s, keyed.id, "no frontal image")
    with session_scope(engine) as s:
        again, created = crud.create_job(s, "1.2.3", ReportRequest())
        keyed_again, keyed_created = crud.create_job(s, "1.2.3", ReportRequest(), idempotency_key="order-1")
        assert created and again.id != first.id
        assert not keyed_created and keyed_again.id == keyed.id
        assert crud.get_job(s, first.id).state == "failed"  # kept for audit
        # ...and the new job is now the one a repeat finds.
        assert crud.create_job(s, "1.2.3", ReportRequest())[0].id == again.id


def test_key_reused_for_another_request_is_a_conflict(engine) -> None:  # noqa: ANN001
    with session_scope(engine) as s:
        crud.create_job(s, "1.2.3", ReportRequest(), idempotency_key="k")
        with pytest.raises(crud.IdempotencyConflict):
            crud.create_job(s, "1.2.3", ReportRequest(report_template="concise"), idempotency_key="k")


def test_advance_is_compare_and_set(engine) -> None:  # noqa: ANN001
    with session_scope(engine) as s:
        job, _ = crud.create_job(s, "1.2.3", ReportRequest())
        assert crud.advance(s, job.id, JobState.RECEIVED, JobState.PREPROCESSED, image_path="/x.npy")
        assert not crud.advance(s, job.id, JobState.RECEIVED, JobState.PREPROCESSED, image_path="/y.npy")
        with pytest.raises(InvalidTransition):
            crud.advance(s, job.id, JobState.PREPROCESSED, JobState.REVIEWED)
    with session_scope(engine) as s:
        domain = crud.to_domain(crud.get_job(s, job.id))
        assert domain.state is JobState.PREPROCESSED
        assert list(domain.history) == ["received", "preprocessed"]
        assert crud.get_job(s, job.id).image_path == "/x.npy"
        assert not crud.fail(s, "missing", "x")
