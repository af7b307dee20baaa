"""Per-study latency: the embedded pipeline (one process) vs the four Celery workers over Redis.

Both runs use the same stored study and the same bundle, one study at a time (latency, not throughput):
from job creation to the `reviewed` state. Without a trained bundle installed, a TEST-ONLY random-weight
bundle at the real input size is used: the numbers then measure the platform (decode, preprocessing,
queue hops, SQL writes, ONNX Runtime on a small graph), not a real model — the JSON says which.

  python -m bench.bench_pipeline [--studies 50]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

from libs.core.config import REPO_ROOT, Settings
from libs.domain.request import ReportRequest
from libs.pipeline.context import PipelineContext
from libs.pipeline.dispatch import CeleryDispatcher, InProcessDispatcher
from libs.pipeline.embedded import drain, store_files
from libs.pipeline.messages import Step, StepMessage
from libs.storage import crud
from libs.storage.db import session_scope

RESULTS = REPO_ROOT / "bench" / "results"
PG_ADMIN = os.environ.get("CXR_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("CXR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": len(ms), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "mean_ms": round(float(a.mean()), 1)}


def pick_bundle(workdir: Path) -> tuple[Path, str]:
    installed = REPO_ROOT / "models" / "reference"
    if (installed / "manifest.json").exists():
        return installed, "installed reference bundle"
    from libs.bundle.testing import build_random_bundle

    return build_random_bundle(workdir / "random512", image_size=512), "TEST-ONLY random bundle (no model installed)"


def new_job(ctx: PipelineContext, study_uid: str) -> str:
    with session_scope(ctx.engine) as s:
        job, _ = crud.create_job(s, study_uid, ReportRequest(), idempotency_key=str(uuid.uuid4()))
        return job.id


def wait_reviewed(engine, job_id: str, timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            state = conn.execute(text("SELECT state FROM jobs WHERE id=:i"), {"i": job_id}).scalar()
        if state == "reviewed":
            return
        if state == "failed":
            raise RuntimeError(f"job {job_id} failed")
        time.sleep(0.005)
    raise TimeoutError(job_id)


def run_inprocess(settings: Settings, study: Path, n: int) -> list[float]:
    ctx = PipelineContext.from_settings(settings)
    study_uid = store_files(ctx, [study])
    ctx.runner  # noqa: B018 - load the bundle before timing, as a running service would have
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        job_id = new_job(ctx, study_uid)
        d = InProcessDispatcher()
        d.send(Step.INGESTION, StepMessage(job_id=job_id))
        drain(ctx, d)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def run_queued(settings: Settings, study: Path, n: int, workdir: Path) -> list[float]:
    import redis

    from libs.queue.celery_app import make_celery

    redis.Redis.from_url(REDIS).flushdb()
    ctx = PipelineContext.from_settings(settings)
    study_uid = store_files(ctx, [study])
    env = {**os.environ, "DATABASE_URL": settings.sqlalchemy_url, "REDIS_URL": REDIS,
           "CXR_DATA_DIR": str(settings.data_dir), "CXR_BUNDLE_PATH": str(settings.bundle_path),
           "CXR_LOG_LEVEL": "WARNING"}
    procs = [subprocess.Popen([sys.executable, "-m", f"services.{svc}"], cwd=REPO_ROOT, env=env,
                              stdout=open(workdir / f"{svc}.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                              start_new_session=True)
             for svc in ("ingestion", "inference", "formatting", "qa")]
    try:
        dispatcher = CeleryDispatcher(make_celery(settings.model_copy(update={"redis_url": REDIS})))
        warm = new_job(ctx, study_uid)  # first job waits for the workers to start; not timed
        dispatcher.send(Step.INGESTION, StepMessage(job_id=warm))
        wait_reviewed(ctx.engine, warm, timeout=180)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            job_id = new_job(ctx, study_uid)
            dispatcher.send(Step.INGESTION, StepMessage(job_id=job_id))
            wait_reviewed(ctx.engine, job_id)
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=50)
    args = parser.parse_args(argv)
    study = sorted((REPO_ROOT / "samples" / "chest_pa").glob("*.dcm"))[0]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bundle, bundle_kind = pick_bundle(workdir)
        db_name = f"cxr_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db_name}"'))
        try:
            # Embedded mode runs one study at a time, so like the CLI it does not batch.
            inproc = run_inprocess(Settings(data_dir=workdir / "a", bundle_path=bundle, batching=False,
                                            database_url=f"sqlite:///{workdir / 'a.db'}"), study, args.studies)
            queued = run_queued(Settings(data_dir=workdir / "b", bundle_path=bundle,
                                         database_url=PG_ADMIN.rsplit("/", 1)[0] + f"/{db_name}"),
                                study, args.studies, workdir)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    result = {
        "benchmark": "per-study latency, one study at a time",
        "study": f"samples/chest_pa/{study.name} (1955x1841 CR, JPEG 2000)",
        "bundle": bundle_kind,
        "cpu_count": os.cpu_count(),
        "note": "the queued inference worker batches: a study alone waits up to the manifest's max_queue_delay_ms",
        "in_process_sqlite": percentiles(inproc),
        "queued_redis_postgres_4_workers": percentiles(queued),
    }
    result["queue_overhead_p50_ratio"] = round(
        result["queued_redis_postgres_4_workers"]["p50_ms"] / result["in_process_sqlite"]["p50_ms"], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
