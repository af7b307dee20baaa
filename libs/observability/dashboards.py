"""The Grafana dashboards, as code (grafanalib): `python -m libs.observability.dashboards` writes
deploy/grafana/dashboards/*.json, which Grafana provisions (deploy/grafana/provisioning). The tests
check that the committed JSON is what this builds, and run every panel's query against a real
Prometheus scraping the live services (tests/integration/test_monitoring.py).

Every series named here is defined in libs/observability/ (labels: routes, steps, queues, states,
observations, reasons, model versions; never a study or a patient).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafanalib.core import Dashboard, GridPos, Stat, Target, TimeSeries
from grafanalib._gen import DashboardEncoder

from libs.core.config import REPO_ROOT

OUT_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCE = "Prometheus"
WIDTH = 24


def _q(*exprs: tuple[str, str]) -> list[Target]:
    return [Target(expr=e, legendFormat=legend, refId=chr(65 + i)) for i, (e, legend) in enumerate(exprs)]


def _p99(metric: str, by: str = "", window: str = "5m") -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    legend = f"{{{{{by}}}}} " if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{window}])))", f"{legend}P{int(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


class _Layout:
    """Places panels left to right, wrapping at the dashboard's width."""

    def __init__(self) -> None:
        self.x = self.y = self.row_h = 0

    def at(self, w: int, h: int = 8) -> GridPos:
        if self.x + w > WIDTH:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        pos = GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos


def _ts(layout: _Layout, title: str, targets: list[Target], unit: str = "short", w: int = 12) -> TimeSeries:
    return TimeSeries(title=title, dataSource=DATASOURCE, targets=targets, unit=unit, gridPos=layout.at(w))


def _stat(layout: _Layout, title: str, targets: list[Target], unit: str = "short", w: int = 6) -> Stat:
    return Stat(title=title, dataSource=DATASOURCE, targets=targets, format=unit, gridPos=layout.at(w, 5))


def service_dashboard() -> Dashboard:
    L = _Layout()
    panels = [
        _stat(L, "Ready (gateway /readyz)", _q(("cxr_ready", "ready"))),
        _stat(L, "Automation paused (co-sign mode)", _q(("cxr_automation_paused", "paused"))),
        _stat(L, "Dead letters", _q(("cxr_dead_letters", "dead letters"))),
        _stat(L, "Model version", _q(("max by (model_version) (cxr_model_info)", "{{model_version}}"))),
        _ts(L, "Requests per second by route and status",
            _q(("sum by (route, status) (rate(cxr_http_requests_total[5m]))", "{{route}} {{status}}")), "reqps"),
        _ts(L, "HTTP latency (all routes)", _q(*_p99("cxr_http_request_duration_seconds")), "s"),
        _ts(L, "End-to-end latency, job created to reviewed report", _q(*_p99("cxr_job_end_to_end_seconds")), "s"),
        _ts(L, "Step latency P99 by step", _q((
            "histogram_quantile(0.99, sum by (le, step) (rate(cxr_step_duration_seconds_bucket{outcome=\"done\"}[5m])))",
            "{{step}}")), "s"),
        _ts(L, "Reports reviewed per minute", _q(("sum(rate(cxr_reports_total[5m])) * 60", "reports/min"))),
        _ts(L, "Jobs by state", _q(("sum by (state) (cxr_jobs)", "{{state}}"))),
        _ts(L, "Queue depth", _q(("cxr_queue_messages", "{{queue}}"))),
        _ts(L, "Age of the oldest waiting message", _q(("cxr_queue_oldest_message_age_seconds", "{{queue}}")), "s"),
        _ts(L, "Live workers per step", _q(("cxr_step_workers", "{{step}}"))),
        _ts(L, "Step retries per minute", _q(("sum by (step) (rate(cxr_step_retries_total[5m])) * 60 or vector(0)",
                                               "{{step}}"))),
        _ts(L, "Inference batch size (mean)", _q((
            "sum(rate(cxr_inference_batch_size_sum[5m])) / sum(rate(cxr_inference_batch_size_count[5m]))", "mean"))),
        _ts(L, "Inference time per batch", _q(*_p99("cxr_inference_batch_seconds")), "s"),
        _ts(L, "GPU use (absent without a GPU)", _q(("cxr_gpu_utilization_ratio", "GPU {{gpu}} {{name}}")),
            "percentunit"),
        _ts(L, "GPU memory used (absent without a GPU)", _q(("cxr_gpu_memory_used_bytes", "GPU {{gpu}}")), "bytes"),
    ]
    return Dashboard(title="CXR report: service", uid="cxr-service", tags=["cxr"], timezone="utc", refresh="30s",
                     panels=panels).auto_panel_ids()


REPORTS_1H = "sum(increase(cxr_reports_total[1h]))"


