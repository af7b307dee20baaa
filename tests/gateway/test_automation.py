"""The automation switch: pause (API, Alertmanager's webhook), co-sign mode's effect on reports and
SR store-backs, resume releasing what was held; state in /metrics and /readyz; the CLI."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from libs.auth import apikeys
from libs.core.config import PacsServer
from services.gateway.main import create_app
from tests.conftest import authorize
from tests.gateway.helpers import assert_problem, reviewed_report

REASON = "hallucination rate 7 % over 1 h"
ALERT = {"version": "4", "status": "firing", "alerts": [
    {"status": "firing", "labels": {"alertname": "HallucinationRateHigh", "automation": "pause", "severity": "page"},
     "annotations": {"summary": "hallucination rate above 5 %"}}]}


def _paused_metric(client, key: str) -> float:  # noqa: ANN001
    text_ = client.get("/metrics", headers={"X-API-Key": key}).text
    return next(s.value for f in text_string_to_metric_families(text_) for s in f.samples
                if s.name == "cxr_automation_paused")


def _results_state(engine, job_id: str) -> tuple[str, int]:  # noqa: ANN001
    with engine.connect() as conn:
        row = conn.execute(text("SELECT results_state, results FROM jobs WHERE id = :id"), {"id": job_id}).one()
    results = json.loads(row.results) if isinstance(row.results, str) else row.results  # SQLite: text
    return row.results_state, int((results or {}).get("attempts") or 0)


def test_pause_holds_reports_for_a_radiologist_and_resume_releases_store_backs(make_settings, make_chest_dicom) -> None:  # noqa: ANN001
    # A PACS that takes results but is not there: store-backs fail fast, which is enough to see them sent
    pacs = PacsServer(name="archive", url="http://127.0.0.1:9/dicom-web", store_results=True, pull=False,
                      retries=0, connect_timeout_s=1)
    with TestClient(create_app(make_settings(pacs=[pacs])), raise_server_exceptions=False) as client:
        engine = client.app.state.engine
        authorize(client)
        ops = apikeys.create(engine, "ops", "ops")[1]
        ehr = {"X-API-Key": apikeys.create(engine, "ehr", "ehr")[1]}
        url = "/api/v1/ops/automation"
        assert client.get(url).json()["mode"] == "automatic"
        assert client.post(f"{url}/pause", json={"reason": REASON}, headers=ehr).status_code == 403
        assert_problem(client.post(f"{url}/pause", json={"reason": ""}, headers={"X-API-Key": ops}), 422)

        paused = client.post(f"{url}/pause", json={"reason": REASON}, headers={"X-API-Key": ops})
        assert paused.status_code == 200, paused.text
        assert (paused.json()["mode"], paused.json()["changed"], paused.json()["source"]) == ("co-sign", True, "api")
        again = client.post(f"{url}/pause", json={"reason": "another"}, headers={"X-API-Key": ops}).json()
        assert (again["changed"], again["reason"]) == (False, REASON)  # the first reason stands

        held = reviewed_report(client, make_chest_dicom)
        assert held["requires_radiologist_review"] is True
        assert f"automation paused (co-sign mode): {REASON}" in held["review_reasons"]
        assert _results_state(engine, held["job_id"]) == ("held", 0)  # nothing sent to the PACS
        assert _paused_metric(client, ops) == 1
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["automation"]["mode"] == "co-sign"

        resumed = client.post(f"{url}/resume", json={"reason": "rule fixed"}, headers={"X-API-Key": ops})
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["mode"], resumed.json()["released"]) == ("automatic", 1)
        deadline = time.monotonic() + 20
        while _results_state(engine, held["job_id"])[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # the released QA message runs after the answer (in-process)
        assert _results_state(engine, held["job_id"]) == ("failed", 1)  # sent: the PACS refused the connection
        assert _paused_metric(client, ops) == 0
        after = reviewed_report(client, make_chest_dicom)
        assert not any(r.startswith("automation paused") for r in after["review_reasons"])
        with engine.connect() as conn:
            events = conn.execute(text("SELECT mode, source FROM automation_events ORDER BY id")).all()
            audit = conn.execute(text("SELECT operation, http_status FROM audit_events WHERE entity_type = "
                                      "'Automation' AND http_status < 400 ORDER BY seq")).all()
        assert [tuple(e) for e in events] == [("co-sign", "api"), ("automatic", "api")]
        assert [a.operation for a in audit].count("pause_automation") == 2


def test_alertmanager_pauses_on_a_firing_pause_alert_only(sqlite_client) -> None:  # noqa: ANN001
    url = "/api/v1/ops/alertmanager"
    resolved = {**ALERT, "status": "resolved", "alerts": [{**ALERT["alerts"][0], "status": "resolved"}]}
    other = {**ALERT, "alerts": [{"status": "firing", "labels": {"alertname": "QueueBacklog"}}]}
    for body in (resolved, other):
        r = sqlite_client.post(url, json=body)
        assert r.status_code == 200 and r.json()["mode"] == "automatic", r.text
    r = sqlite_client.post(url, json=ALERT)
    assert r.status_code == 200, r.text
    assert (r.json()["mode"], r.json()["source"]) == ("co-sign", "alertmanager")
    assert r.json()["reason"] == "alert HallucinationRateHigh: hallucination rate above 5 %"
    r = sqlite_client.post(url, json=resolved)  # resolving does not resume: people do
    assert r.json()["mode"] == "co-sign"
    assert_problem(sqlite_client.post(url, json={"alerts": "nope"}), 422)


def test_cli_pause_status_resume(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    from libs.cli import main
    from libs.core.config import get_settings

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    try:
        assert main(["automation", "pause", "--reason", "maintenance of the PACS"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["mode"], out["source"], out["changed"]) == ("co-sign", "cli", True)
        assert out["actor"].startswith("cli:")
        assert main(["automation", "status"]) == 0
        assert json.loads(capsys.readouterr().out)["reason"] == "maintenance of the PACS"
        assert main(["automation", "resume", "--reason", "done"]) == 0
        assert json.loads(capsys.readouterr().out) | {"since": None} == {
            "mode": "automatic", "reason": "done", "since": None, "actor": out["actor"], "source": "cli",
            "changed": True, "released": 0}
    finally:
        get_settings.cache_clear()
