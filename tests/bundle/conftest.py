"""Fixtures for the bundle tests: random-weight bundles built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_helpers import SIZE

from libs.bundle.testing import build_random_bundle


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_bundle(tmp_path_factory.mktemp("random_bundle"), image_size=SIZE)


@pytest.fixture(scope="session")
def runner(random_bundle: Path):
    from libs.bundle.runner import BundleRunner

    return BundleRunner(random_bundle)