def _share(reason: str, window: str = "1h") -> str:
    return (f"(sum(increase(cxr_qa_reports_flagged_total{{reason=\"{reason}\"}}[{window}])) or vector(0))"
            f" / sum(increase(cxr_reports_total[{window}]))")


def quality_dashboard() -> Dashboard:
    L = _Layout()
    panels = [
        _stat(L, "Critical-finding sensitivity vs radiologists (feedback window)",
              _q(("cxr_head_critical_sensitivity", "sensitivity")), "percentunit"),
        _stat(L, "Hallucination rate, last hour (> 5 % pauses automation)", _q((_share("hallucination"), "rate")),
              "percentunit"),
        _stat(L, "Report rejection rate (feedback window)", _q(("cxr_feedback_rejection_rate", "rejected")),
              "percentunit"),
        _stat(L, "Automation paused (co-sign mode)", _q(("cxr_automation_paused", "paused"))),
        _ts(L, "Finding rate per observation, last hour vs 30-day baseline", _q(
            ("sum by (observation) (increase(cxr_findings_total[1h])) / scalar(" + REPORTS_1H + ")",
             "{{observation}} 1h"),
            ("sum by (observation) (increase(cxr_findings_total[30d])) / scalar(sum(increase(cxr_reports_total[30d])))",
             "{{observation}} 30d")), "percentunit", w=24),
        _ts(L, "Hallucination and omission rates (share of reports)", _q(
            (_share("hallucination"), "hallucination"), (_share("omission"), "omission")), "percentunit"),
        _ts(L, "Review rate (share of reports sent to a radiologist)", _q((
            "sum(increase(cxr_reports_review_required_total[1h])) / " + REPORTS_1H, "review")), "percentunit"),
        _ts(L, "QA flags by reason per hour", _q((
            "sum by (reason) (increase(cxr_qa_reports_flagged_total[1h]))", "{{reason}}"))),
        _ts(L, "Feedback: rejection and edit rates", _q(
            ("cxr_feedback_rejection_rate", "rejected"), ("cxr_feedback_edit_rate", "edited")), "percentunit"),
        _ts(L, "Head sensitivity per observation vs radiologists", _q(("cxr_head_sensitivity", "{{observation}}")),
            "percentunit"),
        _ts(L, "Head specificity per observation vs radiologists", _q(("cxr_head_specificity", "{{observation}}")),
            "percentunit"),
        _ts(L, "Edit distance of edited reports (mean characters)", _q(("cxr_feedback_edit_distance_chars", "chars"))),
        _ts(L, "Reports with feedback by decision", _q(("cxr_feedback_reports", "{{decision}}"))),
    ]
    return Dashboard(title="CXR report: clinical quality", uid="cxr-quality", tags=["cxr"], timezone="utc",
                     refresh="1m", panels=panels).auto_panel_ids()


# Panels whose series exist only once a model is registered and its drift has been checked
# (libs/lifecycle): the live-services test checks they parse, not that they have data.
REGISTRY_ONLY = {"Registered models by state", "Drift check p-values (alarm below 0.01)", "Drift alarms",
                 "Studies in the latest drift window", "Last rollback"}


def lifecycle_dashboard() -> Dashboard:
    L = _Layout()
    panels = [
        _stat(L, "Registered models by state", _q(("cxr_model_state", "{{model}} {{state}}")), w=12),
        _stat(L, "Last rollback", _q(("time() - cxr_model_last_rollback_timestamp_seconds", "seconds ago")), "s"),
        _stat(L, "Drift alarms", _q(("sum(cxr_drift_alarm)", "alarms"))),
        _ts(L, "Drift check p-values (alarm below 0.01)", _q(("cxr_drift_p_value", "{{signal}}"))),
        _ts(L, "Studies in the latest drift window", _q(("cxr_drift_samples", "{{signal}}"))),
        _ts(L, "F1 against radiologists: last 7 days vs the feedback window (concept drift)", _q(
            ("cxr_head_f1{window=\"7d\"}", "{{observation}} 7d"), ("cxr_head_f1{window=\"window\"}", "{{observation}} window")),
            "percentunit", w=24),
        _ts(L, "Reports by model version (canary share)", _q(("sum by (model_version) (rate(cxr_reports_total[1h]))",
                                                              "{{model_version}}")), w=24),
    ]
    return Dashboard(title="CXR report: model lifecycle", uid="cxr-lifecycle", tags=["cxr"], timezone="utc",
                     refresh="1m", panels=panels).auto_panel_ids()


DASHBOARDS = {"cxr-service.json": service_dashboard, "cxr-quality.json": quality_dashboard,
              "cxr-lifecycle.json": lifecycle_dashboard}


def render(build) -> str:  # noqa: ANN001
    return json.dumps(build().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


def queries(dashboard_json: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    return [(p["title"], t["expr"]) for p in dashboard_json["panels"] for t in p.get("targets", [])]


def main(out: Path = OUT_DIR) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (out / name).write_text(render(build))
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
