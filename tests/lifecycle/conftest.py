"""Lifecycle tests: a registry on SQLite and on the real PostgreSQL (a fresh schema per test), with
random-weight test bundles of two versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from libs.core.config import Settings
from libs.lifecycle import registry
from libs.storage.db import get_engine, upgrade_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def lifecycle_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return Settings(data_dir=tmp_path / "data", database_url=url, queue_backend="inprocess", image_size=64,
                    shadow_min_hours=0, gate_labels=["Pneumonia"])


@pytest.fixture
def engine(lifecycle_settings: Settings):  # noqa: ANN201
    engine = get_engine(lifecycle_settings.sqlalchemy_url)
    upgrade_schema(engine)
    return engine


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    from libs.bundle.testing import build_random_bundle

    def make(version: str, seed: int = 0, size: int = 64) -> Path:
        return build_random_bundle(tmp_path / f"bundle-{version}", image_size=size, seed=seed, version=version)

    return make


def passed_gate(engine, model_id: str) -> None:  # noqa: ANN001
    """A passing gate report, for tests of the rules that follow the gate (the gate itself: test_gate.py)."""
    registry.store_validation(engine, model_id, {"passed": True, "failures": [], "note": "test fixture"}, "test")
