"""A real Prometheus (Debian's package) scrapes the live gateway and the four workers after a few
studies and a radiologist's feedback: every dashboard panel's query parses and returns series, and the
production alert rules load and evaluate."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from libs.auth import apikeys
from libs.observability import dashboards
from libs.storage.db import get_engine
from tests.integration.conftest import REPO, SERVICES, Platform, free_port
from tests.reliability.conftest import stow

pytestmark = pytest.mark.integration

# Series that exist only on a host with a GPU (NVML); on this machine their panels are empty by design.
GPU_ONLY = {"GPU use (absent without a GPU)", "GPU memory used (absent without a GPU)"}


@pytest.fixture
def low_threshold_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TEST-ONLY random bundle that calls nearly everything present: findings, flags and finding rates exist."""
    from libs.bundle.testing import build_random_bundle

    return build_random_bundle(tmp_path_factory.mktemp("bundle") / "low", image_size=64, threshold=0.02)


def _prometheus(tmp_path: Path, targets: dict[str, str], gateway: str, key: str, rules: Path | None = None,
                alertmanager: str | None = None) -> tuple[subprocess.Popen, str]:
    """Prometheus scraping the gateway (with the ops key) and `targets` every second, evaluating
    `rules` (default: the production rules.yml) and sending alerts to `alertmanager` if given."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is required (Debian package prometheus; make test installs it)")
    secret = tmp_path / "ops-key"
    secret.write_text(key)
    if rules is None:
        rules = tmp_path / "rules.yml"
        shutil.copy(REPO / "deploy" / "prometheus" / "rules.yml", rules)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "cxr-gateway", "authorization": {"type": "Bearer", "credentials_file": str(secret)},
             "static_configs": [{"targets": [gateway]}]},
            *({"job_name": f"cxr-{name}", "static_configs": [{"targets": [target]}]} for name, target in targets.items()),
        ],
    }
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _query(base: str, expr: str) -> list:
    r = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, (expr, r.text)
    body = r.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def test_every_dashboard_query_returns_series_from_the_live_services(
        tmp_path: Path, platform: Platform, chest_dicom, low_threshold_bundle: Path) -> None:  # noqa: ANN001
    platform.env["CXR_BUNDLE_PATH"] = str(low_threshold_bundle)
    ports = {svc: free_port() for svc in SERVICES}
    for svc in SERVICES:
        platform.start(svc, CXR_METRICS_PORT=str(ports[svc]))
    platform.start("gateway")
    platform.wait_ready()
    engine = get_engine(platform.env["DATABASE_URL"])
    ops = apikeys.create(engine, "prometheus", "ops")[1]
    radiologist = {"X-API-Key": apikeys.create(engine, "dr", "radiologist")[1]}
    prom, base = _prometheus(tmp_path, {s: f"127.0.0.1:{p}" for s, p in ports.items()},
                             platform.base_url.removeprefix("http://"), ops)
    try:
        reports = []
        for _ in range(3):
            study, dicom = chest_dicom()
            assert stow(platform.base_url, dicom, platform.headers).status_code == 200
            assert httpx.post(f"{platform.base_url}/api/v1/studies/{study}/report", headers=platform.headers,
                              json={"confidence_threshold": 0.99}, timeout=30).status_code == 202
            r = httpx.get(f"{platform.base_url}/api/v1/studies/{study}/report", params={"wait": 60},
                          headers=platform.headers, timeout=90)
            assert r.status_code == 200 and r.json()["status"] == "reviewed", r.text
            reports.append(r.json())
        assert any(rep["findings"] for rep in reports)
        fb = httpx.post(f"{platform.base_url}/api/v1/reports/{reports[0]['report_id']}/feedback", headers=radiologist,
                        json={"decision": "edited", "final_text": "No pneumothorax.",
                              "corrections": [{"observation": "Pneumothorax", "present": False}]}, timeout=30)
        assert fb.status_code == 201, fb.text

        # every target up, and enough scrapes after the studies for rate() and increase()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                up = _query(base, "up")
            except (httpx.HTTPError, AssertionError):
                up = []
            if len(up) == 5 and all(s["value"][1] == "1" for s in up):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"targets not all up: {up}\n{(tmp_path / 'prometheus.log').read_text()[-3000:]}")
        time.sleep(6)

        empty = []
        for name in dashboards.DASHBOARDS:
            board = json.loads((dashboards.OUT_DIR / name).read_text())
            for title, expr in dashboards.queries(board):
                if not _query(base, expr) and title not in GPU_ONLY | dashboards.REGISTRY_ONLY:
                    empty.append((title, expr))
        assert not empty, empty
        rules = httpx.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = [r for g in rules for r in g["rules"]]
        written = sum(len(g["rules"]) for g in yaml.safe_load((REPO / "deploy" / "prometheus" / "rules.yml")
                                                               .read_text())["groups"])
        assert len(loaded) == written and all(r["health"] == "ok" for r in loaded), loaded
        # a live signal: this stack's critical-finding sensitivity against the feedback is a real series
        assert _query(base, "cxr_head_critical_sensitivity") or _query(base, "cxr_head_critical_specificity")
    finally:
        prom.terminate()
        prom.wait(timeout=20)
        engine.dispose()


# Loaded by the formatting worker's interpreter (PYTHONPATH): each report gets one more sentence
# stating a finding the head did not detect, as a faulty renderer would write.
UNSUPPORTED_SENTENCE_PATCH = """
import libs.reporting.render as render

