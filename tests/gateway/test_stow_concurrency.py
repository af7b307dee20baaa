"""Two uploads of the same new instance at once (a PACS retrying a slow STOW): one row, file kept."""

from __future__ import annotations

import threading
import time

import pytest

from libs.core.config import Settings
from libs.pipeline.intake import accept_instance
from libs.storage import crud
from libs.storage.db import get_engine, session_scope, upgrade_schema


@pytest.mark.parametrize("source_kind", ["bytes", "path"])  # STOW-RS passes its spool file's path
def test_concurrent_duplicate_keeps_the_stored_file(tmp_path, database_url, make_chest_dicom,  # noqa: ANN001
                                                    source_kind: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, auth_disabled=True)
    engine = get_engine(settings.sqlalchemy_url)
    upgrade_schema(engine)
    data = make_chest_dicom()
    spooled = tmp_path / "spooled.dcm"
    spooled.write_bytes(data)
    source = data if source_kind == "bytes" else spooled
    outcome: dict[str, object] = {}

    def second_upload() -> None:
        try:
            with session_scope(engine) as session:
                outcome["second"] = accept_instance(session, source, settings.dicom_dir)
        except Exception as exc:  # noqa: BLE001
            outcome["second"] = exc

    with session_scope(engine) as session:
        first = accept_instance(session, source, settings.dicom_dir)
        assert first.newly_stored
        # The second upload runs while the first transaction is still open: its INSERT waits for ours.
        t = threading.Thread(target=second_upload)
        t.start()
        time.sleep(1.0)
    t.join(30)
    assert not t.is_alive()

    second = outcome["second"]
    assert not isinstance(second, Exception), repr(second)
    assert second.newly_stored is False
    with session_scope(engine) as session:
        stored = crud.get_instance(session, first.instance.sop_instance_uid)
    assert stored is not None
    assert stored.path is not None and stored.path.is_file(), "the committed instance lost its file"
    assert stored.path.read_bytes() == data
    leftovers = [p for p in settings.dicom_dir.rglob("*") if p.is_file() and p != stored.path]
    assert leftovers == []
