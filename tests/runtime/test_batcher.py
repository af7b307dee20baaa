"""The dynamic batcher: size and delay limits, priorities, failure isolation, back-pressure, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from libs.runtime.batcher import PRIORITY_ROUTINE, PRIORITY_STAT, BatcherClosed, DynamicBatcher


def doubling(items: list[int]) -> list[int]:
    return [2 * i for i in items]


def test_full_batch_goes_at_once_without_waiting_for_the_delay() -> None:
    b = DynamicBatcher(doubling, max_batch_size=4, max_queue_delay_ms=10_000)
    t0 = time.monotonic()
    futures = [b.submit(i) for i in range(4)]
    assert [f.result(timeout=5) for f in futures] == [0, 2, 4, 6]
    assert time.monotonic() - t0 < 5
    assert list(b.batch_sizes) == [4]
    b.close()


def test_partial_batch_leaves_after_the_delay() -> None:
    b = DynamicBatcher(doubling, max_batch_size=8, max_queue_delay_ms=100)
    t0 = time.monotonic()
    futures = [b.submit(i) for i in range(3)]
    assert [f.result(timeout=5) for f in futures] == [0, 2, 4]
    waited = time.monotonic() - t0
    assert 0.09 <= waited < 2.0
    assert list(b.batch_sizes) == [3]
    b.close()


def test_more_than_a_batch_is_split_by_max_batch_size() -> None:
    b = DynamicBatcher(doubling, max_batch_size=8, max_queue_delay_ms=50, max_pending=64)
    futures = [b.submit(i) for i in range(20)]
    assert [f.result(timeout=5) for f in futures] == [2 * i for i in range(20)]
    assert max(b.batch_sizes) <= 8 and sum(b.batch_sizes) == 20
    b.close()


def test_stat_requests_are_served_before_routine_ones() -> None:
    gate = threading.Event()
    order: list[int] = []

    def run(items: list[int]) -> list[int]:
        gate.wait(5)
        order.extend(items)
        return items

    b = DynamicBatcher(run, max_batch_size=1, max_queue_delay_ms=0)
    first = b.submit(0)  # occupies the model while the others queue up
    time.sleep(0.05)
    routine = [b.submit(i, PRIORITY_ROUTINE) for i in (1, 2)]
    stat = b.submit(99, PRIORITY_STAT)
    gate.set()
    for f in [first, *routine, stat]:
        f.result(timeout=5)
    assert order == [0, 99, 1, 2]
    b.close()


def test_a_failing_item_fails_only_itself() -> None:
    def run(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad input")
        return items

    b = DynamicBatcher(run, max_batch_size=4, max_queue_delay_ms=50)
    futures = [b.submit(i) for i in (1, -1, 3)]
    assert futures[0].result(timeout=5) == 1
    assert futures[2].result(timeout=5) == 3
    with pytest.raises(ValueError, match="bad input"):
        futures[1].result(timeout=5)
    b.close()


def test_full_queue_applies_back_pressure() -> None:
    gate = threading.Event()
    b = DynamicBatcher(lambda items: (gate.wait(5), items)[1], max_batch_size=1, max_queue_delay_ms=0, max_pending=2)
    b.submit(0)
    time.sleep(0.05)  # the first item is running; two more fill the queue
    b.submit(1)
    b.submit(2)
    with pytest.raises(TimeoutError):
        b.submit(3, timeout=0.1)
    gate.set()
    b.close()


def test_close_finishes_queued_work_then_refuses_more() -> None:
    b = DynamicBatcher(doubling, max_batch_size=8, max_queue_delay_ms=200)
    futures = [b.submit(i) for i in range(3)]
    b.close()
    assert [f.result(timeout=1) for f in futures] == [0, 2, 4]
    with pytest.raises(BatcherClosed):
        b.submit(5)


def test_batches_are_recorded_in_prometheus_metrics() -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    count0, sum0 = sample("cxr_inference_batch_size_count"), sample("cxr_inference_batch_size_sum")
    waits0 = sample("cxr_inference_queue_wait_seconds_count")
    b = DynamicBatcher(doubling, max_batch_size=4, max_queue_delay_ms=10_000)
    assert [f.result(timeout=5) for f in [b.submit(i) for i in range(4)]] == [0, 2, 4, 6]
    b.close()
    assert sample("cxr_inference_batch_size_count") - count0 == 1
    assert sample("cxr_inference_batch_size_sum") - sum0 == 4
    assert sample("cxr_inference_queue_wait_seconds_count") - waits0 == 4
    assert sample("cxr_inference_pending") == 0
