"""deploy/prometheus/rules.yml: valid, and every alert has a `promtool test rules` case that passes;
prometheus.yml and deploy/alertmanager/alertmanager.yml are valid configurations (Debian's
prometheus and prometheus-alertmanager packages: `make test` installs them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from libs.core.config import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
ALERTMANAGER = REPO_ROOT / "deploy" / "alertmanager"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required (Debian: apt-get install prometheus prometheus-alertmanager; make test does)")
    return path


def _run(*args: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_rules_are_valid_and_their_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    assert "SUCCESS: 17 rules found" in _run(promtool, "check", "rules", str(PROMETHEUS / "rules.yml"))
    assert "SUCCESS" in _run(promtool, "test", "rules", str(PROMETHEUS / "tests" / "rules_test.yml"))


def test_every_alert_has_a_unit_test_that_expects_it_to_fire() -> None:
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "tests" / "rules_test.yml").read_text())["tests"]
    firing = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts == firing, f"alerts without a firing test: {sorted(alerts - firing)}"


def test_pause_rules_reach_the_gateway_webhook_and_the_configs_are_valid(tmp_path: Path) -> None:
    # Credentials are mounted files in a deployment; stand-ins here so the checks can stat them.
    secret = tmp_path / "cxr-ops-key"
    secret.write_text("cxr_test_key\n")
    prom = (PROMETHEUS / "prometheus.yml").read_text().replace("/run/secrets/prometheus-ops-key", str(secret))
    (tmp_path / "prometheus.yml").write_text(prom)
    shutil.copy(PROMETHEUS / "rules.yml", tmp_path / "rules.yml")
    _run(_tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    am = (ALERTMANAGER / "alertmanager.yml").read_text().replace("/run/secrets/alertmanager-ops-key", str(secret))
    (tmp_path / "alertmanager.yml").write_text(am)
    _run(_tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml"))
    # The route of a pause alert: the webhook receiver, and the page too
    routed = _run(_tool("amtool"), "config", "routes", "test", "--config.file", str(tmp_path / "alertmanager.yml"),
                  "--verify.receivers=cxr-pause-automation,oncall", "alertname=HallucinationRateHigh", "automation=pause")
    assert "cxr-pause-automation" in routed
    config = yaml.safe_load(am)
    [hook] = next(r for r in config["receivers"] if r["name"] == "cxr-pause-automation")["webhook_configs"]
    assert hook["url"].endswith("/api/v1/ops/alertmanager") and hook["send_resolved"] is False
    pausing = [r["alert"] for g in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
               for r in g["rules"] if r.get("labels", {}).get("automation") == "pause"]
    assert pausing == ["HallucinationRateHigh"]
    # A rollback alert without the pause label reaches the webhook once; with both labels, once too.
    for labels in (["alertname=CriticalFindingSensitivityLow", "model=rollback"],
                   ["alertname=HallucinationRateHigh", "automation=pause", "model=rollback"]):
        routed = _run(_tool("amtool"), "config", "routes", "test", "--config.file", str(tmp_path / "alertmanager.yml"),
                      "--verify.receivers=cxr-pause-automation,oncall", *labels)
        assert routed.split()[0].split(",").count("cxr-pause-automation") == 1, routed
    rolling = sorted(r["alert"] for g in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
                     for r in g["rules"] if r.get("labels", {}).get("model") == "rollback")
    assert rolling == ["CriticalFindingSensitivityLow", "HallucinationRateHigh"]
