"""`cxr-report apikey ...` and `cxr-report audit verify` against a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from libs.auth import apikeys
from libs.auth.scopes import Requirement, grants, parse_scope
from libs.cli import main
from libs.core.config import get_settings, reset_settings_cache
from libs.storage.db import get_engine


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CXR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    reset_settings_cache()
    yield tmp_path
    reset_settings_cache()


def test_key_lifecycle_is_audited_and_the_secret_shown_once(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["apikey", "create", "--name", "orthanc main", "--role", "pacs", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("cxr_") and created["scopes"] == ["system/ImagingStudy.c"]
    engine = get_engine(get_settings().sqlalchemy_url)
    assert apikeys.authenticate(engine, created["key"]).id == created["id"]
    with engine.connect() as conn:  # only a hash is stored
        stored = conn.execute(text("SELECT secret_hash FROM api_keys")).scalar_one()
    assert created["key"].split("_", 2)[2] not in stored

    assert main(["apikey", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert main(["apikey", "revoke", created["id"]]) == 0
    with pytest.raises(apikeys.AuthenticationFailed, match="revoked"):
        apikeys.authenticate(engine, created["key"])
    assert main(["apikey", "revoke", "000000000000"]) == 1  # unknown key
    capsys.readouterr()
    assert main(["apikey", "create", "--name", "x", "--role", "custom", "--scope", "nonsense"]) == 2

    assert main(["audit", "verify", "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified == {"rows": 2, "ok": True, "problem": None, "first_bad_seq": None}  # create + revoke
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET detail = 'role ops' WHERE seq = 1"))
    assert main(["audit", "verify"]) == 1
    assert "BROKEN" in capsys.readouterr().err


@pytest.mark.parametrize(("scope", "need", "ok"), [
    ("system/DiagnosticReport.read", Requirement("DiagnosticReport", "r"), True),
    ("system/DiagnosticReport.read", Requirement("DiagnosticReport", "c"), False),
    ("system/DiagnosticReport.write", Requirement("DiagnosticReport", "c"), True),
    ("system/DiagnosticReport.rs", Requirement("DiagnosticReport", "s"), True),
    ("system/DiagnosticReport.rs", Requirement("DiagnosticReport", "u"), False),
    ("user/*.cruds", Requirement("Job", "u"), True),
    ("patient/*.*", Requirement("DiagnosticReport", "r"), False),
    ("system/Observation.*", Requirement("DiagnosticReport", "r"), False),
    ("system/DiagnosticReport.sr", Requirement("DiagnosticReport", "r"), False),  # v2 letters are ordered
    ("openid", Requirement("DiagnosticReport", "r"), False),
])
def test_smart_scope_matching(scope: str, need: Requirement, ok: bool) -> None:
    assert grants([scope], need) is ok


def test_parse_scope_rejects_junk() -> None:
    assert parse_scope("system/DiagnosticReport.xyz") is None
    assert parse_scope("system/Diagnostic Report.read") is None
