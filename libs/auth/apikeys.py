"""API keys for PACS and devices that cannot do OAuth.

A key reads `cxr_<id>_<secret>`: the id is public (it names the key in lists, logs and the audit
trail), the secret is 32 random bytes. Only SHA-256 of the secret is stored: with that much entropy
a slow password hash adds nothing, and the lookup stays one primary-key read per request. The full
key is shown once, when it is created.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, select

from libs.auth.principal import AuthenticationFailed, Principal
from libs.auth.scopes import parse_scope, role_scopes
from libs.storage.db import session_scope
from libs.storage.models import ApiKeyRow, utcnow

PREFIX = "cxr_"
_KEY = re.compile(r"^cxr_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[\w .@:-]{1,100}$")
# last_used_at is a convenience for finding unused keys: written at most this often, not per request
TOUCH_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    name: str
    role: str
    scopes: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


def looks_like_key(value: str) -> bool:
    return value.startswith(PREFIX)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(engine: Engine, name: str, role: str, scopes: list[str] | None = None) -> tuple[ApiKeyInfo, str]:
    """A new key for `role` (or, with role "custom", exactly `scopes`); returns its record and the
    full key (shown once, never stored)."""
    if not _NAME.match(name):
        raise ValueError("name must be 1 to 100 letters, digits, spaces or . @ : _ -")
    if role == "custom":
        bad = [sc for sc in scopes or [] if parse_scope(sc) is None]
        if not scopes or bad:
            raise ValueError(f"a custom key needs SMART scopes like system/DiagnosticReport.rs (not {bad or 'none'})")
        scopes = list(scopes)
    elif scopes:
        raise ValueError("scopes come from the role; use role 'custom' to give them one by one")
    else:
        scopes = list(role_scopes(role))
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with session_scope(engine) as session:
        row = ApiKeyRow(id=key_id, name=name, role=role, scopes=scopes, secret_hash=_digest(secret),
                        created_at=utcnow())
        session.add(row)
        session.flush()
        info = _info(row)
    return info, f"{PREFIX}{key_id}_{secret}"


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(row.id, row.name, row.role, list(row.scopes), row.created_at, row.revoked_at, row.last_used_at)


def list_keys(engine: Engine) -> list[ApiKeyInfo]:
    with session_scope(engine) as session:
        return [_info(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))]


def revoke(engine: Engine, key_id: str) -> ApiKeyInfo:
    """Revokes a key (kept for the audit trail); raises KeyError when there is no such key."""
    with session_scope(engine) as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            raise KeyError(key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _info(row)


def authenticate(engine: Engine, key: str) -> Principal:
    m = _KEY.match(key)
    if m is None:
        raise AuthenticationFailed("the API key is malformed")
    key_id, secret = m.groups()
    with session_scope(engine) as session:
        row = session.get(ApiKeyRow, key_id)
        # compare_digest even for an unknown id, so timing does not tell which ids exist
        expected = row.secret_hash if row is not None else _digest("")
        if not hmac.compare_digest(expected, _digest(secret)) or row is None:
            raise AuthenticationFailed("the API key is not valid")
        if row.revoked_at is not None:
            raise AuthenticationFailed(f"API key {key_id} was revoked")
        now = utcnow()
        last = row.last_used_at
        if last is None or now - (last if last.tzinfo else last.replace(tzinfo=dt.timezone.utc)) > TOUCH_EVERY:
            row.last_used_at = now
        return Principal(kind="apikey", id=key_id, name=row.name, scopes=frozenset(row.scopes))