_render = render.render_report


def render_report(job_id, study_uid, output, request, image=None):
    report = _render(job_id, study_uid, output, request, image)
    detected = {p.label for p in output.positives()}
    label, sentence = next((lbl, s) for lbl, s in (("Pneumothorax", "There is a large pneumothorax."),
                                                   ("Pleural Effusion", "There is a large pleural effusion."),
                                                   ("Cardiomegaly", "The heart is enlarged."),
                                                   ("Consolidation", "There is consolidation."),
                                                   ("Edema", "There is pulmonary edema."))
                           if lbl not in detected)
    return report.model_copy(update={"findings_text": report.findings_text + " " + sentence})


render.render_report = render_report
"""


def _hallucination_rule_for_a_test() -> dict:
    """The production HallucinationRateHigh rule with test-sized windows: 1 h -> 5 m, at least 1
    report instead of 20, `for:` 0 s. The expression is otherwise the one deploy/prometheus ships."""
    groups = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules.yml").read_text())["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == "HallucinationRateHigh")
    assert "[1h]" in rule["expr"] and ">= 20" in rule["expr"], rule["expr"]
    rule = {**rule, "expr": rule["expr"].replace("[1h]", "[5m]").replace(">= 20", ">= 1"), "for": "0s"}
    return {"groups": [{"name": "cxr-e2e", "rules": [rule]}]}


def test_hallucinations_fire_the_production_rule_and_pause_automation_through_a_real_alertmanager(
        tmp_path: Path, platform: Platform, chest_dicom) -> None:  # noqa: ANN001
    """The hallucination alert end to end, with the real programs: the formatting worker writes a
    sentence the detection head does not support (a renderer gone wrong, injected by a test-only
    sitecustomize in that worker's process: the real renderer grounds every sentence, so it cannot be
    made to hallucinate from outside), the real QA worker flags it, Prometheus evaluates the production
    HallucinationRateHigh expression (windows and `for:` shortened) on the QA worker's counters, the
    production Alertmanager configuration routes it to the webhook with an ops key, and the platform
    is in co-sign mode: the next report waits for a radiologist, with the alert as its reason."""
    alertmanager = shutil.which("prometheus-alertmanager")
    if alertmanager is None:
        pytest.fail("prometheus-alertmanager is required (Debian package; make test installs it)")
    qa_port = free_port()
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(UNSUPPORTED_SENTENCE_PATCH)
    for svc in SERVICES:  # the qa worker's counters are the rule's signal
        env = {"CXR_METRICS_PORT": str(qa_port)} if svc == "qa" else {}
        if svc == "formatting":
            env["PYTHONPATH"] = str(inject)
        platform.start(svc, **env)
    platform.start("gateway")
    platform.wait_ready()
    engine = get_engine(platform.env["DATABASE_URL"])
    ops = apikeys.create(engine, "alertmanager and prometheus", "ops")[1]
    secret = tmp_path / "ops-key"
    secret.write_text(ops)

    am_port, am_cluster = free_port(), free_port()
    am_config = (REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    am_config = (am_config.replace("http://gateway:8000", platform.base_url)
                 .replace("/run/secrets/alertmanager-ops-key", str(secret))
                 .replace("group_wait: 10s", "group_wait: 1s"))
    (tmp_path / "alertmanager.yml").write_text(am_config)
    am_log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115
    am = subprocess.Popen([alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}",
                           f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                           f"--cluster.listen-address=127.0.0.1:{am_cluster}"],
                          stdout=am_log, stderr=subprocess.STDOUT, start_new_session=True)
    (tmp_path / "e2e-rules.yml").write_text(yaml.safe_dump(_hallucination_rule_for_a_test()))
    prom, prom_url = _prometheus(tmp_path, {"qa": f"127.0.0.1:{qa_port}"}, platform.base_url.removeprefix("http://"),
                                 ops, rules=tmp_path / "e2e-rules.yml", alertmanager=f"127.0.0.1:{am_port}")

    def scraped(expr: str, value: float) -> None:
        """Waits until Prometheus has scraped `expr` at `value` (increase() needs the counters seen
        before they grow, so each study waits for the previous one to be scraped)."""
        deadline, seen = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                seen = _query(prom_url, expr)
            except (httpx.HTTPError, AssertionError):
                seen = None
            if seen and float(seen[0]["value"][1]) == value:
                return
            time.sleep(0.5)
        pytest.fail(f"Prometheus did not see {expr} == {value} (last: {seen})")

    try:
        assert httpx.get(f"{platform.base_url}/api/v1/ops/automation", headers=platform.headers).json()["mode"] \
            == "automatic"
        scraped('up{job="cxr-qa"}', 1)
        for n in (1, 2):
            study, dicom = chest_dicom()
            assert stow(platform.base_url, dicom, platform.headers).status_code == 200
            assert httpx.post(f"{platform.base_url}/api/v1/studies/{study}/report", headers=platform.headers,
                              json={}, timeout=30).status_code == 202
            r = httpx.get(f"{platform.base_url}/api/v1/studies/{study}/report", params={"wait": 60},
                          headers=platform.headers, timeout=90).json()
            assert any(x.startswith("disagreement:") and "not detected by the detection head" in x
                       for x in r["review_reasons"]), r["review_reasons"]
            scraped("sum(cxr_reports_total)", n)
        deadline = time.monotonic() + 90
        state = {}
        while time.monotonic() < deadline:
            state = httpx.get(f"{platform.base_url}/api/v1/ops/automation", headers=platform.headers).json()
            if state["mode"] == "co-sign":
                break
            time.sleep(0.5)
        logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in (tmp_path / "alertmanager.log",
                                                                        tmp_path / "prometheus.log"))
        assert state["mode"] == "co-sign", f"{state}\n{logs}"
        assert state["source"] == "alertmanager"
        assert state["reason"].startswith("alert HallucinationRateHigh: hallucination rate"), state
        # the next report waits for a radiologist, with the reason
        study, dicom = chest_dicom()
        assert stow(platform.base_url, dicom, platform.headers).status_code == 200
        httpx.post(f"{platform.base_url}/api/v1/studies/{study}/report", headers=platform.headers, json={}, timeout=30)
        r = httpx.get(f"{platform.base_url}/api/v1/studies/{study}/report", params={"wait": 60},
                      headers=platform.headers, timeout=90).json()
        assert r["requires_radiologist_review"] is True
        assert any(reason.startswith("automation paused (co-sign mode): alert HallucinationRateHigh")
                   for reason in r["review_reasons"])
    finally:
        for proc in (prom, am):
            proc.terminate()
            proc.wait(timeout=20)
        engine.dispose()
