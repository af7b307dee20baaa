"""Authentication, authorisation and the audit record of every call, in one ASGI middleware.

Why a middleware and not a route dependency: it runs before the request body is read or
validated, so an anonymous client gets 401 (never a 400 or 422 that tells it about the body), and
it also covers the routes FastAPI adds itself (/docs, /openapi.json). The rule for each route is in
services/gateway/api/access.py; routes read the caller through `PrincipalDep` (api/deps.py).

Per call: match the route (as the router will), look up its rule, take the credentials
(`Authorization: Bearer <JWT or API key>`, `Authorization: ApiKey <key>` or `X-API-Key: <key>`),
check the scope, then record the call in the audit trail when its response starts. The record is
written before the response leaves: if the trail cannot be written, the client gets 503 instead
of data whose disclosure would go unrecorded. Errors are problem details, or OperationOutcomes
under /fhir, with `WWW-Authenticate` on 401 and 403 (RFC 6750).
"""

from __future__ import annotations

import html
import json
import logging
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import quote

from anyio import to_thread
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.audit.trail import AuditRecord, append, outcome_for_status
from libs.auth import apikeys, sessions
from libs.auth.principal import ANONYMOUS, AuthenticationFailed, Principal
from libs.auth.scopes import grants
from libs.core.config import Settings
from libs.fhir.outcome import operation_outcome
from services.gateway.api.access import Rule, rule_for
from services.gateway.routing import match_route
from services.gateway.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, database_problem

log = logging.getLogger(__name__)

REALM = "cxr-report"
FHIR_PREFIX = "/fhir"
WORKSTATION_PREFIX = "/workstation"


