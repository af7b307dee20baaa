"""Prometheus metrics of the processes that run the pipeline: the inference runtime and the steps.

Every process registers these in prometheus_client's default registry: the gateway serves them at
`/metrics`, a worker on `CXR_METRICS_PORT` when that is set (one port per worker process). Labels
carry only model names, versions and provider names: never study ids or patient data.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

EXECUTION_PROVIDER = Gauge(
    "cxr_inference_execution_provider",
    "1 per onnxruntime execution provider the loaded bundle runs on; rank 0 is tried first",
    ["provider", "rank", "model_name", "model_version"],
)
BATCH_SIZE = Histogram(
    "cxr_inference_batch_size", "Studies per model call (dynamic batching)",
    buckets=(1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 32, 64),
)
BATCH_SECONDS = Histogram(
    "cxr_inference_batch_seconds", "Wall time of one model call (encoder and report decoding)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
QUEUE_WAIT_SECONDS = Histogram(
    "cxr_inference_queue_wait_seconds", "Time a study waited in the batcher before its batch ran",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PENDING = Gauge("cxr_inference_pending", "Studies waiting in the batcher")

# ---- the pipeline's steps, in the process that runs them (a worker, or the gateway in-process)
# Buckets resolve P50/P95/P99 from 0.1 s to 60 s (the design's latency targets sit in between).
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0)
STEP_SECONDS = Histogram(
    "cxr_step_duration_seconds", "Time one step spent on one job, by step and outcome "
    "(done, rejected: the input was refused, error: raised and will be retried, duplicate: another delivery won)",
    ["step", "outcome"], buckets=STEP_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "cxr_job_end_to_end_seconds", "Time from a job's creation to its reviewed report, by priority",
    ["priority"], buckets=STEP_BUCKETS,
)
STEP_RETRIES = Counter("cxr_step_retries", "Step attempts that failed and were scheduled again", ["step"])
STEP_EXHAUSTED = Counter("cxr_step_exhausted", "Jobs failed because a step ran out of retries (dead letters)",
                         ["step"])


def record_providers(model_name: str, model_version: str, providers: list[str]) -> None:
    EXECUTION_PROVIDER.clear()
    for rank, provider in enumerate(providers):
        EXECUTION_PROVIDER.labels(provider=provider, rank=str(rank), model_name=model_name,
                                  model_version=model_version).set(1)


def serve_metrics(port: int | None, host: str = "0.0.0.0") -> bool:
    """Starts the /metrics HTTP endpoint of a worker process; False (logged) when the port is taken."""
    if not port:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics endpoint not started on %s:%d: %s", host, port, exc)
        return False
    log.info("metrics on %s:%d/metrics", host, port)
    return True


# ---- clinical quality, counted once per reviewed report by the process that ran QA
REPORTS = Counter("cxr_reports", "Reports reviewed by QA", ["model_version"])
REVIEW_REQUIRED = Counter("cxr_reports_review_required", "Reports QA sent to a radiologist", ["model_version"])
FINDINGS = Counter("cxr_findings", "Head-positive findings in reviewed reports, by observation", ["observation"])
QA_REPORTS_FLAGGED = Counter(
    "cxr_qa_reports_flagged", "Reports with at least one QA flag of this kind: hallucination (in the text, not "
    "confirmed by the head), omission (seen by the head, missing from the text), critical, laterality, "
    "low_confidence, borderline, unsupported, critical_not_assessed", ["reason"])
QA_FLAGS = Counter("cxr_qa_flags", "QA flags by kind and observation", ["reason", "observation"])
MODEL_INFO = Gauge("cxr_model_info", "1 for the model bundle that wrote the reports this process reviewed",
                   ["model_version"])
QA_REASONS = ("hallucinations", "omissions", "critical", "laterality_conflicts", "low_confidence", "borderline",
              "unsupported", "critical_not_assessed")
_REASON_LABEL = {"hallucinations": "hallucination", "omissions": "omission", "laterality_conflicts": "laterality"}


def record_review(report) -> None:  # noqa: ANN001 - libs.domain.report.Report
    """Counts one reviewed report (call once, when its QA result is committed)."""
    version = report.model_version
    REPORTS.labels(version).inc()
    MODEL_INFO.labels(version).set(1)
    if report.requires_radiologist_review:
        REVIEW_REQUIRED.labels(version).inc()
    for finding in report.findings:
        FINDINGS.labels(finding.label).inc()
    qa = report.qa
    if qa is None:
        return
    for field_name in QA_REASONS:
        labels = getattr(qa, field_name, None) or []
        reason = _REASON_LABEL.get(field_name, field_name)
        if labels:
            QA_REPORTS_FLAGGED.labels(reason).inc()
        for observation in set(labels):
            QA_FLAGS.labels(reason, observation).inc()
