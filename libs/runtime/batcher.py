"""Dynamic batching: many concurrent single-study requests become one model call.

A request waits at most `max_queue_delay_ms` after the first one of its batch arrived, and a batch
never holds more than `max_batch_size` items — whichever comes first closes the batch (the design:
max batch 8, 100 ms). STAT requests are served before routine ones. If a batch call fails, each of
its items is run alone, so a bad input fails only its own request. The pending queue is bounded:
`submit` blocks when it is full, which is the back-pressure that keeps a worker from taking more
work than it can batch.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from libs.observability import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

PRIORITY_STAT = 0
PRIORITY_ROUTINE = 1


class BatcherClosed(RuntimeError):
    pass


@dataclass(order=True)
class _Pending(Generic[T, R]):
    priority: int
    seq: int
    item: T = field(compare=False)
    future: Future = field(compare=False)
    arrived: float = field(compare=False)


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 8,
        max_queue_delay_ms: float = 100.0,
        max_pending: int | None = None,
        name: str = "batcher",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max(0.0, max_queue_delay_ms) / 1000.0
        self.max_pending = max_pending or 4 * max_batch_size
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        # the most recent batch sizes, for benchmarks and tests (Prometheus keeps the full histogram)
        self.batch_sizes: deque[int] = deque(maxlen=10_000)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ client side
    def submit(self, item: T, priority: int = PRIORITY_ROUTINE, timeout: float | None = None) -> Future:
        """Queues one item; its Future resolves to its own result or exception."""
        fut: Future = Future()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._heap) >= self.max_pending and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("batcher queue is full")
                self._cond.wait(remaining)
            if self._closed:
                raise BatcherClosed("the batcher is shut down")
            heapq.heappush(self._heap, _Pending(priority, next(self._seq), item, fut, time.monotonic()))
            metrics.PENDING.set(len(self._heap))
            self._cond.notify_all()
        return fut

    def __call__(self, item: T, priority: int = PRIORITY_ROUTINE) -> R:
        return self.submit(item, priority).result()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stops taking work; everything already queued is still run (graceful shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    # ------------------------------------------------------------ batching loop
    def _next_batch(self) -> list[_Pending] | None:
        with self._cond:
            while not self._heap:
                if self._closed:
                    return None
                self._cond.wait()
            # The oldest waiting request sets the deadline: nobody waits longer than the delay.
            deadline = min(p.arrived for p in self._heap) + self.max_queue_delay_s
            while len(self._heap) < self.max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [heapq.heappop(self._heap) for _ in range(min(self.max_batch_size, len(self._heap)))]
            metrics.PENDING.set(len(self._heap))
            self._cond.notify_all()  # room freed for blocked submitters
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batch_sizes.append(len(live))
            started = time.monotonic()
            metrics.BATCH_SIZE.observe(len(live))
            for p in live:
                metrics.QUEUE_WAIT_SECONDS.observe(started - p.arrived)
            try:
                with metrics.BATCH_SECONDS.time():
                    results = self._run_batch([p.item for p in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
            except Exception as exc:  # noqa: BLE001 - isolate the failing item(s)
                if len(live) == 1:
                    live[0].future.set_exception(exc)
                    continue
                log.warning("batch of %d failed (%s); running its items one by one", len(live), exc)
                for p in live:
                    try:
                        p.future.set_result(self._run_batch([p.item])[0])
                    except Exception as item_exc:  # noqa: BLE001
                        p.future.set_exception(item_exc)
                continue
            for p, result in zip(live, results, strict=True):
                p.future.set_result(result)
