"""Shared start-up of a step worker: a supervisor (services/supervisor.py) that keeps a worker process
running, and in that process logging, schema check, then Celery's worker loop."""

from __future__ import annotations

import faulthandler
import importlib
import logging
import os
import signal
import sys
import time


def run_worker(queue: str, argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=os.environ.get("CXR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    from libs.core.config import get_settings
    from services import supervisor

    args = argv if argv is not None else sys.argv[1:]
    if get_settings().worker_restart and not supervisor.is_child():
        supervisor.supervise_module(queue, f"services.{queue}", args)  # does not return
    # `kill -USR1 <pid>` writes every thread's stack to the log: how to see where a stuck worker is.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    module = importlib.import_module(f"services.{queue}.worker")
    from libs.queue.celery_app import pipeline_context

    ctx = pipeline_context()  # migrates / verifies the database before taking work
    log = logging.getLogger(__name__)
    # solo pool by default: one process per service keeps memory low on small machines; scale by
    # running more worker processes rather than threads around one model.
    pool = os.environ.get("CXR_WORKER_POOL", "solo")
    concurrency = os.environ.get("CXR_WORKER_CONCURRENCY", "1")
    from libs.observability.metrics import serve_metrics

    serve_metrics(ctx.settings.metrics_port, ctx.settings.metrics_host)
    if queue == "inference":
        from libs.observability.gpu import register_gpu_metrics

        register_gpu_metrics()  # GPU use and memory when NVML finds a GPU; absent otherwise
    from celery.signals import worker_ready, worker_shutdown

    from libs.observability.runtime_status import Heartbeat, WorkerBeat, worker_name

    status = None  # an inference worker's runtime (bundle, providers, batching), listed by /readyz
    able = True  # False: this worker cannot do its step, so it does not say it is alive
    if queue == "inference":
        # Load the bundle now: a missing or broken bundle is reported at start, not on the first study.
        try:
            runner = ctx.runner
            log.info("bundle %s %s loaded with providers %s", runner.manifest.name, runner.manifest.version,
                     runner.providers)
            if ctx.settings.batching:
                # As many threads as a batch holds, each blocked on its study's result: the worker
                # takes exactly as many messages as it can batch (prefetch 1 per thread).
                size, delay = ctx.batch_limits()
                pool, concurrency = "threads", str(size)
                ctx.batcher  # noqa: B018 - start the batching thread before taking work
                log.info("dynamic batching: max batch %d, max queue delay %.0f ms", size, delay)
            status = ctx.runtime_status()
        except Exception as exc:  # noqa: BLE001 - keep running: its tasks retry; /readyz shows no live inference worker
            log.error("model bundle unavailable: %s", exc)
            able = False
    # Every step worker that can work says so once Celery consumes (/readyz lists them and is not
    # ready while a step has none); a dead one drops off within TTL_S, a stopped one at once.
    heartbeat = Heartbeat(ctx.settings.redis_url, status, beat=WorkerBeat(queue, worker_name(), time.time()))

    def ready(**_) -> None:  # noqa: ANN003
        if able:
            heartbeat.start()

    def shutdown(**_) -> None:  # noqa: ANN003
        heartbeat.stop()
        ctx.close()

    worker_ready.connect(ready, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
    module.app.worker_main(
        ["worker", "-Q", queue, "-n", f"{queue}@%h-{os.getpid()}", f"--pool={pool}",
         f"--concurrency={concurrency}", "--without-gossip", "--without-mingle", "--loglevel=INFO", *args]
    )
