"""The Celery application every service shares, and the task that wraps a pipeline step.

Delivery guarantees (the reason for each setting):
- acks_late + reject_on_worker_lost: a message is acknowledged only after its step committed, so a
  worker killed mid-task leaves the message to be delivered again (after `visibility_timeout_s`
  when the whole worker died) — steps are idempotent, so a second delivery is harmless;
- prefetch 1: a worker holds no more messages than it is working on (no hoarding behind a slow study);
- retries with exponential backoff for transient errors; when they run out the job is marked failed
  with the reason and failure_kind "exhausted": a dead letter, which lives in SQL where ops can list
  and re-drive it (GET /api/v1/ops/dead-letters, `cxr-report jobs`);
- a message lost altogether (Redis restarted) is sent again by the reconciler (libs/pipeline/reconcile.py);
- a message whose worker dies every time it runs it (a crash in native code, say an image decoder on a
  malformed file, or the kernel's OOM killer) would come back for ever under acks_late: each delivery is
  counted in Redis (per job, step and retry), and one delivered more than `max_deliveries` times fails its
  job as a dead letter with that reason instead of being run again (a poison-message guard).
"""

from __future__ import annotations

import logging
import random
from functools import lru_cache

from celery import Celery

from libs.core.config import Settings, get_settings
from libs.observability.metrics import STEP_EXHAUSTED, STEP_RETRIES
from libs.pipeline.context import PipelineContext
from libs.pipeline.dispatch import CeleryDispatcher
from libs.pipeline.messages import Step, StepMessage
from libs.pipeline.steps import run_step
from libs.storage import crud
from libs.storage.db import session_scope

log = logging.getLogger(__name__)


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("cxr", broker=settings.redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for messages of dead workers often enough that recovery takes about one
            # visibility timeout, not kombu's default of ~100 s between sweeps.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 3)),
            "unacked_restore_throttle": 1,
            # The sweep holds a Redis lock; if a worker dies holding it, the lock must not outlive
            # the recovery we promise (kombu's default is 5 minutes).
            "unacked_mutex_expire": max(5, min(60, settings.visibility_timeout_s)),
            # Lets STAT (priority 0) overtake routine work on the same queue.
            "priority_steps": list(range(10)),
            "queue_order_strategy": "priority",
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_default_queue=Step.INGESTION.value,
    )
    return app


# Publishers outside a worker (the reconciler, a re-drive from the API or the CLI) give up after about
# a second when Redis is down instead of hanging on Celery's default publish retries: what they
# failed to send stays visible in SQL, and the reconciler sends it on a later pass.
SENDER_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.25, "interval_max": 0.5}


def make_sender(settings: Settings) -> Celery:
    """A Celery app that only publishes step messages by task name (it needs no task code)."""
    app = make_celery(settings)
    app.conf.update(
        task_publish_retry=True,
        task_publish_retry_policy=SENDER_RETRY_POLICY,
        broker_connection_timeout=2,
        broker_connection_max_retries=1,
    )
    return app


@lru_cache(maxsize=1)
def celery_app() -> Celery:
    return make_celery()


_context: PipelineContext | None = None


def pipeline_context() -> PipelineContext:
    global _context
    if _context is None:
        _context = PipelineContext.from_settings()
    return _context


def backoff_seconds(retries: int, cap: int) -> float:
    """Exponential backoff with full jitter: 1, 2, 4... seconds, capped."""
    return random.uniform(0, min(cap, 2**retries))


class DeliveryCounter:
    """How often each (job, step, retry) message was delivered, in Redis: a delivery that never finished
    left its count behind. Keys expire after a day; a finished or failed delivery removes its key, so a
    re-driven job starts again from nothing. Redis unreachable: nothing is counted (the guard is off)."""

    TTL_S = 86_400

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._client = None

    def _redis(self):  # noqa: ANN202 - redis.Redis
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        return self._client

    @staticmethod
    def key(step: Step, job_id: str, retries: int) -> str:
        return f"cxr:deliveries:{step.value}:{job_id}:{retries}"

    def incr(self, key: str) -> int:
        try:
            pipe = self._redis().pipeline()
            pipe.incr(key)
            pipe.expire(key, self.TTL_S)
            return int(pipe.execute()[0])
        except Exception as exc:  # noqa: BLE001 - count nothing rather than stop the pipeline
            log.warning("delivery count unavailable (%s)", type(exc).__name__)
            return 1

    def done(self, key: str) -> None:
        try:
            self._redis().delete(key)
        except Exception:  # noqa: BLE001 - it expires on its own
            pass


def _dead_letter(ctx: PipelineContext, step: Step, job_id: str, reason: str) -> str:
    log.error("job %s: %s", job_id, reason)
    with session_scope(ctx.engine) as session:
        # A dead letter: ops can list it and re-drive it (libs/pipeline/redrive.py).
        crud.fail(session, job_id, reason, kind=crud.EXHAUSTED)
    STEP_EXHAUSTED.labels(step.value).inc()
    return "failed"


def register_step_task(app: Celery, step: Step):  # noqa: ANN201 - celery Task
    settings = get_settings()
    deliveries = DeliveryCounter(settings.redis_url)

    @app.task(name=step.task_name, bind=True, max_retries=settings.task_max_retries)
    def process(self, job_id: str, priority: str = "routine", image_path: str | None = None) -> str | None:  # noqa: ANN001
        message = StepMessage(job_id=job_id, priority=priority, image_path=image_path)
        ctx = pipeline_context()
        key = DeliveryCounter.key(step, job_id, self.request.retries)
        delivered = deliveries.incr(key)
        if delivered > settings.max_deliveries:
            deliveries.done(key)
            return _dead_letter(ctx, step, job_id, (
                f"{step.value} never finished: its worker died {delivered - 1} times while processing this job "
                "(a crash in native code such as an image decoder, or out of memory); not run again"))
        try:
            state = run_step(step, message, ctx, CeleryDispatcher(app))
        except Exception as exc:  # transient by default: retry, then dead-letter with the reason
            deliveries.done(key)  # this delivery finished (badly): the retry is counted under its own key
            if self.request.retries >= self.max_retries:
                return _dead_letter(ctx, step, job_id,
                                    f"{step.value} failed after {self.request.retries + 1} attempts: {exc}")
            delay = backoff_seconds(self.request.retries, settings.task_retry_backoff_max_s)
            log.warning("job %s: %s attempt %d failed (%s); retrying in %.1fs",
                        job_id, step.value, self.request.retries + 1, exc, delay)
            STEP_RETRIES.labels(step.value).inc()
            raise self.retry(exc=exc, countdown=delay) from exc
        deliveries.done(key)
        return state.value if state else None

    return process


def register_regenerate_task(app: Celery):  # noqa: ANN201 - celery Task
    """The correction task on the inference queue. Regeneration stores its own failure on the
    correction row (the radiologist is shown why), so only a database outage makes it retry."""
    from libs.feedback.corrections import regenerate
    from libs.pipeline.messages import REGENERATE_TASK, CorrectionMessage

    @app.task(name=REGENERATE_TASK, bind=True, max_retries=3)
    def process(self, correction_id: str) -> str:  # noqa: ANN001
        message = CorrectionMessage(correction_id=correction_id)
        try:
            return regenerate(message.correction_id, pipeline_context()).state
        except Exception as exc:
            if self.request.retries >= self.max_retries:
                log.error("correction %s: gave up after %d attempts: %s", correction_id, self.request.retries + 1, exc)
                return "failed"
            raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries, 10)) from exc

    return process
