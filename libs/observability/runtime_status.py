"""Where the inference runtime reports what it runs on, so that /readyz can show it.

An inference worker publishes its status (bundle, execution providers, batching limits) to Redis
under `cxr:inference:workers:<worker>` with a time to live, refreshed by a heartbeat thread: a worker
that dies drops off the board by itself. In the embedded / in-process mode the status stays in this
process (LOCAL). Nothing here names a study or a patient.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

KEY_PREFIX = "cxr:inference:workers:"
TTL_S = 60


@dataclass(frozen=True)
class InferenceStatus:
    worker: str
    model_name: str
    model_version: str
    providers: list[str]
    batching: bool
    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    num_beams: int | None = None  # report decoding (1 = greedy); None: the bundle has no decoder

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "InferenceStatus":
        return cls(**json.loads(text))


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


# The in-process board: the embedded pipeline and the gateway's in-process mode live in one process.
LOCAL: dict[str, InferenceStatus] = {}


def publish_local(status: InferenceStatus) -> None:
    LOCAL[status.worker] = status


def publish_redis(client, status: InferenceStatus, ttl_s: int = TTL_S) -> None:  # noqa: ANN001 - redis.Redis
    client.set(KEY_PREFIX + status.worker, status.to_json(), ex=ttl_s)


def read_redis(client) -> list[InferenceStatus]:  # noqa: ANN001
    keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=100))
    out = []
    for raw in client.mget(keys) if keys else []:
        if raw is None:  # expired between SCAN and MGET
            continue
        try:
            out.append(InferenceStatus.from_json(raw))
        except (TypeError, ValueError) as exc:
            log.warning("unreadable inference status on the board: %s", exc)
    return out


class Heartbeat:
    """Re-publishes a worker's status every ttl/3 seconds until stopped; the key is deleted on stop."""

    def __init__(self, redis_url: str, status: InferenceStatus, ttl_s: int = TTL_S) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        self.status, self.ttl_s = status, ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="inference-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                publish_redis(self.client, self.status, self.ttl_s)
            except Exception as exc:  # noqa: BLE001 - Redis down: try again on the next beat
                log.warning("inference status not published: %s", exc)
            if self._stop.wait(self.ttl_s / 3):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self.client.delete(KEY_PREFIX + self.status.worker)
        except Exception:  # noqa: BLE001 - the key expires by itself
            pass
