"""The committed Grafana dashboards are what libs/observability/dashboards.py builds, and every panel
names series the platform defines. (Each query's result against live services: tests/integration/
test_monitoring.py.)"""

from __future__ import annotations

import json
import re

import yaml

from libs.core.config import REPO_ROOT
from libs.observability import dashboards

OBSERVABILITY = REPO_ROOT / "libs" / "observability"


def test_committed_json_is_what_the_code_builds() -> None:
    for name, build in dashboards.DASHBOARDS.items():
        committed = (dashboards.OUT_DIR / name).read_text()
        assert committed == dashboards.render(build), f"{name} is stale: run make dashboards"


def test_every_panel_queries_series_the_platform_defines_and_the_provisioning_finds_them() -> None:
    source = "".join(p.read_text() for p in OBSERVABILITY.glob("*.py"))
    defined = set(re.findall(r'"(cxr_[a-z0-9_]+)"', source))
    for name in dashboards.DASHBOARDS:
        board = json.loads((dashboards.OUT_DIR / name).read_text())
        for title, expr in dashboards.queries(board):
            for metric in re.findall(r"\b(cxr_[a-z0-9_]+)", expr):
                base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
                assert metric in defined or base in defined, (title, metric)
        assert all(p["datasource"] == "Prometheus" for p in board["panels"])
    datasource = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["name"] == "Prometheus"
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose["volumes"]
