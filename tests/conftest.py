"""Fixtures shared by every test folder.

- `make_chest_dicom(...)`: factory for DICOM Part 10 bytes, either the real chest CR from
  pydicom-data (RG1_UNCR, 1955x1841, 16-bit) or a small generated DX, with fresh or given UIDs.
- `chest_dicom_bytes`: the real chest CR as a new study (fresh UIDs).
- `mr_dicom_bytes`: a real MR image from pydicom's test files (a non-chest modality).
- `random_bundle`: a TEST-ONLY random-weight model bundle with 64-pixel input (session-wide).
- `pg_url`: a PostgreSQL URL whose tables live in a fresh schema, dropped afterwards. PostgreSQL
  being unreachable fails the test (never skips it): it is part of the supported platform.

Folders may define fixtures of the same name; theirs win inside that folder.
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

# `pytest` (not only `python -m pytest`) must find libs/ and services/ without an install.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

PG_BASE_URL = os.environ.get("CXR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BUNDLE_IMAGE_SIZE = 64

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def pydicom_data_file(name: str) -> Path:
    """A file of the pydicom-data package (installed with the test extra)."""
    import data_store

    path = Path(data_store.__file__).parent / "data" / name
    if not path.is_file():
        pytest.fail(f"pydicom-data file {name} is missing; install the test extra (pip install -e .[test])")
    return path


def _to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _small_dx(rows: int, columns: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.PatientName = "Synthetic^Test"
    ds.PatientID = "SYN-0001"
    ds.StudyDate = "20240115"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    yy, xx = np.mgrid[0:rows, 0:columns]
    # A smooth body-like blob plus noise: not blank, full 12-bit range.
    blob = np.exp(-(((yy - rows / 2) / (rows / 3)) ** 2 + ((xx - columns / 2) / (columns / 3.5)) ** 2))
    noise = np.random.default_rng(rows * 7919 + columns).normal(0, 0.03, size=(rows, columns))
    pixels = np.clip((blob + noise) * 4095, 0, 4095).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


MakeChestDicom = Callable[..., bytes]


@pytest.fixture
def make_chest_dicom() -> MakeChestDicom:
    """make_chest_dicom(study_uid=None, series_uid=None, sop_uid=None, view="PA", real=False,
    modality=None, rows=256, columns=256) -> Part 10 bytes.

    real=True gives the pydicom-data chest CR (slow-ish: 7 MB), otherwise a generated DX.
    UIDs left out are generated fresh.
    """

    def make(
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        view: str | None = "PA",
        real: bool = False,
        modality: str | None = None,
        rows: int = 256,
        columns: int = 256,
    ) -> bytes:
        ds = pydicom.dcmread(pydicom_data_file("RG1_UNCR.dcm")) if real else _small_dx(rows, columns)
        ds.StudyInstanceUID = study_uid or generate_uid()
        ds.SeriesInstanceUID = series_uid or generate_uid()
        ds.SOPInstanceUID = sop_uid or generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if view is None:
            if "ViewPosition" in ds:
                del ds.ViewPosition
        else:
            ds.ViewPosition = view
        if modality is not None:
            ds.Modality = modality
        return _to_bytes(ds)

    return make


@pytest.fixture
def chest_dicom_bytes(make_chest_dicom: MakeChestDicom) -> bytes:
    """The real chest CR (RG1_UNCR from pydicom-data) with fresh study/series/instance UIDs."""
    return make_chest_dicom(real=True)


@pytest.fixture
def mr_dicom_bytes() -> bytes:
    """A real MR slice (pydicom's MR_small) with fresh UIDs: valid DICOM, not a radiograph."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return _to_bytes(ds)


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TEST-ONLY random-weight bundle, 64-pixel input: use with Settings(image_size=64)."""
    from libs.bundle.testing import build_random_bundle

    return build_random_bundle(tmp_path_factory.mktemp("bundle") / "random", image_size=BUNDLE_IMAGE_SIZE)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """`postgresql://...?options=-csearch_path=<fresh schema>`: this test's tables only."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_BASE_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {PG_BASE_URL} is required for these tests: {exc}")
    sep = "&" if "?" in PG_BASE_URL else "?"
    url = f"{PG_BASE_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        from libs.core.config import Settings
        from libs.storage.db import get_engine

        get_engine(Settings(database_url=url).sqlalchemy_url).dispose()
        with psycopg.connect(PG_BASE_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


REDIS_BASE = os.environ.get("CXR_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database number (10-15) nobody else in this run holds, emptied before and after.
    Redis being unreachable fails the test (never skips it)."""
    import redis

    # DB numbers 10-15 are this suite's; pick one nobody else in this run holds.
    client = redis.Redis.from_url(f"{REDIS_BASE}/0")
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis at {REDIS_BASE} is required for these tests: {exc}")
    for db in range(10, 16):
        if client.set(f"cxr-test-lock:{db}", os.getpid(), nx=True, ex=600):
            break
    else:
        pytest.fail("no free Redis test database (10-15)")
    url = f"{REDIS_BASE}/{db}"
    redis.Redis.from_url(url).flushdb()
    try:
        yield url
    finally:
        redis.Redis.from_url(url).flushdb()
        client.delete(f"cxr-test-lock:{db}")


# ---------------------------------------------------------------- credentials
# Every endpoint but the probes needs credentials. API tests that are not about authorisation
# use a key holding every scope; tests/gateway/test_access.py checks each route's real rule.
ALL_SCOPES = ("system/*.*",)


def authorize(client, scopes: tuple[str, ...] = ALL_SCOPES, name: str = "test client"):  # noqa: ANN001, ANN201
    """Gives a started TestClient an API key with `scopes` (X-API-Key header); returns the key."""
    from libs.auth import apikeys

    _, key = apikeys.create(client.app.state.engine, name, "custom", list(scopes))
    client.headers["X-API-Key"] = key
    return key
