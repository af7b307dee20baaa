"""Handing a new job to the pipeline: the first message, to the ingestion step.

Two backends, chosen by `settings.queue_backend`:

- "celery": a Celery producer on the configured Redis broker publishes to the `ingestion` queue
  (the step workers consume it). Publishing retries briefly and then fails with `PublishFailed`;
  the route turns that into a 503 and removes the job it just created (see routes/reports.py).
- "inprocess": no workers at all (tests, a laptop): one background thread runs the whole pipeline
  with the in-process dispatcher, one job after another, in this process.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from libs.core.config import Settings
from libs.pipeline.context import PipelineContext
from libs.pipeline.dispatch import CeleryDispatcher, InProcessDispatcher
from libs.pipeline.messages import Step, StepMessage

log = logging.getLogger(__name__)


class PublishFailed(Exception):
    """The message could not be handed to the queue (broker down or unreachable)."""


class Publisher(Protocol):
    def publish(self, message: StepMessage) -> None: ...

    def close(self) -> None: ...


class CeleryPublisher:
    # A client waits for the POST, so give up after about a second and let it retry later
    # rather than hang on Celery's default publish retries.
    RETRY_POLICY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.25, "interval_max": 0.5}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._app = None
        self._lock = threading.Lock()

    def _dispatcher(self) -> CeleryDispatcher:
        with self._lock:
            if self._app is None:
                from libs.queue.celery_app import make_celery

                # Our own Celery app on *these* settings' broker (celery_app() would read the
                # process environment); it only sends by task name, so it needs no task code.
                app = make_celery(self.settings)
                app.conf.update(
                    task_publish_retry=True,
                    task_publish_retry_policy=self.RETRY_POLICY,
                    broker_connection_timeout=2,
                    broker_connection_max_retries=1,
                )
                self._app = app
            return CeleryDispatcher(self._app)

    def publish(self, message: StepMessage) -> None:
        try:
            self._dispatcher().send(Step.INGESTION, message)
        except Exception as exc:  # kombu OperationalError, redis ConnectionError, socket errors...
            raise PublishFailed(f"the job queue is unreachable ({type(exc).__name__})") from exc

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                try:
                    self._app.close()
                except Exception:  # noqa: BLE001 - best effort at shutdown
                    pass
                self._app = None


class InProcessPublisher:
    """Runs each job's pipeline in one background worker thread (jobs queue up behind each other)."""

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxr-pipeline")
        self._closed = False

    def publish(self, message: StepMessage) -> None:
        if self._closed:
            raise PublishFailed("the in-process pipeline is shutting down")
        self._executor.submit(self._run, message)

    def _run(self, message: StepMessage) -> None:
        from libs.pipeline.embedded import drain

        dispatcher = InProcessDispatcher()
        dispatcher.send(Step.INGESTION, message)
        try:
            drain(self.ctx, dispatcher)
        except Exception as exc:  # noqa: BLE001 - drain already stored the reason in the job
            log.warning("job %s failed in the in-process pipeline: %s", message.job_id, exc)

    def close(self) -> None:
        """Finishes the job that is running, drops queued ones (they stay `received`)."""
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)


def make_publisher(settings: Settings, ctx: PipelineContext) -> Publisher:
    backend = settings.queue_backend.strip().lower()
    if backend == "celery":
        return CeleryPublisher(settings)
    if backend == "inprocess":
        return InProcessPublisher(ctx)
    raise ValueError(f"unknown queue_backend {settings.queue_backend!r}; use 'celery' or 'inprocess'")


def send_qa(settings: Settings, pipeline: PipelineContext, background, job_ids: list[str]) -> None:  # noqa: ANN001
    """QA messages for jobs whose results must go out (released store-backs, a radiologist's new
    version): published now (Celery), or run after the answer (in-process, as a background task).
    A publishing failure leaves them pending: the reconciler sends them once stale."""
    if not job_ids:
        return
    messages = [StepMessage(job_id=j) for j in job_ids]
    if settings.queue_backend.strip().lower() == "celery":
        from libs.pipeline.redrive import celery_dispatcher

        try:
            with celery_dispatcher(settings) as dispatcher:
                for m in messages:
                    dispatcher.send(Step.QA, m)
        except Exception as exc:  # noqa: BLE001
            log.warning("results not queued (%s); the reconciler will send them", type(exc).__name__)
        return
    local = InProcessDispatcher()
    for m in messages:
        local.send(Step.QA, m)
    background.add_task(_drain_quietly, pipeline, local)


def _drain_quietly(ctx: PipelineContext, dispatcher: InProcessDispatcher) -> None:
    from libs.pipeline.embedded import drain

    try:
        drain(ctx, dispatcher)
    except Exception as exc:  # noqa: BLE001 - drain stored the reason in the job
        log.warning("in-process delivery failed: %s", type(exc).__name__)


def deliver_version(settings: Settings, pipeline: PipelineContext, background, job_id: str, version: int) -> bool:  # noqa: ANN001
    """A radiologist's verdict stored as the report's version `version`: deliver it to the result
    destinations (libs/dicomweb/results.py, release_version). True when a delivery was started."""
    from libs.dicomweb.results import release_version

    if not release_version(pipeline.engine, settings, job_id, version):
        return False
    send_qa(settings, pipeline, background, [job_id])
    return True


def send_regenerate(settings: Settings, pipeline: PipelineContext, background, correction_id: str) -> None:  # noqa: ANN001
    """A correction to regenerate: to the inference service (Celery), or run in this process after the
    answer (in-process queue: this process holds the model). Raises PublishFailed when the queue is down."""
    from libs.pipeline.messages import REGENERATE_TASK, CorrectionMessage, Step

    message = CorrectionMessage(correction_id=correction_id)
    if settings.queue_backend.strip().lower() == "celery":
        from libs.pipeline.redrive import celery_dispatcher

        try:
            with celery_dispatcher(settings) as dispatcher:
                dispatcher.app.send_task(REGENERATE_TASK, kwargs=message.model_dump(mode="json"),
                                         queue=Step.INFERENCE.value, priority=0)
        except Exception as exc:  # noqa: BLE001
            raise PublishFailed(f"the job queue is unreachable ({type(exc).__name__})") from exc
        return
    background.add_task(_regenerate_quietly, pipeline, message.correction_id)


def _regenerate_quietly(ctx: PipelineContext, correction_id: str) -> None:
    from libs.feedback.corrections import regenerate

    try:
        regenerate(correction_id, ctx)
    except Exception as exc:  # noqa: BLE001 - the row stays pending; the page says it did not finish
        log.warning("correction %s not regenerated: %s", correction_id, type(exc).__name__)
