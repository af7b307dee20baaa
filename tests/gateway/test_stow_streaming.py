"""STOW-RS streams the body to disk: parts are spooled as they arrive, and every spool file goes away.

These tests drive the ASGI app directly where they need to control what the client does between
chunks (disconnect half-way, watch the spool while the body is still arriving).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from libs.core.config import Settings
from services.gateway import create_app
from tests.gateway.helpers import count_rows, stored_files, stow_body

CHUNK = 64 * 1024


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(auth_disabled=True)), raise_server_exceptions=False) as c:
        yield c


def _uploads(app) -> list[Path]:  # noqa: ANN001
    root = app.state.settings.data_dir / "uploads"
    return sorted(root.iterdir()) if root.exists() else []


def _drive(client: TestClient, content_type: str, chunks: list[bytes], *, disconnect: bool = False,
           between: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Runs one POST /dicomweb/studies through the app; `between(i)` runs before chunk i is handed over.

    Returns {"status": ..., "body": ..., "taken": number of chunks the app asked for}.
    """
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/dicomweb/studies", "raw_path": b"/dicomweb/studies", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", content_type.encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }
    state = {"taken": 0, "status": None, "body": b""}

    async def receive() -> dict[str, Any]:
        i = state["taken"]
        if i < len(chunks):
            if between is not None:
                between(i)
            state["taken"] += 1
            return {"type": "http.request", "body": chunks[i], "more_body": disconnect or i < len(chunks) - 1}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
        elif message["type"] == "http.response.body":
            state["body"] += message.get("body", b"")

    client.portal.call(client.app, scope, receive, send)
    return state


def _split(body: bytes, size: int = CHUNK) -> list[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)]


def test_parts_are_on_disk_while_the_body_arrives_and_gone_after(client, chest_dicom_bytes, make_chest_dicom) -> None:  # noqa: ANN001
    parts = [chest_dicom_bytes, make_chest_dicom()]
    body, content_type = stow_body(parts)
    chunks = _split(body)
    seen: list[int] = []

    def watch(i: int) -> None:
        seen.append(sum(p.stat().st_size for p in _uploads(client.app)))

    state = _drive(client, content_type, chunks, between=watch)
    assert state["status"] == 200, state["body"]
    # Half-way through, the first part's content was already in its spool file (not in memory).
    assert seen[len(chunks) // 2] > len(body) // 4
    assert count_rows(client.app)["instances"] == 2
    assert sorted(p.read_bytes() for p in stored_files(client.app)) == sorted(parts)
    assert _uploads(client.app) == []


def test_client_disconnect_mid_body_leaves_no_spool_file(client, chest_dicom_bytes) -> None:  # noqa: ANN001
    body, content_type = stow_body([chest_dicom_bytes, chest_dicom_bytes])
    chunks = _split(body)[: len(body) // CHUNK // 2]  # about half, then the client goes away
    spooled: list[int] = []

    def watch(i: int) -> None:
        if i == len(chunks) - 1:
            spooled.append(len(_uploads(client.app)))

    state = _drive(client, content_type, chunks, disconnect=True, between=watch)
    assert spooled == [1], "the test should disconnect while a spool file exists"
    assert state["taken"] == len(chunks)
    assert _uploads(client.app) == []
    assert count_rows(client.app)["instances"] == 0
    assert stored_files(client.app) == []


def test_over_the_limit_the_rest_of_the_body_is_not_read(make_settings, chest_dicom_bytes) -> None:  # noqa: ANN001
    with TestClient(create_app(make_settings(auth_disabled=True, max_upload_mb=1)),
                    raise_server_exceptions=False) as c:
        body, content_type = stow_body([chest_dicom_bytes])  # 7 MB, no Content-Length
        chunks = _split(body)
        state = _drive(c, content_type, chunks)
        assert state["status"] == 413
        assert state["taken"] <= 1024 * 1024 // CHUNK + 1
        assert _uploads(c.app) == []
        assert count_rows(c.app)["instances"] == 0


@pytest.mark.parametrize("size", [1, 7, 4096, 65537, 3 * 1024 * 1024])
def test_any_chunking_stores_the_same_bytes(client, make_chest_dicom, size: int) -> None:  # noqa: ANN001
    parts = [make_chest_dicom(rows=64, columns=64) for _ in range(2)]
    body, content_type = stow_body(parts)
    chunks = _split(body, size)
    state = _drive(client, content_type, chunks)
    assert state["status"] == 200, state["body"]
    assert sorted(p.read_bytes() for p in stored_files(client.app)) == sorted(parts)
    assert _uploads(client.app) == []


def test_malformed_after_spooled_parts_is_400_and_cleans_up(client, make_chest_dicom) -> None:  # noqa: ANN001
    body, content_type = stow_body([make_chest_dicom(), make_chest_dicom()])
    cut = body[: body.rfind(b"\r\n--")]  # the close delimiter never comes
    state = _drive(client, content_type, _split(cut))
    assert state["status"] == 400
    assert b"not terminated" in state["body"]
    assert _uploads(client.app) == []
    assert count_rows(client.app)["instances"] == 0


def test_a_server_error_while_storing_cleans_up(client, make_chest_dicom, monkeypatch) -> None:  # noqa: ANN001
    import services.gateway.stow as stow

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("disk on fire")

    monkeypatch.setattr(stow, "accept_instance", broken)
    body, content_type = stow_body([make_chest_dicom()])
    state = _drive(client, content_type, _split(body))
    assert state["status"] == 409  # 0x0110 processing failure for the part
    assert b"272" in state["body"]
    assert _uploads(client.app) == []


def test_concurrent_uploads_each_have_their_own_spool_files(make_settings, pg_url, make_chest_dicom) -> None:  # noqa: ANN001
    # On PostgreSQL: with SQLite, concurrent STOW transactions can fail with "database is locked"
    # (a read-then-write transaction in WAL mode), which is older than streaming and not what this tests.
    from concurrent.futures import ThreadPoolExecutor

    with TestClient(create_app(make_settings(auth_disabled=True, database_url=pg_url)),
                    raise_server_exceptions=False) as c:
        bodies = [stow_body([make_chest_dicom(), make_chest_dicom()]) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            states = list(pool.map(lambda b: _drive(c, b[1], _split(b[0], 4096)), bodies))
        assert [s["status"] for s in states] == [200] * 4, states
        assert count_rows(c.app)["instances"] == 8
        assert _uploads(c.app) == []
