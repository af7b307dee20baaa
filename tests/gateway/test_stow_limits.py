"""STOW-RS limits (docs/pacs.md): each gives its status and reason, and nothing is stored.

"Nothing stored" means: no instance row, no file under dicom_dir, no spool file left in uploads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from libs.core.config import Settings
from services.gateway import create_app
from tests.gateway.helpers import assert_problem, count_rows, stored_files, stow, stow_body

FAILED = "00081198"
REFERENCED = "00081199"
FAILURE_REASON = "00081197"


def _uploads(app) -> list[Path]:  # noqa: ANN001
    root = app.state.settings.data_dir / "uploads"
    return sorted(root.iterdir()) if root.exists() else []


def _assert_nothing_stored(app) -> None:  # noqa: ANN001
    assert count_rows(app)["instances"] == 0
    assert stored_files(app) == []
    assert _uploads(app) == []


@pytest.fixture
def limited(make_settings: Callable[..., Settings], database_url: str | None) -> Iterator[Callable[..., TestClient]]:
    """limited(**settings) -> a started client of an app with those limits (no credentials needed),
    on SQLite and on PostgreSQL."""
    clients: list[TestClient] = []

    def make(**overrides) -> TestClient:  # noqa: ANN003
        settings = make_settings(auth_disabled=True, database_url=database_url, **overrides)
        c = TestClient(create_app(settings), raise_server_exceptions=False)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _chunks(body: bytes, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def test_body_over_max_upload_mb_with_content_length_is_413(limited, chest_dicom_bytes) -> None:  # noqa: ANN001
    c = limited(max_upload_mb=1)
    body = assert_problem(stow(c, [chest_dicom_bytes]), 413, "payload-too-large")
    assert "1 MB limit" in body["detail"]
    _assert_nothing_stored(c.app)


def test_body_over_max_upload_mb_without_content_length_is_413(limited, make_chest_dicom) -> None:  # noqa: ANN001
    c = limited(max_upload_mb=1)
    # Several valid parts, the first ones complete in the spool before the limit is crossed.
    parts = [make_chest_dicom(rows=300, columns=300) for _ in range(8)]  # ~180 KB each
    body, content_type = stow_body(parts)
    assert len(body) > 1024 * 1024
    r = c.post("/dicomweb/studies", content=_chunks(body), headers={"Content-Type": content_type})
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "payload-too-large")
    _assert_nothing_stored(c.app)


def test_more_parts_than_max_instances_per_request_is_413(limited, make_chest_dicom) -> None:  # noqa: ANN001
    c = limited(max_instances_per_request=3)
    study = generate_uid()
    parts = [make_chest_dicom(study_uid=study) for _ in range(4)]
    body = assert_problem(stow(c, parts), 413, "too-many-parts")
    assert "more than 3 parts" in body["detail"]
    _assert_nothing_stored(c.app)

    r = stow(c, parts[:3])  # at the limit: fine
    assert r.status_code == 200, r.text
    assert count_rows(c.app)["instances"] == 3
    assert _uploads(c.app) == []


def test_study_over_max_instances_per_study_fails_those_parts_a700(limited, make_chest_dicom) -> None:  # noqa: ANN001
    c = limited(max_instances_per_study=2)
    study = generate_uid()
    first, second, third = (make_chest_dicom(study_uid=study) for _ in range(3))
    r = stow(c, [first, second, third])
    assert r.status_code == 202, r.text
    assert len(r.json()[REFERENCED]["Value"]) == 2
    [failed] = r.json()[FAILED]["Value"]
    assert failed[FAILURE_REASON]["Value"] == [0xA700]
    assert "part 2" in r.headers["warning"] and "limit per study" in r.headers["warning"]
    assert count_rows(c.app)["instances"] == 2
    assert len(stored_files(c.app)) == 2

    # Full: a new instance of that study is refused, an already stored one is still a success,
    # and other studies are not affected.
    body = assert_problem(stow(c, [make_chest_dicom(study_uid=study)], study_uid=study), 409, "stow-failed")
    assert body["failures"][0]["failure_reason"] == 0xA700
    assert "already holds 2 instance(s)" in body["failures"][0]["reason"]
    assert stow(c, [first]).status_code == 200
    assert stow(c, [make_chest_dicom()]).status_code == 200
    assert count_rows(c.app)["instances"] == 3
    assert len(stored_files(c.app)) == 3
    assert _uploads(c.app) == []


def test_image_over_max_image_pixels_is_rejected_from_its_header(limited, make_chest_dicom, monkeypatch) -> None:  # noqa: ANN001
    import libs.pipeline.intake as intake

    def must_not_run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the pixel data was read or decoded for an image over the limit")

    monkeypatch.setattr(intake, "read_dataset", must_not_run)
    monkeypatch.setattr(intake, "validate_dataset", must_not_run)
    c = limited(max_image_pixels=256 * 256 - 1)
    body = assert_problem(stow(c, [make_chest_dicom(rows=256, columns=256)]), 409, "stow-failed")
    [failure] = body["failures"]
    assert failure["failure_reason"] == 0xC000
    assert failure["reason"].startswith("image too large: 256 x 256 pixels x 1 frame(s) = 65536 pixels")
    assert "sop_instance_uid" in failure
    _assert_nothing_stored(c.app)


def test_image_at_max_image_pixels_is_stored(limited, make_chest_dicom) -> None:  # noqa: ANN001
    c = limited(max_image_pixels=256 * 256)
    assert stow(c, [make_chest_dicom(rows=256, columns=256)]).status_code == 200


# ---------------------------------------------------------------- accept_instance itself (pull, embedded)


def _session(tmp_path: Path):  # noqa: ANN202
    from libs.storage.db import get_engine, upgrade_schema

    settings = Settings(data_dir=tmp_path, auth_disabled=True)
    engine = get_engine(settings.sqlalchemy_url)
    upgrade_schema(engine)
    return settings, engine


def test_accept_instance_checks_frames_too(tmp_path, make_chest_dicom) -> None:  # noqa: ANN001
    import io

    import pydicom

    from libs.core.errors import InputRejected
    from libs.pipeline.intake import IntakeLimits, accept_instance
    from libs.storage.db import session_scope

    ds = pydicom.dcmread(io.BytesIO(make_chest_dicom(rows=100, columns=100)))
    ds.NumberOfFrames = 1000  # a forged header: 10 M pixels announced by a small file
    buf = io.BytesIO()
    ds.save_as(buf)
    settings, engine = _session(tmp_path)
    with session_scope(engine) as session, pytest.raises(InputRejected, match="x 1000 frame"):
        accept_instance(session, buf.getvalue(), settings.dicom_dir, limits=IntakeLimits(1_000_000, 10))
    assert not settings.dicom_dir.exists()


def test_accept_instance_defaults_to_the_process_settings(tmp_path, make_chest_dicom, monkeypatch) -> None:  # noqa: ANN001
    """DICOMweb pull and the embedded runner call accept_instance without limits: the env's apply."""
    from libs.core.config import reset_settings_cache
    from libs.core.errors import InputRejected
    from libs.pipeline.intake import accept_instance
    from libs.storage.db import session_scope

    monkeypatch.setenv("CXR_MAX_IMAGE_PIXELS", "1000")
    reset_settings_cache()
    try:
        settings, engine = _session(tmp_path)
        path = tmp_path / "in.dcm"
        path.write_bytes(make_chest_dicom(rows=64, columns=64))
        with session_scope(engine) as session, pytest.raises(InputRejected, match="image too large"):
            accept_instance(session, path, settings.dicom_dir)
    finally:
        monkeypatch.delenv("CXR_MAX_IMAGE_PIXELS")
        reset_settings_cache()


def test_accept_instance_from_a_path_copies_the_file(tmp_path, make_chest_dicom) -> None:  # noqa: ANN001
    from libs.pipeline.intake import IntakeLimits, accept_instance
    from libs.storage.db import session_scope

    settings, engine = _session(tmp_path)
    data = make_chest_dicom()
    path = tmp_path / "in.dcm"
    path.write_bytes(data)
    with session_scope(engine) as session:
        accepted = accept_instance(session, path, settings.dicom_dir, limits=IntakeLimits.of(settings))
    assert accepted.newly_stored
    assert path.read_bytes() == data  # the source is left alone
    assert accepted.instance.path.read_bytes() == data
