"""How a step hands the next message on: Celery over Redis, or an in-process queue."""

from __future__ import annotations

import collections
import logging
import time
from typing import Protocol

from libs.pipeline.messages import Step, StepMessage

log = logging.getLogger(__name__)

# Redis transport: 0 is served first. STAT studies jump the routine backlog on every queue.
PRIORITY = {"stat": 0, "routine": 6}
SENT_AT_HEADER = "cxr_sent_at"  # epoch seconds, on every step message


class Dispatcher(Protocol):
    def send(self, step: Step, message: StepMessage) -> None: ...


class InProcessDispatcher:
    """FIFO queue drained by the caller; STAT messages go to the front."""

    def __init__(self) -> None:
        self.pending: collections.deque[tuple[Step, StepMessage]] = collections.deque()

    def send(self, step: Step, message: StepMessage) -> None:
        if message.priority == "stat":
            self.pending.appendleft((step, message))
        else:
            self.pending.append((step, message))

    def pop(self) -> tuple[Step, StepMessage] | None:
        return self.pending.popleft() if self.pending else None


class CeleryDispatcher:
    """Publishes by task name so the sender needs none of the receiving service's code."""

    def __init__(self, app) -> None:  # noqa: ANN001 - celery.Celery
        self.app = app

    def send(self, step: Step, message: StepMessage) -> None:
        self.app.send_task(
            step.task_name,
            kwargs=message.model_dump(mode="json"),
            queue=step.value,
            priority=PRIORITY.get(message.priority, PRIORITY["routine"]),
            # When it was queued: the age of the oldest waiting message is a metric
            # (libs/observability/pipeline.py); a time, no patient data.
            headers={SENT_AT_HEADER: f"{time.time():.3f}"},
        )
        log.info("queued job %s for %s", message.job_id, step.value)
