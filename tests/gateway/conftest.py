"""Gateway test apps: in-process pipeline, a random 64-pixel bundle, SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from libs.core.config import Settings
from services.gateway import create_app
from tests.conftest import authorize


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each API test runs on SQLite and on PostgreSQL (a fresh schema per test)."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


@pytest.fixture
def make_settings(tmp_path: Path, random_bundle: Path) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:  # noqa: ANN003
        values = dict(
            data_dir=tmp_path / "data",
            database_url=None,
            queue_backend="inprocess",
            bundle_path=random_bundle,
            image_size=64,
            long_poll_max_s=30.0,
        )
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str | None) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        authorize(c)
        yield c


@pytest.fixture
def sqlite_client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """For tests that do not depend on the database engine."""
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as c:
        authorize(c)
        yield c
