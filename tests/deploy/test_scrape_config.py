"""Prometheus (deploy/prometheus) scrapes ports the compose services really serve metrics on."""

from __future__ import annotations

import yaml

from libs.core.config import REPO_ROOT


def test_every_scrape_target_is_a_compose_service_serving_metrics_on_that_port() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    prometheus = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert {t.split(":")[0] for t in targets} >= {"gateway", "inference"}
    for target in targets:
        host, port = target.split(":")
        env = compose[host].get("environment") or {}
        served = env.get("CXR_METRICS_PORT") or env.get("CXR_PORT", "8000")  # the gateway: /metrics on its HTTP port
        assert str(served) == port, target
