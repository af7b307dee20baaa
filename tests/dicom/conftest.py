"""Fixtures for the DICOM tests: where pydicom-data's real files are."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _pydicom_data_dir() -> Path | None:
    # pydicom-data installs its files as the package `data_store`, under data_store/data/.
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if (folder / "RG1_UNCR.dcm").is_file() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder with pydicom-data's real files (RG1_UNCR.dcm ...); skips when it is not installed."""
    folder = _pydicom_data_dir()
    if folder is None:
        pytest.skip("pydicom-data is not installed (pip install pydicom-data)")
    return folder
