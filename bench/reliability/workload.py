"""What the reliability benchmarks send and how they count: real chest studies with fresh UIDs, the
three calls a client makes (STOW-RS as a PACS, request a report and long-poll it as an EHR), latency
statistics, and the lost/duplicated accounting, which is computed from the database (jobs and
job_events), never from what the clients believe happened.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PIPELINE_STATES = ("received", "preprocessed", "inferred", "formatted", "reviewed")
BOUNDARY = "cxr-bench-boundary"
REPORT_BODY = {"clinical_context": {"age": 67, "sex": "M", "indication": "Shortness of breath"},
               "report_template": "standard", "confidence_threshold": 0.85}


def real_chest_cr() -> Path:
    """pydicom-data's real chest CR (RG1_UNCR.dcm: 1955 x 1841, 16-bit, uncompressed, ~7 MB)."""
    import data_store

    path = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: install the test extra (pip install -e '.[test]')")
    return path


class StudyFactory:
    """The same real image as a new study each time: new Study, Series and SOP Instance UIDs."""

    def __init__(self, source: Path | None = None) -> None:
        import pydicom

        self.source = Path(source) if source else real_chest_cr()
        self._template = pydicom.dcmread(self.source)
        self._lock = threading.Lock()

    def make(self) -> tuple[str, bytes]:
        from pydicom.uid import generate_uid

        with self._lock:
            ds = self._template
            ds.StudyInstanceUID = study_uid = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
        part = buf.getvalue()
        body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part
                + f"\r\n--{BOUNDARY}--\r\n".encode())
        return study_uid, body

    async def amake(self) -> tuple[str, bytes]:
        return await asyncio.to_thread(self.make)


# ---------------------------------------------------------------- measurements


@dataclass
class Sample:
    kind: str  # stow | request_report | get_report
    status: str  # "200", "202", "503", or an exception class name
    seconds: float
    at: float  # start, seconds since the run began


@dataclass
class Recorder:
    t0: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def call(self, kind: str, coro) -> httpx.Response | None:  # noqa: ANN001
        start = time.monotonic()
        try:
            resp = await coro
        except httpx.HTTPError as exc:
            self.samples.append(Sample(kind, type(exc).__name__, time.monotonic() - start, start - self.t0))
            return None
        self.samples.append(Sample(kind, str(resp.status_code), time.monotonic() - start, start - self.t0))
        return resp


OK_STATUS = {"stow": {"200"}, "request_report": {"200", "202"}, "get_report": {"200", "202"}}


async def stow(client: httpx.AsyncClient, rec: Recorder, key: str, body: bytes) -> httpx.Response | None:
    return await rec.call("stow", client.post(
        "/dicomweb/studies", content=body,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}', "X-API-Key": key}))


async def request_report(client: httpx.AsyncClient, rec: Recorder, key: str, study_uid: str,
                         idempotency_key: str) -> httpx.Response | None:
    return await rec.call("request_report", client.post(
        f"/api/v1/studies/{study_uid}/report", json=REPORT_BODY,
        headers={"X-API-Key": key, "Idempotency-Key": idempotency_key}))


async def get_report(client: httpx.AsyncClient, rec: Recorder, key: str, study_uid: str, wait: float) -> httpx.Response | None:
    return await rec.call("get_report", client.get(
        f"/api/v1/studies/{study_uid}/report", params={"wait": wait}, headers={"X-API-Key": key},
        timeout=httpx.Timeout(wait + 60, connect=30)))


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    xs = sorted(values)

    def q(p: float) -> float:  # nearest-rank
        return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]

    return {"n": len(xs), "p50_ms": round(q(50) * 1000, 1), "p99_ms": round(q(99) * 1000, 1),
            "mean_ms": round(sum(xs) / len(xs) * 1000, 1), "max_ms": round(xs[-1] * 1000, 1)}


def summarize_requests(samples: list[Sample], window_s: float) -> dict[str, Any]:
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_kind[s.kind].append(s)
    kinds = {}
    errors: Counter[str] = Counter()
    for kind, rows in sorted(by_kind.items()):
        status = Counter(r.status for r in rows)
        for st, n in status.items():
            if st not in OK_STATUS.get(kind, set()):
                errors[f"{kind} {st}"] += n
        kinds[kind] = {"count": len(rows), "per_s": round(len(rows) / window_s, 2) if window_s else None,
                       "status": dict(sorted(status.items())),
                       "latency_ok": percentiles([r.seconds for r in rows if r.status in OK_STATUS.get(kind, set())]),
                       "latency_all": percentiles([r.seconds for r in rows])}
    return {"total": len(samples), "per_s": round(len(samples) / window_s, 2) if window_s else None,
            "by_kind": kinds, "errors": dict(sorted(errors.items())), "error_total": sum(errors.values())}


