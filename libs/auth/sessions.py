"""Sign-in sessions of the review workstation: a browser cannot send an API key or a bearer token
with a page navigation, so a radiologist signs in once (with their API key or an access token from
the hospital's identity provider) and the browser holds an HttpOnly session cookie instead.

The credential is checked like any API call (libs/auth/apikeys.py, libs/auth/tokens.py) and must
grant signing (user or system DiagnosticReport.u: the `radiologist` role); it is not stored. The
session keeps who and which scopes, a CSRF token for the page's forms, and an expiry: a JWT
session ends with its token, an API-key session after `ttl` and at once when the key is revoked.
Only the SHA-256 of the cookie's secret is stored, so a database dump signs no one in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, update

from libs.auth.principal import AuthenticationFailed, Principal
from libs.storage.db import session_scope
from libs.storage.models import ApiKeyRow, WorkstationSessionRow, utcnow

COOKIE = "cxr_ws_session"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    expires_at: dt.datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def start(engine: Engine, principal: Principal, ttl: dt.timedelta,
          not_after: dt.datetime | None = None) -> tuple[str, Session]:
    """A new session for `principal`; returns the cookie value (shown once) and the session."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + ttl if not_after is None else min(now + ttl, _aware(not_after))
    csrf = secrets.token_urlsafe(24)
    with session_scope(engine) as db:
        db.add(WorkstationSessionRow(id=_digest(token), principal_kind=principal.kind, principal_id=principal.id,
                                     name=principal.name[:200], scopes=sorted(principal.scopes), csrf_token=csrf,
                                     created_at=now, expires_at=expires))
    return token, Session(principal, csrf, expires)


def resolve(engine: Engine, token: str) -> Session:
    """The live session of a cookie value; AuthenticationFailed when it is unknown, over or ended."""
    if not token or len(token) > 100:
        raise AuthenticationFailed("not signed in")
    with session_scope(engine) as db:
        row = db.get(WorkstationSessionRow, _digest(token))
        if row is None or row.ended_at is not None:
            raise AuthenticationFailed("not signed in (the session ended)")
        if _aware(row.expires_at) <= utcnow():
            raise AuthenticationFailed("the session expired: sign in again")
        if row.principal_kind == "apikey":
            key = db.get(ApiKeyRow, row.principal_id)
            if key is None or key.revoked_at is not None:
                raise AuthenticationFailed(f"API key {row.principal_id} was revoked")
        principal = Principal(kind=row.principal_kind, id=row.principal_id, name=row.name,
                              scopes=frozenset(row.scopes))
        return Session(principal, row.csrf_token, _aware(row.expires_at))


def end(engine: Engine, token: str) -> None:
    """Signs out (the row stays, ended, for the record)."""
    with session_scope(engine) as db:
        db.execute(update(WorkstationSessionRow).where(WorkstationSessionRow.id == _digest(token),
                                                       WorkstationSessionRow.ended_at.is_(None))
                   .values(ended_at=utcnow()))


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf_token, presented or "")
