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


def two_models(engine, settings: Settings, make_bundle, trial: str | None = None) -> tuple[str, str]:  # noqa: ANN001
    """Versions 1.0.0 (production) and 2.0.0 of a test bundle, both through the gate; 2.0.0 taken to
    `trial` (shadow, or shadow then canary) when given."""
    a = registry.register(engine, settings, make_bundle("1.0.0"), "t").id
    b = registry.register(engine, settings, make_bundle("2.0.0", seed=1), "t").id
    for m in (a, b):
        passed_gate(engine, m)
    registry.promote(engine, settings, a, "production", "t", "first")
    for state in {"shadow": ["shadow"], "canary": ["shadow", "canary"]}.get(trial or "", []):
        registry.promote(engine, settings, b, state, "t", "trial")
    return a, b
