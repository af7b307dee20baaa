"""PACS configuration (libs/core/config.py) and the HTTP session each server gets (libs/dicomweb/client.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from pydantic import ValidationError

from libs.core.config import PacsServer, Settings, load_pacs_file
from libs.dicomweb.client import PacsUnavailable, describe, make_client, make_session
from tests.pacs.fakes import dropping_server

REPO = Path(__file__).resolve().parents[2]


def test_yaml_file_with_environment_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORTHANC_PASSWORD", "s3cret")
    servers = load_pacs_file(REPO / "deploy" / "orthanc" / "pacs.yaml")
    assert [s.name for s in servers] == ["orthanc"]
    assert servers[0].auth == "basic" and servers[0].password.get_secret_value() == "s3cret"
    assert servers[0].store_results is True
    # The file never shows the secret when printed.
    assert "s3cret" not in repr(servers[0])


def test_json_file_env_default_server_and_settings_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pacs.json"
    path.write_text(json.dumps([{"name": "vna", "url": "https://vna.example/dicomweb", "auth": "bearer",
                                 "token": "tok", "pull": False, "store_results": True}]))
    monkeypatch.setenv("CXR_PACS_CONFIG", str(path))
    monkeypatch.setenv("CXR_PACS_URL", "http://127.0.0.1:8042/dicom-web")
    monkeypatch.setenv("CXR_PACS_AUTH", "basic")
    monkeypatch.setenv("CXR_PACS_USERNAME", "cxr")
    monkeypatch.setenv("CXR_PACS_PASSWORD", "pw")
    settings = Settings(_env_file=None)
    assert [p.name for p in settings.pacs] == ["vna", "default"]
    assert [p.name for p in settings.pull_servers] == ["default"]
    assert [p.name for p in settings.result_servers] == ["vna"]
    # Validating the merged settings again keeps the same list (no duplicate default server).
    again = Settings.model_validate(settings.model_dump())
    assert [p.name for p in again.pacs] == ["vna", "default"]


def test_no_pacs_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CXR_PACS", "CXR_PACS_CONFIG", "CXR_PACS_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings(_env_file=None)
    assert settings.pacs == [] and settings.pull_servers == [] and settings.result_servers == []


@pytest.mark.parametrize("entry, message", [
    ({"url": "http://h/dicom-web", "auth": "basic", "username": "u"}, "basic needs username and password"),
    ({"url": "http://h/dicom-web", "auth": "bearer"}, "bearer needs token"),
    ({"url": "ftp://h/dicom-web"}, "url"),
    ({"url": "http://h/dicom-web", "surprise": 1}, "surprise"),
])
def test_invalid_server_entries_are_refused(entry: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PacsServer.model_validate(entry)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="unique"):
        Settings(pacs=[{"url": "http://a/dicom-web"}, {"url": "http://b/dicom-web"}])


def test_session_auth_timeouts_and_retries() -> None:
    basic = make_session(PacsServer(url="http://h/dicom-web", auth="basic", username="u", password="p", retries=4,
                                    backoff_s=0.25))
    assert basic.auth == ("u", "p")
    retry = basic.get_adapter("http://h/").max_retries
    assert (retry.total, retry.connect, retry.read, retry.backoff_factor) == (4, 4, 4, 0.25)
    assert retry.allowed_methods is None and 503 in retry.status_forcelist
    bearer = make_session(PacsServer(url="https://h/dicom-web", auth="bearer", token="t0k", verify_tls="/ca.pem"))
    assert bearer.headers["Authorization"] == "Bearer t0k" and bearer.verify == "/ca.pem"
    client = make_client(PacsServer(url="http://h/dicom-web/", connect_timeout_s=1.5, read_timeout_s=7))
    assert client._timeout == (1.5, 7)  # noqa: SLF001 - dicomweb-client keeps it privately
    assert client._max_attempts == 1  # noqa: SLF001 - its own status retry is off: one retry layer only


def test_dropped_connections_are_retried_then_reported_with_the_server_name() -> None:
    server = dropping_server()
    try:
        pacs = PacsServer(name="down", url=server.url, retries=2, backoff_s=0.01)
        with pytest.raises(requests.ConnectionError) as info:
            make_client(pacs).search_for_series(study_instance_uid="1.2.3")
        assert server.connections == 3  # one try and two retries
        error = describe(pacs, info.value, "looking for study 1.2.3")
        assert isinstance(error, PacsUnavailable)
        assert error.reason.startswith(f"PACS 'down' ({server.url}) unreachable while looking for study 1.2.3")
        assert "after 3 attempt(s)" in error.reason
    finally:
        server.close()


def test_a_secret_missing_from_the_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORTHANC_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="ORTHANC_PASSWORD not set"):
        load_pacs_file(REPO / "deploy" / "orthanc" / "pacs.yaml")
