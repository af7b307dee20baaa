"""The review workstation in a real browser (Debian's chromium driven by Playwright), against the running
services: the gateway and the four Celery workers on Redis and PostgreSQL, the reference bundle (its
decoder writes the text), and a real Orthanc that takes the SRs.

A radiologist signs in, finds the flagged study at the top of the worklist with its QA reason, opens it,
toggles the boxes, corrects the model's call, waits for the draft the inference worker regenerated from
the corrected call and its diff, takes it into the editor and signs. Then: the FHIR DiagnosticReport is
version 2, final, with the radiologist as resultsInterpreter (version 1, the draft, is still readable);
Orthanc holds the signed SR (VERIFIED, replacing the draft's); the feedback row has the call. axe-core
checks both pages for WCAG 2 A/AA violations (labels, contrast, focus order as far as a tool can tell).

CXR_WRITE_SCREENSHOT=1 also writes the screenshots to docs/images/workstation-*.png.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from tests.integration.conftest import (  # noqa: F401 - fixtures
    REPO,
    SERVICES,
    Platform,
    chest_dicom,
    pg_database,
    platform,
    platform_env,
    random_bundle_512,
)
from tests.integration.test_workers import stow
from tests.pacs.orthanc import Orthanc, start_orthanc
from tests.viewer.ohif import CHROMIUM, CHROMIUM_ARGS, require_viewer

pytestmark = [pytest.mark.integration, pytest.mark.pacs, pytest.mark.viewer, pytest.mark.slow,
              pytest.mark.timeout(300)]

REFERENCE_BUNDLE = REPO / "models" / "reference"
AXE_VERSION = "4.11.0"  # keep in step with AXE_VERSION in the Makefile
AXE = Path(os.environ.get("CXR_TEST_AXE", REPO / "var" / "axe" / AXE_VERSION / "axe.min.js"))
WAIT_MS = 60_000
VIEWPORT = {"width": 1440, "height": 900}
SCREENSHOTS = REPO / "docs" / "images"


def _axe_violations(page) -> list[str]:  # noqa: ANN001 - playwright Page
    """WCAG 2.0/2.1 A and AA rules of axe-core, run in the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
        return r.violations.map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`);
    }""")
    return list(result)


def _focus_order(page, count: int) -> list[str]:  # noqa: ANN001
    """What Tab reaches first, as `tag#id` (or the text of a link): the keyboard path through the page."""
    page.locator("body").focus()
    reached = []
    for _ in range(count):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => { const e = document.activeElement; "
                                     "return e.id ? `${e.tagName.toLowerCase()}#${e.id}` : `${e.tagName.toLowerCase()}:${(e.textContent || '').trim().slice(0, 30)}` }"))
    return reached


def _orthanc_srs(orthanc: Orthanc, study_uid: str) -> list[dict]:
    found = httpx.post(f"{orthanc.url}/tools/find", auth=orthanc.auth, timeout=10, json={
        "Level": "Instance", "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"}}).json()
    return [httpx.get(f"{orthanc.url}/instances/{i}/simplified-tags", auth=orthanc.auth, timeout=10).json() for i in found]


def _wait_for(predicate, timeout: float, what: str, platform: Platform):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{platform.logs()}"
        time.sleep(0.5)


@pytest.fixture
def orthanc(tmp_path: Path):  # noqa: ANN201
    server = start_orthanc(tmp_path / "orthanc")
    try:
        yield server
    finally:
        server.stop()


