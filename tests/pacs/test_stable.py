"""The stable-study watcher: a pushed study gets one job once no instance arrived for N seconds."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from libs.domain.request import ReportRequest
from libs.dicomweb.stable import stable_key, sweep
from libs.pipeline.context import PipelineContext
from libs.pipeline.intake import accept_instance
from libs.storage import crud
from libs.storage.db import session_scope
from libs.storage.models import InstanceRow, JobRow
from services.gateway import create_app
from tests.gateway.helpers import stow
from tests.conftest import authorize


@pytest.fixture(params=["sqlite", "postgresql"])
def stable_ctx(request: pytest.FixtureRequest, pacs_settings) -> PipelineContext:  # noqa: ANN001
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    settings = pacs_settings(database_url=url, stable_study_age_s=30, stable_study_lookback_s=3600)
    return PipelineContext.from_settings(settings)


def _store(ctx: PipelineContext, data: bytes) -> tuple[str, dt.datetime]:
    with session_scope(ctx.engine) as session:
        accepted = accept_instance(session, data, ctx.settings.dicom_dir)
    with session_scope(ctx.engine) as session:
        row = session.get(InstanceRow, accepted.instance.sop_instance_uid)
        return row.study_uid, crud.aware(row.received_at)


def _jobs(ctx: PipelineContext) -> list[tuple[str, str]]:
    with session_scope(ctx.engine) as session:
        return [(j.study_uid, j.idempotency_key) for j in session.scalars(select(JobRow))]


def test_job_once_the_study_is_stable_and_only_once(stable_ctx: PipelineContext, make_chest_dicom) -> None:  # noqa: ANN001
    published = []
    study, received = _store(stable_ctx, make_chest_dicom())
    _store(stable_ctx, make_chest_dicom(study_uid=study))

    assert sweep(stable_ctx.engine, stable_ctx.settings, published.append, now=received + dt.timedelta(seconds=5)) == []
    created = sweep(stable_ctx.engine, stable_ctx.settings, published.append, now=received + dt.timedelta(seconds=60))
    assert len(created) == 1 and [m.job_id for m in published] == created
    assert _jobs(stable_ctx) == [(study, f"key:{stable_key(study)}")]
    # Later passes, or another gateway replica running the same pass, add nothing.
    assert sweep(stable_ctx.engine, stable_ctx.settings, published.append, now=received + dt.timedelta(seconds=90)) == []
    assert len(published) == 1


def test_a_new_instance_restarts_the_clock_and_ehr_jobs_are_left_alone(stable_ctx: PipelineContext,  # noqa: ANN001
                                                                          make_chest_dicom) -> None:
    study, first = _store(stable_ctx, make_chest_dicom())
    _, last = _store(stable_ctx, make_chest_dicom(study_uid=study))
    # 30 s after the first instance but not after the last: not stable yet.
    assert sweep(stable_ctx.engine, stable_ctx.settings, lambda m: None, now=last + dt.timedelta(seconds=29)) == []
    # A study the EHR already asked for keeps its job: no second one.
    other, received = _store(stable_ctx, make_chest_dicom())
    with session_scope(stable_ctx.engine) as session:
        crud.create_job(session, other, ReportRequest(), idempotency_key="order-1")
    created = sweep(stable_ctx.engine, stable_ctx.settings, lambda m: None, now=last + dt.timedelta(seconds=31))
    assert len(created) == 1
    assert sorted(_jobs(stable_ctx)) == sorted([(study, f"key:{stable_key(study)}"), (other, "key:order-1")])


def test_old_studies_outside_the_lookback_are_never_picked_up(stable_ctx: PipelineContext, make_chest_dicom) -> None:  # noqa: ANN001
    _, received = _store(stable_ctx, make_chest_dicom())
    assert sweep(stable_ctx.engine, stable_ctx.settings, lambda m: None, now=received + dt.timedelta(hours=2)) == []


def test_unpublished_job_is_removed_and_tried_again(stable_ctx: PipelineContext, make_chest_dicom) -> None:  # noqa: ANN001
    _, received = _store(stable_ctx, make_chest_dicom())

    def broken(message) -> None:  # noqa: ANN001
        raise ConnectionError("broker down")

    later = received + dt.timedelta(seconds=60)
    assert sweep(stable_ctx.engine, stable_ctx.settings, broken, now=later) == []
    assert _jobs(stable_ctx) == []
    assert len(sweep(stable_ctx.engine, stable_ctx.settings, lambda m: None, now=later)) == 1


def test_gateway_reports_a_pushed_study_by_itself(pacs_settings, make_chest_dicom) -> None:  # noqa: ANN001
    settings = pacs_settings(auto_report_on_stable=True, stable_study_age_s=0.5, stable_study_poll_s=0.1)
    dicom = make_chest_dicom()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        authorize(client)
        assert stow(client, [dicom]).status_code == 200
        with client.app.state.engine.connect() as conn:
            study = conn.execute(select(InstanceRow.study_uid)).scalar_one()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = client.get(f"/api/v1/studies/{study}/report", params={"wait": 5})
            if got.status_code == 200 and got.json()["status"] in ("reviewed", "failed"):
                break
            time.sleep(0.1)
        assert got.status_code == 200, got.text
        assert got.json()["status"] == "reviewed", got.json()


def test_watcher_off_by_default(pacs_settings, make_chest_dicom) -> None:  # noqa: ANN001
    settings = pacs_settings(stable_study_age_s=0, stable_study_poll_s=0.05)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        authorize(client)
        assert stow(client, [make_chest_dicom()]).status_code == 200
        time.sleep(0.5)
        with client.app.state.engine.connect() as conn:
            assert conn.execute(select(JobRow.id)).all() == []
