"""Readiness of a step worker's container: exit 0 when a worker on this host (the pod) is live on the
board in Redis (its heartbeat, runtime_status.WorkerBeat), 1 when none is, 2 when Redis cannot be
read. Kubernetes runs it as an exec probe (helm/cxr-report): a worker whose process runs but cannot
do its step (an inference worker without a loadable bundle never beats) is then not ready, and a
rollout waits for the new pod to really take work.

    python -m libs.observability.worker_probe ingestion
"""

from __future__ import annotations

import socket
import sys

from libs.observability.runtime_status import read_workers


def live_here(client, step: str, host: str) -> bool:  # noqa: ANN001 - redis.Redis
    """Whether a worker of `step` on `host` has a live beat (worker names are `<host>-<pid>`)."""
    return any(beat.worker.startswith(f"{host}-") for beat in read_workers(client).get(step, []))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m libs.observability.worker_probe STEP", file=sys.stderr)
        return 2
    import redis

    from libs.core.config import get_settings

    step, host = args[0], socket.gethostname()
    client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        live = live_here(client, step, host)
    except redis.RedisError as exc:
        print(f"cannot read the worker board: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    if not live:
        print(f"no live {step} worker on {host}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