def test_a_radiologist_corrects_and_signs_a_flagged_study_in_the_browser(
        platform: Platform, chest_dicom, orthanc: Orthanc) -> None:  # noqa: ANN001, F811
    require_viewer()  # chromium and Playwright (make ohif); axe below (make axe)
    assert AXE.is_file(), f"axe-core is missing ({AXE}): run `make axe`"
    from playwright.sync_api import expect, sync_playwright

    from libs.auth import apikeys

    pacs = [orthanc.pacs_entry(pull=False, store_results=True)]
    env = {"CXR_BUNDLE_PATH": str(REFERENCE_BUNDLE), "CXR_PACS": json.dumps(pacs)}
    for svc in SERVICES:
        platform.start(svc, **env)
    platform.start("gateway", **env)
    platform.wait_ready()
    api = httpx.Client(base_url=platform.base_url, headers=platform.headers, timeout=30)
    engine = create_engine(platform.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    _, radiologist_key = apikeys.create(engine, "Dr Ada Reader", "radiologist")
    engine.dispose()

    # Co-sign mode flags every draft for review (with the reason); a signed version still goes out.
    assert api.post("/api/v1/ops/automation/pause", json={"reason": "workstation browser test"}).status_code == 200
    study_uid, dicom = chest_dicom()
    assert stow(platform.base_url, dicom, platform.headers).status_code == 200
    assert api.post(f"/api/v1/studies/{study_uid}/report",
                    json={"clinical_context": {"age": 58, "sex": "F", "indication": "Fever and cough"}}).status_code == 202
    drafted = api.get(f"/api/v1/studies/{study_uid}/report", params={"wait": 90}).json()
    assert drafted["status"] == "reviewed" and drafted["requires_radiologist_review"], platform.logs()
    report_id = drafted["report_id"]
    head = next(o for o in drafted["observations"] if o["label"] == "Pneumonia")

    write_screenshots = os.environ.get("CXR_WRITE_SCREENSHOT") == "1"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        # bypass_csp: only so the test can inject axe-core; the pages themselves run under their CSP.
        context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.set_default_timeout(WAIT_MS)

        # Sign in: the worklist without a session sends the browser to the sign-in page.
        page.goto(f"{platform.base_url}/workstation")
        expect(page).to_have_url(f"{platform.base_url}/workstation/signin?next=/workstation")
        assert _axe_violations(page) == []
        # ...and axe does see what it checks: an unlabelled field and an image without text are found.
        page.evaluate("""() => { const f = document.createElement('div'); f.id = 'axe-probe';
            f.innerHTML = '<input type="text"><img src="data:,">'; document.body.appendChild(f); }""")
        assert {v.split(" ")[0] for v in _axe_violations(page)} >= {"label", "image-alt"}
        page.evaluate("() => document.getElementById('axe-probe').remove()")
        page.get_by_label("API key or access token").fill(radiologist_key)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{platform.base_url}/workstation")

        # The worklist: the flagged study, its QA reason at a glance.
        row = page.locator(f'#rows tr[data-href="/workstation/reports/{report_id}"]')
        expect(row).to_be_visible()
        expect(row).to_contain_text("co-sign")
        assert _axe_violations(page) == []
        order = _focus_order(page, 3)
        assert order[0].startswith("a:") and "Skip" in order[0], order  # the skip link comes first
        if write_screenshots:
            page.screenshot(path=str(SCREENSHOTS / "workstation-worklist.png"))

        # The study page: the image rendered, the boxes toggled.
        row.click()
        expect(page).to_have_url(f"{platform.base_url}/workstation/reports/{report_id}")
        page.wait_for_function("() => document.getElementById('image').naturalWidth > 0")
        boxes = page.locator("#boxes")
        toggle = page.get_by_label("Boxes (b)")
        expect(toggle).to_be_checked()
        toggle.uncheck()
        expect(boxes).to_have_class("boxes hidden")
        page.locator("#viewport").focus()
        page.keyboard.press("b")  # the shortcut brings them back
        expect(boxes).to_have_class("boxes")

        # Correct the model's call on Pneumonia, regenerate, see the diff, take the text.
        call = "absent" if head["present"] else "present"
        page.locator(f'tr[data-label="Pneumonia"] input[value="{call}"]').check()
        page.get_by_role("button", name="Regenerate draft from my calls (g)").click()
        result = page.locator('#correction-result[data-state="done"]')
        expect(result).to_be_visible()  # the inference worker (Celery) wrote it
        expect(result).to_contain_text("by the model")
        assert page.locator("#findings-diff ins, #findings-diff del, #impression-diff ins, #impression-diff del").count() > 0
        page.get_by_role("button", name="Use this draft (u)").click()
        regenerated = page.locator("#use-regenerated").get_attribute("data-findings")
        expect(page.locator("#findings_text")).to_have_value(regenerated)
        assert _axe_violations(page) == []
        if write_screenshots:
            page.screenshot(path=str(SCREENSHOTS / "workstation-study.png"), full_page=True)

        # Sign: the page comes back as version 1 of the feedback (the report's version 2).
        page.get_by_role("button", name="Sign (a)").click()
        expect(page.locator(".banner")).to_contain_text("Version 1")
        assert errors == [], errors
        browser.close()

    # What the hospital's systems now see.
    (feedback,) = api.get(f"/api/v1/reports/{report_id}/feedback").json()
    assert feedback["decision"] == "edited" and feedback["final_text"].startswith(regenerated)
    calls = {c["observation"]: c for c in feedback["corrections"]}
    assert calls["Pneumonia"]["present"] is (call == "present")
    assert feedback["reviewer_name"] == "Dr Ada Reader"
    fhir = api.get(f"/fhir/DiagnosticReport/{report_id}").json()
    assert fhir["status"] == "final" and fhir["meta"]["versionId"] == "2"
    assert fhir["resultsInterpreter"][0]["display"] == "Dr Ada Reader"
    assert fhir["meta"]["security"][0]["code"] == "CLINAST_AIRPT"
    draft = api.get(f"/fhir/DiagnosticReport/{report_id}/_history/1").json()
    assert draft["status"] == "preliminary" and draft["meta"]["security"][0]["code"] == "AIAST"

    def signed_sr():  # noqa: ANN202
        return [sr for sr in _orthanc_srs(orthanc, study_uid) if sr.get("VerificationFlag") == "VERIFIED"]

    (sr,) = _wait_for(signed_sr, 60, "the signed SR in Orthanc", platform)
    assert sr["CompletionFlag"] == "COMPLETE" and "Reader" in json.dumps(sr)
