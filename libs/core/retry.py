"""Re-trying a call to a peer (a PACS association, an MLLP send) with a doubling delay."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator


def attempts(retries: int, backoff_s: float, sleep: Callable[[float], None] = time.sleep) -> Iterator[int]:
    """Yields 0, 1, ... retries; before each re-try it sleeps backoff_s, then twice that, and so on.
    The caller returns (or raises) on success and `continue`s on a transient failure."""
    delay = backoff_s
    for attempt in range(retries + 1):
        if attempt:
            sleep(delay)
            delay *= 2
        yield attempt
