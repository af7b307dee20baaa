"""The review workstation's server side (ui/workstation): sign-in, what is served to whom, the
worklist's order and filters, the rendered image, and sign / edit / reject stored as feedback
versions. The browser test (tests/workstation/) drives the same pages in Chromium."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from libs.auth import apikeys
from libs.auth.scopes import role_scopes
from services.gateway import create_app
from tests.gateway.helpers import stow


def _radiologist(client: TestClient, name: str = "Dr Test") -> str:
    _, key = apikeys.create(client.app.state.engine, name, "radiologist")
    return key


def _signin(client: TestClient, key: str) -> None:
    r = client.post("/workstation/signin", data={"credential": key, "next": "/workstation"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/workstation", r.text


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def _report(client: TestClient, make_chest_dicom, priority: str = "routine", key: str | None = None) -> dict:  # noqa: ANN001
    from pydicom.uid import generate_uid

    headers = {"X-API-Key": key} if key else {}
    study = generate_uid()
    assert stow(client, [make_chest_dicom(study_uid=study)]).status_code == 200
    assert client.post(f"/api/v1/studies/{study}/report", json={"priority": priority}, headers=headers).status_code == 202
    r = client.get(f"/api/v1/studies/{study}/report", params={"wait": 60}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "reviewed", r.text
    return r.json()


@pytest.fixture
def browser(settings) -> TestClient:  # noqa: ANN001
    """A client with no API key header: a browser, which has only the session cookie."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_pages_need_a_radiologist_sign_in_and_the_cookie_never_opens_the_api(browser: TestClient) -> None:
    r = browser.get("/workstation", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/workstation/signin?next=/workstation"
    assert browser.get("/workstation/signin").status_code == 200
    # An EHR's key is a valid credential, but not a radiologist's: refused, no cookie.
    _, ehr = apikeys.create(browser.app.state.engine, "ehr", "ehr")
    r = browser.post("/workstation/signin", data={"credential": ehr}, follow_redirects=False)
    assert r.status_code == 401 and "does not grant signing" in r.text and "set-cookie" not in r.headers
    r = browser.post("/workstation/signin", data={"credential": "cxr_nonsense"}, follow_redirects=False)
    assert r.status_code == 401 and "set-cookie" not in r.headers
    # An EHR key sent as a header to a workstation page: 403, said plainly.
    r = browser.get("/workstation", headers={"X-API-Key": ehr}, follow_redirects=False)
    assert r.status_code == 403 and "for radiologists" in r.text

    key = _radiologist(browser)
    r = browser.post("/workstation/signin", data={"credential": key, "next": "https://evil.example/"},
                     follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/workstation"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/workstation" in cookie
    assert key not in cookie
    page = browser.get("/workstation")
    assert page.status_code == 200 and "Worklist" in page.text and "Dr Test" in page.text
    assert page.headers["cache-control"] == "no-store" and "default-src 'self'" in page.headers["content-security-policy"]
    # The session cookie is for the workstation only: the API still wants a credential.
    session = browser.cookies.get("cxr_ws_session")
    r = browser.get("/api/v1/jobs/x", headers={"Cookie": f"cxr_ws_session={session}"})
    assert r.status_code == 401

    # Revoking the key ends its sessions at once; signing out ends one.
    info = apikeys.authenticate(browser.app.state.engine, key)
    apikeys.revoke(browser.app.state.engine, info.id)
    assert browser.get("/workstation", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session(browser: TestClient) -> None:
    _signin(browser, _radiologist(browser))
    page = browser.get("/workstation")
    token = browser.cookies.get("cxr_ws_session")
    assert browser.post("/workstation/signout", data={"csrf": _csrf(page.text)}, follow_redirects=False).status_code == 303
    r = browser.get("/workstation", headers={"Cookie": f"cxr_ws_session={token}"}, follow_redirects=False)
    assert r.status_code == 303


def test_worklist_puts_stat_and_critical_first_and_filters(client: TestClient, browser: TestClient,  # noqa: ANN001
                                                           make_chest_dicom) -> None:
    routine = _report(client, make_chest_dicom)
    stat = _report(client, make_chest_dicom, priority="stat")
    _signin(browser, _radiologist(browser))
    page = browser.get("/workstation").text
    order = [m for m in re.findall(r'data-href="/workstation/reports/(rpt-[^"]+)"', page)]
    assert order.index(f"rpt-{stat['job_id']}") < order.index(f"rpt-{routine['job_id']}")
    assert "STAT" in page
    rows = browser.get("/workstation/worklist/rows", params={"status": "read"}).text
    assert "Nothing to read" in rows
    rows = browser.get("/workstation/worklist/rows", params={"modality": "MR"})
    assert rows.status_code == 422  # only CR / DX are read here
    rows = browser.get("/workstation/worklist/rows", params={"since": "2999-01-01"}).text
    assert "Nothing to read" in rows


def test_study_page_image_and_sign_accept_edit_reject(client: TestClient, browser: TestClient,  # noqa: ANN001
                                                      make_chest_dicom) -> None:
    report = _report(client, make_chest_dicom)
    report_id = report["report_id"]
    _signin(browser, _radiologist(browser))
    page = browser.get(f"/workstation/reports/{report_id}")
    assert page.status_code == 200
    for obs in report["observations"]:
        assert f'data-label="{obs["label"]}"' in page.text
    image = browser.get(f"/workstation/reports/{report_id}/image.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    png = Image.open(io.BytesIO(image.content))
    assert png.mode == "L" and max(png.size) <= 1536
    assert browser.get("/workstation/reports/rpt-nope").status_code == 404

    csrf = _csrf(page.text)
    url = f"/workstation/reports/{report_id}/sign"
    # No CSRF token: refused, nothing stored.
    assert browser.post(url, data={"action": "sign", "findings_text": report["findings_text"],
                                   "impression": report["impression"]}).status_code == 403
    assert client.get(f"/api/v1/reports/{report_id}/feedback").json() == []
    # Reject without a reason: refused with the reason why, nothing stored.
    r = browser.post(url, data={"csrf": csrf, "action": "reject", "reason": " "})
    assert r.status_code == 422 and "reason is required" in r.json()["detail"]
    assert client.get(f"/api/v1/reports/{report_id}/feedback").json() == []

    # Sign unchanged: accepted, with the radiologist's call on every assessed observation.
    r = browser.post(url, data={"csrf": csrf, "action": "sign", "findings_text": report["findings_text"],
                                "impression": report["impression"]}, follow_redirects=False)
    assert r.status_code == 303
    (v1,) = client.get(f"/api/v1/reports/{report_id}/feedback").json()
    assert v1["decision"] == "accepted" and v1["reviewer"].startswith("apikey:")
    assert {c["observation"]: c["present"] for c in v1["corrections"]} == {
        o["label"]: o["present"] for o in report["observations"]}

    # Edit the impression and flip one call: edited, with the final text and the flipped call.
    flipped = report["observations"][0]
    form = {"csrf": csrf, "action": "sign", "findings_text": report["findings_text"],
            "impression": "No acute cardiopulmonary abnormality.", "rating": "7",
            f"call:{flipped['label']}": "absent" if flipped["present"] else "present"}
    r = browser.post(url, data=form, headers={"HX-Request": "true"})
    assert r.status_code == 422 and "less than or equal to 5" in r.json()["detail"]  # and nothing stored
    assert len(client.get(f"/api/v1/reports/{report_id}/feedback").json()) == 1
    assert browser.post(url, data={**form, "rating": "3"}, headers={"HX-Request": "true"}).status_code == 204
    v2 = client.get(f"/api/v1/reports/{report_id}/feedback").json()[-1]
    assert v2["version"] == 2 and v2["decision"] == "edited" and v2["rating"] == 3
    assert v2["final_text"].endswith("No acute cardiopulmonary abnormality.") and v2["edit_distance"] > 0
    assert {c["observation"]: c["present"] for c in v2["corrections"]}[flipped["label"]] is not flipped["present"]

    r = browser.post(url, data={"csrf": csrf, "action": "reject", "reason": "wrong patient positioning"})
    assert r.status_code in (200, 303)
    v3 = client.get(f"/api/v1/reports/{report_id}/feedback").json()[-1]
    assert v3["decision"] == "rejected" and v3["reason"] == "wrong patient positioning"
    # The draft itself never changed, and the page shows the latest version.
    assert client.get(f"/api/v1/studies/{report['study_id']}/report").json()["impression"] == report["impression"]
    assert "Version 3" in browser.get(f"/workstation/reports/{report_id}").text
    # Signed reports leave the unread worklist.
    assert f"rpt-{report['job_id']}" not in browser.get("/workstation").text


def test_roles_grant_what_the_workstation_checks() -> None:
    assert "user/DiagnosticReport.rus" in role_scopes("radiologist")


def test_each_verdict_is_the_reports_next_fhir_version(client: TestClient, browser: TestClient,  # noqa: ANN001
                                                       make_chest_dicom) -> None:
    report = _report(client, make_chest_dicom)
    report_id = report["report_id"]
    draft = client.get(f"/fhir/DiagnosticReport/{report_id}").json()
    assert draft["status"] == "preliminary" and draft["meta"]["security"][0]["code"] == "AIAST"
    _signin(browser, _radiologist(browser, "Dr Signer"))
    csrf = _csrf(browser.get(f"/workstation/reports/{report_id}").text)
    url = f"/workstation/reports/{report_id}/sign"
    browser.post(url, data={"csrf": csrf, "action": "sign", "findings_text": "Clear lungs.",
                            "impression": "Normal chest."})
    signed = client.get(f"/fhir/DiagnosticReport/{report_id}").json()
    assert signed["status"] == "final" and signed["meta"]["versionId"] == "2"
    assert signed["meta"]["security"][0]["code"] == "CLINAST_AIRPT"
    assert signed["resultsInterpreter"][0]["display"] == "Dr Signer" and signed["conclusion"] == "Normal chest."
    browser.post(url, data={"csrf": csrf, "action": "reject", "reason": "wrong side"})
    rejected = client.get(f"/fhir/DiagnosticReport/{report_id}").json()
    assert rejected["status"] == "cancelled" and rejected["meta"]["versionId"] == "3"
    assert "wrong side" in rejected["conclusion"]


def test_correcting_a_call_regenerates_the_draft_and_shows_the_diff(client: TestClient, browser: TestClient,  # noqa: ANN001
                                                                    make_chest_dicom) -> None:
    report = _report(client, make_chest_dicom)
    report_id = report["report_id"]
    _signin(browser, _radiologist(browser))
    page = browser.get(f"/workstation/reports/{report_id}").text
    assert 'id="regenerate"' in page
    csrf = _csrf(page)
    url = f"/workstation/reports/{report_id}/regenerate"
    from libs.reporting.phrases import PHRASES

    flipped = next(o for o in report["observations"] if not o["present"] and PHRASES[o["label"]].lateral)
    # Nothing changed: nothing to regenerate, said so; no CSRF: refused.
    r = browser.post(url, data={"csrf": csrf})
    assert r.status_code == 422 and "no finding was corrected" in r.json()["detail"]
    assert browser.post(url, data={f"call:{flipped['label']}": "present"}).status_code == 403
    form = {"csrf": csrf, f"call:{flipped['label']}": "present", f"side:{flipped['label']}": "left"}
    r = browser.post(url, data=form)
    assert r.status_code == 200, r.text
    # The in-process queue regenerates after the answer; the fragment polls its own URL.
    poll = re.search(r'hx-get="([^"]+/corrections/[^"]+)"', r.text)
    assert poll, r.text
    done = browser.get(poll.group(1))
    assert done.status_code == 200 and 'data-state="done"' in done.text, done.text
    assert "<ins>" in done.text and 'id="use-regenerated"' in done.text
    assert "from the template (this model writes no text)" in done.text  # the test bundle has no decoder
    proposed = re.search(r'data-findings="([^"]*)"', done.text).group(1)
    assert "left" in proposed.lower()
    # Recorded per finding, and the draft itself is unchanged.
    from libs.storage.db import session_scope
    from libs.storage.models import ReportCorrectionRow

    with session_scope(browser.app.state.engine) as db:
        (row,) = db.query(ReportCorrectionRow).all()
        assert row.corrections == [{"observation": flipped["label"], "present": True, "laterality": "left",
                                    "severity": None}]
        assert row.requested_by.startswith("apikey:")
    assert client.get(f"/api/v1/studies/{report['study_id']}/report").json()["findings_text"] == report["findings_text"]
    # Another report's id with this correction: not found.
    other = _report(client, make_chest_dicom)
    assert browser.get(poll.group(1).replace(report_id, other["report_id"])).status_code == 404


def test_fhir_vread_gives_every_version(client: TestClient, browser: TestClient, make_chest_dicom) -> None:  # noqa: ANN001
    report = _report(client, make_chest_dicom)
    report_id = report["report_id"]
    _signin(browser, _radiologist(browser, "Dr Signer"))
    csrf = _csrf(browser.get(f"/workstation/reports/{report_id}").text)
    browser.post(f"/workstation/reports/{report_id}/sign", data={
        "csrf": csrf, "action": "sign", "findings_text": "Clear lungs.", "impression": "Normal chest."})
    v1 = client.get(f"/fhir/DiagnosticReport/{report_id}/_history/1")
    v2 = client.get(f"/fhir/DiagnosticReport/{report_id}/_history/2")
    assert v1.status_code == 200 and v1.json()["status"] == "preliminary" and v1.json()["meta"]["versionId"] == "1"
    assert v1.json()["conclusion"] != "Normal chest."
    assert v2.json()["status"] == "final" and v2.json()["meta"]["versionId"] == "2"
    assert v2.json() == client.get(f"/fhir/DiagnosticReport/{report_id}").json()
    for missing in ("3", "0", "abc"):
        r = client.get(f"/fhir/DiagnosticReport/{report_id}/_history/{missing}")
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    capability = client.get("/fhir/metadata").json()
    (dr,) = [res for res in capability["rest"][0]["resource"] if res["type"] == "DiagnosticReport"]
    assert {"code": "vread"} in dr["interaction"] and dr["versioning"] == "versioned"
