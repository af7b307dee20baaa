"""Two uploads of the same new instance at once (a PACS retrying a slow STOW): one row, file kept."""

from __future__ import annotations

import threading
import time

from libs.core.config import Settings
from libs.pipeline.intake import accept_instance
from libs.storage import crud
from libs.storage.db import get_engine, session_scope, upgrade_schema


def test_concurrent_duplicate_keeps_the_stored_file(tmp_path, database_url, make_chest_dicom) -> None:  # noqa: ANN001
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    engine = get_engine(settings.sqlalchemy_url)
    upgrade_schema(engine)
    data = make_chest_dicom()
    outcome: dict[str, object] = {}

    def second_upload() -> None:
        try:
            with session_scope(engine) as session:
                outcome["second"] = accept_instance(session, data, settings.dicom_dir)
        except Exception as exc:  # noqa: BLE001
            outcome["second"] = exc

    with session_scope(engine) as session:
        first = accept_instance(session, data, settings.dicom_dir)
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