# ---------------------------------------------------------------- the database's account


def account(engine, requested: set[str]) -> dict[str, Any]:  # noqa: ANN001 - sqlalchemy Engine
    """Lost and duplicated reports, from jobs and job_events.

    - lost: a study whose report was requested (the gateway answered 202/200 with a job id) that has
      no job in state reviewed;
    - duplicated: a study with more than one job, or one of whose jobs entered some state more than
      once (job_events);
    - plus what else the tables hold: jobs per state, failed jobs and why, jobs of studies no client
      saw acknowledged, requeues by the reconciler, events out of pipeline order.
    """
    from sqlalchemy import text

    with engine.connect() as conn:
        jobs = [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, study_uid, state, error, failure_kind, requeue_count, created_at, updated_at FROM jobs"))]
        events = [tuple(r) for r in conn.execute(text("SELECT job_id, state, at FROM job_events ORDER BY id"))]
    by_study: dict[str, list[dict]] = defaultdict(list)
    for j in jobs:
        by_study[j["study_uid"]].append(j)
    seq: dict[str, list[str]] = defaultdict(list)
    at: dict[str, dict[str, Any]] = defaultdict(dict)
    for job_id, state, when in events:
        seq[job_id].append(state)
        at[job_id].setdefault(state, when)

    lost = sorted(s for s in requested if not any(j["state"] == "reviewed" for j in by_study.get(s, [])))
    lost_detail = [{"study_uid": s, "jobs": [{"id": j["id"], "state": j["state"], "error": j["error"],
                                             "events": seq.get(j["id"], []), "requeue_count": j["requeue_count"]}
                                            for j in by_study.get(s, [])]} for s in lost]
    multi_job = sorted(s for s, js in by_study.items() if len(js) > 1)
    repeated_state_jobs = {jid: {st: n for st, n in Counter(states).items() if n > 1}
                           for jid, states in seq.items() if len(set(states)) != len(states)}
    job_study = {j["id"]: j["study_uid"] for j in jobs}
    dup_studies = sorted(set(multi_job) | {job_study[j] for j in repeated_state_jobs if j in job_study})
    out_of_order = sorted(jid for jid, states in seq.items()
                          if [s for s in states if s != "failed"] != list(PIPELINE_STATES[:len([s for s in states if s != "failed"])]))
    reviewed_exact = sum(1 for j in jobs if j["state"] == "reviewed" and seq.get(j["id"]) == list(PIPELINE_STATES))
    server_latency = [(at[j["id"]]["reviewed"] - at[j["id"]]["received"]).total_seconds()
                      for j in jobs if "reviewed" in at[j["id"]] and "received" in at[j["id"]]]
    return {
        "requested_studies": len(requested),
        "jobs": len(jobs),
        "job_events": len(events),
        "jobs_by_state": dict(sorted(Counter(j["state"] for j in jobs).items())),
        "reviewed_with_exact_event_sequence": reviewed_exact,
        "lost": len(lost),
        "lost_studies": lost_detail[:50],
        "duplicated": len(dup_studies),
        "studies_with_more_than_one_job": len(multi_job),
        "jobs_with_a_repeated_state": len(repeated_state_jobs),
        "duplicated_detail": [{"study_uid": s, "jobs": [{"id": j["id"], "state": j["state"],
                                                         "events": seq.get(j["id"], [])} for j in by_study[s]]}
                              for s in dup_studies[:50]],
        "jobs_with_events_out_of_order": len(out_of_order),
        "failed": [{"id": j["id"], "failure_kind": j["failure_kind"], "error": (j["error"] or "")[:300]}
                   for j in jobs if j["state"] == "failed"][:50],
        "jobs_of_unacknowledged_requests": sum(1 for j in jobs if j["study_uid"] not in requested),
        "jobs_requeued_by_reconciler": sum(1 for j in jobs if (j["requeue_count"] or 0) > 0),
        "reconciler_requeues_total": sum(j["requeue_count"] or 0 for j in jobs),
        "server_received_to_reviewed": percentiles(server_latency),
    }


def unfinished_jobs(engine) -> int:  # noqa: ANN001
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs WHERE state NOT IN ('reviewed', 'failed')")).scalar())


def summary_line(acc: dict[str, Any]) -> str:
    return f"reports lost: {acc['lost']}, duplicated: {acc['duplicated']}"
