"""Where the workers say they are alive, and the inference runtime what it runs on, so that /readyz
can show both.

Every step worker publishes a beat under `cxr:workers:<step>:<worker>`; an inference worker also its
status (bundle, execution providers, batching limits) under `cxr:inference:workers:<worker>`. Each key
has a time to live (TTL_S) and is refreshed by a heartbeat thread every TTL_S / 3: a worker that dies
drops off the board by itself within TTL_S, one that stops removes its keys at once. In the embedded
/ in-process mode the inference status stays in this process (LOCAL). Nothing here names a study or
a patient.
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
WORKER_KEY_PREFIX = "cxr:workers:"
TTL_S = 30


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


@dataclass(frozen=True)
class WorkerBeat:
    step: str  # the queue it takes work from
    worker: str
    started_at: float  # epoch seconds

    @property
    def key(self) -> str:
        return f"{WORKER_KEY_PREFIX}{self.step}:{self.worker}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def read_workers(client) -> dict[str, list[WorkerBeat]]:  # noqa: ANN001 - redis.Redis
    """The live step workers, by step."""
    keys = sorted(client.scan_iter(match=WORKER_KEY_PREFIX + "*", count=100))
    out: dict[str, list[WorkerBeat]] = {}
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue
        try:
            beat = WorkerBeat(**json.loads(raw))
        except (TypeError, ValueError) as exc:
            log.warning("unreadable worker beat on the board: %s", exc)
            continue
        out.setdefault(beat.step, []).append(beat)
    return out


class Heartbeat:
    """Re-publishes a worker's beat (and an inference worker's status) every ttl/3 seconds until
    stopped; its keys are deleted on stop."""

    def __init__(self, redis_url: str, status: InferenceStatus | None = None, ttl_s: int = TTL_S,
                 beat: WorkerBeat | None = None) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        self.status, self.beat, self.ttl_s = status, beat, ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-heartbeat", daemon=True)

    def _entries(self) -> dict[str, str]:
        entries = {}
        if self.status is not None:
            entries[KEY_PREFIX + self.status.worker] = self.status.to_json()
        if self.beat is not None:
            entries[self.beat.key] = self.beat.to_json()
        return entries

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                for key, value in self._entries().items():
                    pipe.set(key, value, ex=self.ttl_s)
                pipe.execute()
            except Exception as exc:  # noqa: BLE001 - Redis down: try again on the next beat
                log.warning("worker heartbeat not published: %s", exc)
            if self._stop.wait(self.ttl_s / 3):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is None:  # never started: nothing was published
            return
        self._thread.join(5)
        try:
            keys = list(self._entries())
            if keys:
                self.client.delete(*keys)
        except Exception:  # noqa: BLE001 - the keys expire by themselves
            pass
