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


def _prometheus(tmp_path: Path, targets: dict[str, str], gateway: str, key: str) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is required (Debian package prometheus; make test installs it)")
    secret = tmp_path / "ops-key"
    secret.write_text(key)
    shutil.copy(REPO / "deploy" / "prometheus" / "rules.yml", tmp_path / "rules.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            {"job_name": "cxr-gateway", "authorization": {"type": "Bearer", "credentials_file": str(secret)},
             "static_configs": [{"targets": [gateway]}]},
            *({"job_name": f"cxr-{name}", "static_configs": [{"targets": [target]}]} for name, target in targets.items()),
        ],
    }
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
                if not _query(base, expr) and title not in GPU_ONLY:
                    empty.append((title, expr))
        assert not empty, empty
        rules = httpx.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = [r for g in rules for r in g["rules"]]
        assert len(loaded) == 12 and all(r["health"] == "ok" for r in loaded), loaded
        # a live signal: this stack's critical-finding sensitivity against the feedback is a real series
        assert _query(base, "cxr_head_critical_sensitivity") or _query(base, "cxr_head_critical_specificity")
    finally:
        prom.terminate()
        prom.wait(timeout=20)
        engine.dispose()
