from __future__ import annotations

from pathlib import Path

import pytest

from libs.core.config import Settings
from libs.pipeline.context import PipelineContext


@pytest.fixture(scope="session")
def small_bundle(random_bundle: Path) -> Path:
    """The shared TEST-ONLY 64-pixel random bundle (ingestion follows the bundle's input size)."""
    return random_bundle


@pytest.fixture
def ctx(tmp_path: Path, small_bundle: Path) -> PipelineContext:
    settings = Settings(data_dir=tmp_path / "data", bundle_path=small_bundle, queue_backend="inprocess",
                        database_url=f"sqlite:///{tmp_path / 'cxr.db'}")
    return PipelineContext.from_settings(settings)


@pytest.fixture(scope="session")
def chest_pa() -> Path:
    """The bundled real sample study: a chest PA CR (RG1, JPEG 2000, from pydicom-data, MIT)."""
    from libs.core.config import REPO_ROOT

    files = sorted((REPO_ROOT / "samples" / "chest_pa").glob("*.dcm"))
    assert files, "samples/chest_pa has no DICOM file"
    return files[0]
