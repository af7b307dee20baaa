"""`python -m services.reconciler`: every `reconcile_interval_s`, the leader among the running
replicas re-enqueues jobs whose message was lost (libs/pipeline/reconcile.py) and retries SR
store-backs to the PACS; every `drift_check_interval_s` it checks the production model for drift
(libs/lifecycle/drift.py). Stops on SIGTERM/SIGINT, releasing the leader lock.

Disabled (CXR_RECONCILE_ENABLED=false) or with the in-process queue it idles until stopped instead of
exiting, so an orchestrator that restarts exited containers does not restart it in a loop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from libs.core.config import Settings, get_settings

log = logging.getLogger("services.reconciler")


def _one_line(exc: BaseException) -> str:
    # The first line only: SQL errors carry the statement and its parameters (ids, never PHI) below.
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def run(settings: Settings, stop: threading.Event) -> None:
    import redis

    from libs.pipeline.context import PipelineContext
    from libs.pipeline.dispatch import CeleryDispatcher
    from libs.pipeline.reconcile import describe, reconcile_once
    from libs.queue.celery_app import make_sender
    from services.reconciler.leader import LeaderLock

    interval = settings.reconcile_interval_s
    ctx = PipelineContext.from_settings(settings)  # migrates / verifies the schema first
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    # Long enough to survive a slow pass, short enough that a dead leader is replaced quickly.
    lock = LeaderLock(client, ttl_ms=int(max(3 * interval, 10.0) * 1000))
    sender = make_sender(settings)
    dispatcher = CeleryDispatcher(sender)
    log.info("reconciler started: every %gs, jobs unchanged for %gs are re-enqueued, SR store-back up to %d "
             "attempts", interval, settings.reconcile_stale_s, settings.results_max_attempts)
    leading = False
    next_drift = time.monotonic() + min(60.0, settings.drift_check_interval_s)
    try:
        while not stop.is_set():
            try:
                is_leader = lock.acquire_or_renew()
            except redis.RedisError as exc:
                log.warning("leader lock unavailable (%s); not reconciling this round", _one_line(exc))
                is_leader = False
            if is_leader != leading:
                log.info("this replica is %s", "the leader: reconciling" if is_leader else "a follower: standing by")
                leading = is_leader
            if is_leader:
                try:
                    for action in reconcile_once(ctx, dispatcher):
                        log.info("%s", describe(action))
                except Exception as exc:  # noqa: BLE001 - database or Redis down: try again next round
                    log.warning("reconcile pass failed (%s); retrying in %gs", _one_line(exc), interval)
                if time.monotonic() >= next_drift:
                    next_drift = time.monotonic() + settings.drift_check_interval_s
                    _check_drift(ctx)
            stop.wait(interval)
    finally:
        try:
            if lock.release():
                log.info("leader lock released")
        except redis.RedisError:
            pass  # it expires on its own
        sender.close()
        client.close()


def _check_drift(ctx) -> None:  # noqa: ANN001 - PipelineContext
    from libs.lifecycle import drift, registry

    try:
        model = registry.in_state(ctx.engine, registry.PRODUCTION)
        if model is not None:
            alarms = [c.signal for c in drift.run_checks(ctx.engine, ctx.settings, model) if c.alarm]
            log.info("drift check of %s: %s", model.id, ", ".join(alarms) if alarms else "no alarm")
    except Exception as exc:  # noqa: BLE001 - the next check will try again
        log.warning("drift check failed (%s)", _one_line(exc))


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CXR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    settings = get_settings()
    if not settings.reconcile_enabled or settings.queue_backend.strip().lower() != "celery":
        log.info("reconciler disabled (CXR_RECONCILE_ENABLED=%s, queue backend %s); idling",
                 settings.reconcile_enabled, settings.queue_backend)
        stop.wait()
        return
    run(settings, stop)
    log.info("reconciler stopped")


if __name__ == "__main__":
    main()