class Authenticator:
    """Turns the request's credentials into a Principal (blocking: run it in a thread)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        from libs.auth.tokens import AuthConfigError, JwtVerifier

        self.engine = engine
        self.jwt: JwtVerifier | None = None
        if settings.oidc_issuer:
            self.jwt = JwtVerifier(settings)
        elif settings.oidc_jwks_url or settings.oidc_jwks_file or settings.oidc_audience:
            raise AuthConfigError("oidc_jwks_url / oidc_jwks_file / oidc_audience need oidc_issuer as well")

    def authenticate(self, headers: dict[str, str], session_cookie: bool = False) -> Principal:
        """`session_cookie`: a workstation page, where the browser's sign-in cookie also counts
        (only there: the cookie never authorises the API, so no API call can be forged cross-site)."""
        authorization = headers.get("authorization")
        if authorization is not None:  # present, even empty: it is the credential (no fallback to others)
            scheme, _, credential = authorization.strip().partition(" ")
            credential = credential.strip()
            scheme = scheme.lower()
            if scheme == "apikey" or (scheme == "bearer" and apikeys.looks_like_key(credential)):
                return apikeys.authenticate(self.engine, credential)
            if scheme == "bearer" and credential:
                if self.jwt is None:
                    raise AuthenticationFailed("bearer JWTs are not accepted: no OIDC issuer is configured "
                                               "(use an API key, or set CXR_OIDC_ISSUER)")
                return self.jwt.verify(credential)
            raise AuthenticationFailed("the Authorization header must be 'Bearer <token>' or 'ApiKey <key>'",
                                       error="invalid_request")
        key = headers.get("x-api-key", "").strip()
        if key:
            return apikeys.authenticate(self.engine, key)
        if session_cookie:
            token = _cookie(headers, sessions.COOKIE)
            if token:
                return sessions.resolve(self.engine, token).principal
            raise AuthenticationFailed("not signed in", error=None)
        raise AuthenticationFailed("credentials are required: a bearer token (Authorization: Bearer ...) "
                                   "or an API key (X-API-Key: ...)", error=None)


def _match(scope: Scope) -> tuple[str | None, dict[str, Any]]:
    """The name and path parameters of the route the router will pick."""
    route, params = match_route(scope)
    return getattr(route, "name", None), params


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookie(headers: dict[str, str], name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def is_workstation(path: str) -> bool:
    return path == WORKSTATION_PREFIX or path.startswith(WORKSTATION_PREFIX + "/")


async def _send_workstation_refusal(send: Send, scope: Scope, status: int, detail: str) -> None:
    """A browser page: not signed in goes to the sign-in page (htmx requests are told to go there);
    signed in without the radiologist's scope gets a page that says so."""
    path = scope.get("path", "")
    signin = WORKSTATION_PREFIX + "/signin?next=" + quote(path if scope.get("method") == "GET" else WORKSTATION_PREFIX)
    if status == 401:
        htmx = any(k == b"hx-request" for k, _ in scope.get("headers", []))
        headers = [(b"hx-redirect" if htmx else b"location", signin.encode()), (b"content-length", b"0"),
                   (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 401 if htmx else 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    body = ("<!doctype html><html lang=en><meta charset=utf-8><title>Not allowed</title>"
            f"<h1>Not allowed</h1><p>{html.escape(detail)}</p><p><a href=\"{WORKSTATION_PREFIX}/signin\">"
            "Sign in as a radiologist</a></p></html>").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _quoted(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "'" for c in text)


async def _send_error(send: Send, path: str, status: int, detail: str, challenge: str | None,
                      extra_headers: dict[str, str] | None = None, kind: tuple[str, str] | None = None) -> None:
    """A refusal in the format of the API it is for: OperationOutcome under /fhir, else a problem
    (`kind`: its type slug and title; by default the one of `status`)."""
    if path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/"):
        body = operation_outcome(status, detail)
        media = "application/fhir+json"
    else:
        slug, title = kind or {401: ("unauthorized", "Authentication required"), 403: ("forbidden", "Insufficient scope"),
                               503: ("audit-unavailable", "Audit trail unavailable")}[status]
        body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail, "instance": path}
        media = PROBLEM_MEDIA_TYPE
    payload = json.dumps(body).encode()
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(payload)).encode())]
    if challenge:
        headers.append((b"www-authenticate", challenge.encode("latin-1")))
    for k, v in (extra_headers or {}).items():
        headers.append((k.encode(), v.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, engine: Engine, authenticator: Authenticator) -> None:
        self.app = app
        self.settings = settings
        self.engine = engine
        self.disabled = settings.auth_disabled
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name, params = _match(scope)
        rule = rule_for(name) if name else None
        if rule is None:  # no route: the router answers 404/405 and nothing is read
            await self.app(scope, receive, send)
            return
        public = rule.public or (self.settings.public_api_docs and rule.entity_type == "OpenAPI")
        if public:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        source = (scope.get("client") or (None,))[0]
        if self.disabled:
            principal = ANONYMOUS
        else:
            try:
                principal = await to_thread.run_sync(self.authenticator.authenticate, _headers(scope),
                                                     is_workstation(path))
            except AuthenticationFailed as exc:
                challenge = f'Bearer realm="{REALM}"'
                if exc.error:
                    challenge += f', error="{exc.error}", error_description="{_quoted(exc.reason)}"'
                await self._audit_refusal(rule, name, params, "anonymous", "unauthenticated", source, 401, exc.reason)
                if is_workstation(path):
                    await _send_workstation_refusal(send, scope, 401, exc.reason)
                else:
                    await _send_error(send, path, 401, exc.reason, challenge)
                return
            except Exception as exc:  # API keys live in the database: an outage here is a 503, not a 500
                outage = database_problem(exc)
                if outage is None:
                    raise
                log.warning("database unavailable while authenticating %s (%s)", name, type(exc).__name__)
                await _send_error(send, path, 503, outage.detail, None, outage.headers,
                                  (outage.slug, outage.title))
                return
            if rule.need is not None and not grants(principal.scopes, rule.need):
                reason = f"this operation needs the scope {rule.need} (or user/{rule.need.resource}.{rule.need.permission})"
                challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{rule.need}"'
                await self._audit_refusal(rule, name, params, principal.kind, principal.id, source, 403, reason)
                if is_workstation(path):
                    await _send_workstation_refusal(send, scope, 403, "The review workstation is for radiologists: "
                                                    "your credential does not grant signing reports. " + reason)
                else:
                    await _send_error(send, path, 403, reason, challenge)
                return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        if not rule.audit:
            await self.app(scope, receive, send)
            return
        await self._call_audited(scope, receive, send, rule, name, params, principal, source)

    async def _call_audited(self, scope: Scope, receive: Receive, send: Send, rule: Rule, name: str,
                            params: dict[str, Any], principal: Principal, source: str | None) -> None:
        replaced = False
        started = False

        async def audited_send(message: Message) -> None:
            nonlocal replaced, started
            if replaced:
                return  # the original response is swallowed: the client got the 503
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                record = self._record(rule, name, params, scope, principal.kind, principal.id, source, status, None)
                try:
                    await to_thread.run_sync(append, self.engine, record)
                except Exception:  # noqa: BLE001 - fail closed: no unrecorded disclosure
                    log.exception("audit trail write failed for %s; answering 503", name)
                    replaced = True
                    await _send_error(send, scope.get("path", ""), 503,
                                      "the audit trail cannot be written; the request's result is withheld "
                                      "(retry later)", None, {"retry-after": "5"})
                    return
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if not started:  # the server failed before answering: record the serious failure
                record = self._record(rule, name, params, scope, principal.kind, principal.id, source, 500,
                                      "unhandled server error")
                try:
                    await to_thread.run_sync(append, self.engine, record)
                except Exception:  # noqa: BLE001
                    log.exception("audit trail write failed for %s", name)
            raise

    def _record(self, rule: Rule, name: str, params: dict[str, Any], scope: Scope | None, agent_type: str,
                agent_id: str, source: str | None, status: int, detail: str | None) -> AuditRecord:
        entity_id = str(params[rule.id_param]) if rule.id_param and rule.id_param in params else None
        state = scope.get("state", {}) if scope is not None else {}
        # A route may name what it actually touched (the job it created, the report it returned).
        entity_type = state.get("audit_entity_type", rule.entity_type)
        entity_id = state.get("audit_entity_id", entity_id)
        if rule.search and scope is not None and scope.get("query_string"):
            query = scope["query_string"].decode("latin-1")
            detail = f"query: {query[:1000]}" if detail is None else detail
        return AuditRecord(agent_type=agent_type, agent_id=agent_id, action=rule.action,
                           outcome=outcome_for_status(status), entity_type=entity_type, entity_id=entity_id,
                           operation=name, source_address=source, http_status=status, detail=detail)

    async def _audit_refusal(self, rule: Rule, name: str, params: dict[str, Any], agent_type: str, agent_id: str,
                             source: str | None, status: int, reason: str) -> None:
        if not rule.audit:
            return
        record = self._record(rule, name, params, None, agent_type, agent_id, source, status, reason)
        try:
            await to_thread.run_sync(append, self.engine, record)
        except Exception:  # noqa: BLE001 - the refusal goes out either way; the log keeps the failure
            log.exception("audit trail write failed for a refused %s", name)
