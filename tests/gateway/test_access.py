"""Every route × every kind of caller, generated from the app's route table and the access rules.

A route added without a rule in services/gateway/api/access.py makes create_app refuse to start
(tested below), and a route with a rule is tried here with: no credentials, a token or key without
its scope, an expired token, a token from another issuer, a revoked key, and the right scope.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter
from fastapi.testclient import TestClient

from libs.auth import apikeys
from libs.core.config import Settings
from services.gateway import create_app
from services.gateway.api.access import RULES
from services.gateway.routing import leaf_routes

ISSUER = "https://issuer.test/realms/hospital"
AUDIENCE = "cxr-gateway"
PLACEHOLDERS = {"study_id": "1.2.3.4", "study_uid": "1.2.3.4", "job_id": "no-such-job", "id": "no-such-id",
                "path": "Unknown/1"}


class Issuer:
    """An OIDC issuer's signing keys as a JWKS file, and tokens signed with them."""

    def __init__(self, folder: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = []
        for kid, key, alg in (("rsa-1", self.rsa, "RS256"), ("ec-1", self.ec, "ES256")):
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        self.jwks = folder / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": keys}))

    def token(self, scope: str, *, issuer: str = ISSUER, audience: str = AUDIENCE, expires_in: int = 300,
              alg: str = "RS256", sub: str = "ehr-integration", **claims) -> str:  # noqa: ANN003
        now = int(time.time())
        body = {"iss": issuer, "aud": audience, "sub": sub, "iat": now, "exp": now + expires_in, "scope": scope, **claims}
        key, kid = (self.rsa, "rsa-1") if alg == "RS256" else (self.ec, "ec-1")
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture
def oidc_settings(make_settings: Callable[..., Settings], issuer: Issuer) -> Settings:
    return make_settings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_file=issuer.jwks)


@pytest.fixture
def api(oidc_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(oidc_settings), raise_server_exceptions=False) as c:
        yield c


def _cases() -> list[tuple[str, str, str]]:
    app = create_app(Settings(queue_backend="inprocess"))
    cases = []
    for route in leaf_routes(app.routes):
        rule = RULES[route.name]
        if rule.public:
            continue
        path = route.path
        for name, value in PLACEHOLDERS.items():
            path = path.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
        method = sorted(route.methods or {"GET"})[0] if route.name != "fhir_fallback" else "GET"
        cases.append((route.name, method, path))
    return cases


CASES = _cases()


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]):  # noqa: ANN202
    return client.request(method, path, headers=headers, follow_redirects=False)


def _assert_refused(r, status: int, path: str) -> None:  # noqa: ANN001
    if path.startswith("/workstation"):
        # Browser pages: not signed in goes to the sign-in page; the wrong scope gets a page saying so.
        if status == 401:
            assert r.status_code == 303 and r.headers["location"].startswith("/workstation/signin?next="), (
                path, r.status_code, r.text)
        else:
            assert r.status_code == 403 and r.headers["content-type"].startswith("text/html"), (path, r.status_code)
            assert "for radiologists" in r.text
        return
    assert r.status_code == status, (path, r.status_code, r.text)
    assert r.headers["www-authenticate"].startswith('Bearer realm="cxr-report"')
    if path.startswith("/fhir"):
        assert r.headers["content-type"].startswith("application/fhir+json")
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == ("login" if status == 401 else "forbidden")
    else:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == status


def test_every_route_has_a_rule_and_the_table_is_tested() -> None:
    names = {c[0] for c in CASES}
    protected = {n for n, rule in RULES.items() if not rule.public}
    routed = {r.name for r in leaf_routes(create_app(Settings(queue_backend="inprocess")).routes)}
    # every rule names a route that exists, or one of the planned routes of other work
    assert names == protected & routed
    assert len(CASES) >= 15


def test_a_route_without_a_rule_stops_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.gateway.api import main as api_main

    extra = APIRouter()

    @extra.get("/api/v1/unprotected")
    def brand_new_route() -> dict:
        return {}

    router = APIRouter()
    router.include_router(api_main.api_router)
    router.include_router(extra)
    monkeypatch.setattr("services.gateway.main.api_router", router)
    with pytest.raises(RuntimeError, match="brand_new_route"):
        create_app(Settings(queue_backend="inprocess"))


@pytest.mark.parametrize(("name", "method", "path"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_route_refuses_and_admits(api: TestClient, issuer: Issuer, name: str, method: str, path: str) -> None:
    rule = RULES[name]
    # no credentials
    r = _call(api, method, path, {})
    _assert_refused(r, 401, path)
    assert "error=" not in r.headers.get("www-authenticate", "")  # RFC 6750: no error code when none were sent
    # expired token, another issuer, another audience, a garbled token
    for token in (issuer.token("system/*.*", expires_in=-120), issuer.token("system/*.*", issuer="https://evil.test"),
                  issuer.token("system/*.*", audience="another-service"), "not.a.jwt"):
        r = _call(api, method, path, {"Authorization": f"Bearer {token}"})
        _assert_refused(r, 401, path)
        assert path.startswith("/workstation") or 'error="invalid_token"' in r.headers["www-authenticate"]
    # a revoked key
    info, key = apikeys.create(api.app.state.engine, "revoked", "custom", ["system/*.*"])
    apikeys.revoke(api.app.state.engine, info.id)
    _assert_refused(_call(api, method, path, {"X-API-Key": key}), 401, path)
    # a valid caller without the scope (a scope for some other resource)
    wrong = issuer.token("system/Nothing.cruds")
    r = _call(api, method, path, {"Authorization": f"Bearer {wrong}"})
    if rule.need is None:
        assert r.status_code not in (401, 403), r.text
    else:
        _assert_refused(r, 403, path)
        assert path.startswith("/workstation") or f'scope="{rule.need}"' in r.headers["www-authenticate"]
    # the right scope, as a JWT (RS256 and ES256) and as an API key
    right = str(rule.need) if rule.need else "system/Nothing.r"
    for headers in ({"Authorization": f"Bearer {issuer.token(right)}"},
                    {"Authorization": f"Bearer {issuer.token(right, alg='ES256')}"},
                    {"X-API-Key": apikeys.create(api.app.state.engine, "right", "custom", [right])[1]}):
        r = _call(api, method, path, headers)
        assert r.status_code not in (401, 403), (name, headers, r.status_code, r.text)
