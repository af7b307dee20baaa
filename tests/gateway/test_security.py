"""Roles and scopes end to end, token checks, the audit trail of real calls, and its FHIR view."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from libs.audit import trail
from libs.auth import apikeys
from libs.core.config import Settings
from services.gateway import create_app
from tests.fhir.helpers import seed_reviewed_job
from tests.conftest import authorize
from tests.gateway.helpers import stow
from tests.gateway.test_access import AUDIENCE, ISSUER, Issuer
from tests.reporting.helpers import model_output


@pytest.fixture
def app_client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as c:
        yield c


def _key(client: TestClient, role: str) -> dict[str, str]:
    return {"X-API-Key": apikeys.create(client.app.state.engine, f"{role} test", role)[1]}


def _reviewed_report(client: TestClient) -> tuple[str, str]:
    job_id, study_uid, _ = seed_reviewed_job(client.app.state.engine, model_output())
    return study_uid, f"rpt-{job_id}"


def test_each_role_gets_exactly_its_own_operations(app_client: TestClient, chest_dicom_bytes: bytes) -> None:
    c = app_client
    pacs, ehr, rad, ops = (_key(c, r) for r in ("pacs", "ehr", "radiologist", "ops"))
    study_uid, report_id = _reviewed_report(c)

    c.headers.clear()
    c.headers.update(pacs)
    assert stow(c, [chest_dicom_bytes]).status_code == 200  # PACS stores
    for path in (f"/api/v1/studies/{study_uid}/report", f"/fhir/DiagnosticReport/{report_id}", "/metrics"):
        assert c.get(path).status_code == 403, path  # and reads nothing back

    def status(method: str, path: str, headers: dict[str, str]) -> int:
        return c.request(method, path, headers=headers, **({"json": {}} if method == "POST" else {})).status_code

    report, fhir_report = f"/api/v1/studies/{study_uid}/report", f"/fhir/DiagnosticReport/{report_id}"
    audit, metrics = "/fhir/AuditEvent", "/metrics"
    stored_study = "/api/v1/studies/" + study_uid + "/report"
    table = {
        # (method, path): {role: allowed}
        ("GET", report): {"ehr": True, "radiologist": True, "ops": False},
        ("GET", fhir_report): {"ehr": True, "radiologist": True, "ops": False},
        ("POST", stored_study): {"ehr": True, "radiologist": False, "ops": False},
        ("GET", audit): {"ehr": False, "radiologist": False, "ops": True},
        ("GET", metrics): {"ehr": False, "radiologist": False, "ops": True},
    }
    keys = {"ehr": ehr, "radiologist": rad, "ops": ops}
    for (method, path), allowed in table.items():
        for role, ok in allowed.items():
            got = status(method, path, keys[role])
            assert (got != 403) == ok, (role, method, path, got)
            assert got != 401
    # a radiologist or an EHR never stores studies
    c.headers.clear()
    c.headers.update(ehr)
    assert stow(c, [chest_dicom_bytes]).status_code == 403


def test_patient_context_scopes_and_symmetric_tokens_grant_nothing(
        make_settings: Callable[..., Settings], tmp_path) -> None:  # noqa: ANN001
    issuer = Issuer(tmp_path)
    settings = make_settings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_file=issuer.jwks)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        study_uid, report_id = _reviewed_report(c)
        path = f"/fhir/DiagnosticReport/{report_id}"
        assert c.get(path, headers={"Authorization": f"Bearer {issuer.token('patient/*.*')}"}).status_code == 403
        assert c.get(path, headers={"Authorization": f"Bearer {issuer.token('user/DiagnosticReport.read')}"}).status_code == 200
        assert c.get(path, headers={"Authorization": f"Bearer {issuer.token('system/DiagnosticReport.rs')}"}).status_code == 200
        hs = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**31, "scope": "system/*.*"},
                        "a-shared-secret-of-sufficient-length!", algorithm="HS256")
        unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**31, "scope": "system/*.*"},
                              None, algorithm="none")
        for token in (hs, unsigned):
            r = c.get(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401 and "not accepted" in r.json()["issue"][0]["diagnostics"]


def test_anonymous_malformed_body_gets_401_not_400(app_client: TestClient) -> None:
    r = app_client.post("/api/v1/studies/1.2.3/report", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401


def test_bearer_jwt_refused_when_no_issuer_is_configured(app_client: TestClient, tmp_path) -> None:  # noqa: ANN001
    token = Issuer(tmp_path).token("system/*.*")
    r = app_client.get("/api/v1/jobs/x", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "no OIDC issuer is configured" in r.json()["detail"]


def test_issuer_without_audience_refuses_to_start(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="oidc_audience"):
        create_app(make_settings(oidc_issuer=ISSUER))


def test_openapi_declares_schemes_and_per_operation_scopes(app_client: TestClient) -> None:
    authorize(app_client)
    spec = app_client.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearerJWT", "apiKey"}
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    op = spec["paths"]["/api/v1/studies/{study_id}/report"]["post"]
    assert op["security"] == [{"bearerJWT": []}, {"apiKey": []}]
    assert "system/DiagnosticReport.c" in op["description"]
    assert {"401", "403"} <= set(op["responses"])


def test_docs_need_credentials_unless_made_public(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as c:
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/docs").status_code == 401
    with TestClient(create_app(make_settings(public_api_docs=True))) as c:
        assert c.get("/openapi.json").status_code == 200


def test_switching_auth_off_is_loud_and_still_audited(make_settings: Callable[..., Settings],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(make_settings(auth_disabled=True))) as c:
        assert "AUTHENTICATION IS SWITCHED OFF" in caplog.text
        assert c.get("/api/v1/jobs/none").status_code == 404
        [row] = trail.search(c.app.state.engine, trail.Query(entity_type="Job"))
        assert (row.agent_type, row.agent_id, row.outcome) == ("anonymous", "auth-disabled", "4")


class _JwksServer:
    """A local OIDC issuer: discovery document and a JWKS that a test can rotate."""

    def __init__(self, issuer: Issuer) -> None:
        self.jwks = json.loads(issuer.jwks.read_text())
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": outer.url, "jwks_uri": f"{outer.url}/jwks"}
                elif self.path == "/jwks":
                    outer.fetches += 1
                    body = outer.jwks
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_keys_from_discovery_are_cached_and_a_rotation_is_picked_up(
        make_settings: Callable[..., Settings], tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, new = Issuer(tmp_path / "old"), Issuer(tmp_path / "new")
    server = _JwksServer(old)
    try:
        settings = make_settings(oidc_issuer=server.url, oidc_audience=AUDIENCE, jwks_cache_s=300,
                                 jwks_refetch_cooldown_s=0)
        with TestClient(create_app(settings), raise_server_exceptions=False) as c:
            path = "/api/v1/jobs/none"
            for _ in range(3):
                r = c.get(path, headers={"Authorization": f"Bearer {old.token('system/Job.r', issuer=server.url)}"})
                assert r.status_code == 404, r.text
            assert server.fetches == 1  # cached
            # the issuer rotates to a new key with another kid: one refetch picks it up
            rotated = json.loads(new.jwks.read_text())
            for k in rotated["keys"]:
                k["kid"] = "rotated-" + k["kid"]
            server.jwks = rotated
            token = jwt.encode({"iss": server.url, "aud": AUDIENCE, "sub": "ehr", "exp": 2**31, "scope": "system/Job.r"},
                               new.rsa, algorithm="RS256", headers={"kid": "rotated-rsa-1"})
            assert c.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 404
            assert server.fetches == 2
            # a token signed by a key the issuer never published stays out
            stranger = Issuer(tmp_path)
            bad = stranger.token("system/Job.r", issuer=server.url)
            assert c.get(path, headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    finally:
        server.server.shutdown()


def test_audit_trail_records_who_read_which_report_and_serves_it_as_fhir(app_client: TestClient) -> None:
    c = app_client
    ehr, ops = _key(c, "ehr"), _key(c, "ops")
    ehr_id = ehr["X-API-Key"].split("_")[1]
    study_uid, report_id = _reviewed_report(c)
    assert c.get(f"/api/v1/studies/{study_uid}/report", headers=ehr).status_code == 200
    assert c.get(f"/fhir/DiagnosticReport/{report_id}", headers=ehr).status_code == 200
    assert c.get(f"/fhir/DiagnosticReport/{report_id}").status_code == 401  # anonymous: refused, recorded

    engine = c.app.state.engine
    rows = trail.search(engine, trail.Query(entity_type="DiagnosticReport", entity_id=report_id))
    assert [(r.agent_type, r.agent_id, r.action, r.outcome, r.operation) for r in rows] == [
        ("apikey", ehr_id, "R", "0", "get_report"),
        ("apikey", ehr_id, "R", "0", "read_diagnostic_report"),
        ("anonymous", "unauthenticated", "R", "4", "read_diagnostic_report"),
    ]
    assert rows[0].source_address == "testclient" and rows[2].http_status == 401
    assert trail.verify(engine).ok

    # the ops view: FHIR AuditEvents, searchable by agent, entity and date
    bundle = c.get("/fhir/AuditEvent", params={"agent": f"apikey:{ehr_id}", "entity": f"DiagnosticReport/{report_id}",
                                               "date": "ge2000-01-01"}, headers=ops).json()
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 2
    event = bundle["entry"][0]["resource"]
    assert event["agent"][0]["who"]["identifier"]["value"] == f"apikey:{ehr_id}"
    assert event["entity"][0]["what"]["identifier"]["value"] == f"DiagnosticReport/{report_id}"
    assert event["subtype"][0]["code"] == "read" and event["outcome"] == "0"
    one = c.get(f"/fhir/AuditEvent/{event['id']}", headers=ops).json()
    assert one["id"] == event["id"]
    assert c.get("/fhir/AuditEvent", params={"date": "lt2000-01-01"}, headers=ops).json().get("entry") is None
    r = c.get("/fhir/AuditEvent", params={"patient": "x"}, headers=ops)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    # paging: a next link that continues
    page = c.get("/fhir/AuditEvent", params={"_count": 1}, headers=ops).json()
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    page2 = c.get(nxt.replace("http://testserver", ""), headers=ops).json()
    assert page2["entry"][0]["resource"]["id"] != page["entry"][0]["resource"]["id"]


def test_tampering_with_the_trail_is_detected(app_client: TestClient, tmp_path) -> None:  # noqa: ANN001
    c = app_client
    ehr = _key(c, "ehr")
    for _ in range(4):
        c.get("/api/v1/jobs/none", headers=ehr)
    engine = c.app.state.engine
    assert trail.verify(engine).ok and trail.verify(engine).rows == 4
    with engine.begin() as conn:  # the table refuses edits...
        with pytest.raises(Exception, match="append-only"):
            conn.execute(text("UPDATE audit_events SET agent_id = 'someone-else' WHERE seq = 2"))
    with engine.begin() as conn:  # ...so an attacker with DDL rights drops the guard first
        conn.execute(text("DROP TRIGGER audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET agent_id = 'someone-else' WHERE seq = 2"))
    result = trail.verify(engine)
    assert not result.ok and result.first_bad_seq == 2 and "changed" in result.problem
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET agent_id = (SELECT agent_id FROM audit_events WHERE seq = 1) WHERE seq = 2"))
        conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        conn.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    result = trail.verify(engine)
    assert not result.ok and "removed from the end" in result.problem


def test_audit_failure_withholds_the_response(app_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    c = app_client
    ehr = _key(c, "ehr")
    study_uid, _ = _reviewed_report(c)

    def broken(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk full")

    monkeypatch.setattr("services.gateway.security.append", broken)
    r = c.get(f"/api/v1/studies/{study_uid}/report", headers=ehr)
    assert r.status_code == 503 and r.json()["type"].endswith("audit-unavailable")
    assert "findings" not in r.text


def test_an_empty_authorization_header_is_not_skipped_for_another_credential(app_client: TestClient) -> None:
    # Found by schemathesis (ST401): an empty Authorization beside a valid X-API-Key was ignored.
    key = _key(app_client, "ops")
    r = app_client.get("/api/v1/jobs/none", headers={**key, "Authorization": ""})
    assert r.status_code == 401


def test_including_observations_in_a_search_needs_the_observation_scope(app_client: TestClient) -> None:
    c = app_client
    study_uid, _ = _reviewed_report(c)
    _, only_reports = apikeys.create(c.app.state.engine, "reports only", "custom", ["system/DiagnosticReport.rs"])
    params = {"imaging-study": study_uid, "_include": "DiagnosticReport:result"}
    r = c.get("/fhir/DiagnosticReport", params=params, headers={"X-API-Key": only_reports})
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"
    assert c.get("/fhir/DiagnosticReport", params={"imaging-study": study_uid},
                 headers={"X-API-Key": only_reports}).status_code == 200
    included = c.get("/fhir/DiagnosticReport", params=params, headers=_key(c, "ehr")).json()
    assert any(e["search"]["mode"] == "include" for e in included["entry"])


def test_a_stored_study_is_audited_with_its_uid(app_client: TestClient, make_chest_dicom) -> None:  # noqa: ANN001
    c = app_client
    c.headers.update(_key(c, "pacs"))
    assert stow(c, [make_chest_dicom(study_uid="1.2.826.0.1.3680043.10.1")]).status_code == 200
    [row] = trail.search(c.app.state.engine, trail.Query(entity_type="ImagingStudy"))
    assert (row.entity_id, row.action, row.outcome, row.agent_type) == ("1.2.826.0.1.3680043.10.1", "C", "0", "apikey")
