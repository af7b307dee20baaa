"""The gateway's HTTP metrics: every answer counted and timed by route template, method and status;
no path (study UIDs) and no caller in any label."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

REPORT = "/api/v1/studies/{study_id}/report"
UID = "1.2.826.0.1.3680043.8.498.99999999"


def _count(route: str, method: str, status: str) -> float:
    return REGISTRY.get_sample_value("cxr_http_requests_total",
                                     {"route": route, "method": method, "status": status}) or 0.0


def _observations(route: str, method: str) -> float:
    return REGISTRY.get_sample_value("cxr_http_request_duration_seconds_count",
                                     {"route": route, "method": method}) or 0.0


def test_answers_are_counted_by_template_and_status_refusals_included(sqlite_client) -> None:  # noqa: ANN001
    before = {k: _count(*k) for k in [(REPORT, "GET", "404"), (REPORT, "GET", "401"), ("unmatched", "GET", "404"),
                                      ("/healthz", "GET", "200")]}
    timed = _observations(REPORT, "GET")
    assert sqlite_client.get(f"/api/v1/studies/{UID}/report").status_code == 404  # no such study
    assert sqlite_client.get(f"/api/v1/studies/{UID}/report", headers={"X-API-Key": ""}).status_code == 401
    assert sqlite_client.get("/no/such/path").status_code == 404
    assert sqlite_client.get("/healthz").status_code == 200
    for key, value in before.items():
        assert _count(*key) == value + 1, key
    assert _observations(REPORT, "GET") == timed + 2

    scraped = sqlite_client.get("/metrics")
    assert scraped.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    samples = families["cxr_http_requests"].samples + families["cxr_http_request_duration_seconds"].samples
    routes = {s.labels["route"] for s in samples}
    assert REPORT in routes and "unmatched" in routes
    assert not any(UID in value for s in samples for value in s.labels.values())  # templates, never paths
    assert {name for s in samples for name in s.labels} <= {"route", "method", "status", "le"}
    buckets = {float(s.labels["le"]) for s in samples if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"}
    assert min(buckets) <= 0.1 and max(buckets) >= 60  # P50..P99 resolvable from 0.1 s to 60 s


def test_an_unusual_method_is_one_label_value(sqlite_client) -> None:  # noqa: ANN001
    before = _count("/healthz", "OTHER", "405")
    assert sqlite_client.request("PROPFIND", "/healthz").status_code == 405
    assert _count("/healthz", "OTHER", "405") == before + 1
