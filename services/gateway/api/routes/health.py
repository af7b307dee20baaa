"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from libs.core.config import Settings
from libs.storage.db import check_database
from services.gateway.api.deps import EngineDep, SettingsDep
from services.gateway.schemas import HealthOut, InferenceWorkerOut, ReadyOut

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness: the process is up")
def healthz() -> HealthOut:
    return HealthOut(status="ok")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _check_database(engine) -> str:  # noqa: ANN001
    try:
        check_database(engine)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"database unavailable or not migrated ({_one_line(exc)})"
    return "ok"


def _redis_client(settings: Settings):  # noqa: ANN202 - redis.Redis
    """A short-timeout client for one probe (closed by the caller)."""
    import redis

    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)


def _check_redis(settings: Settings) -> str:
    try:
        client = _redis_client(settings)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001
        return f"redis unreachable ({_one_line(exc)})"
    return "ok"


def _check_bundle(settings: Settings, engine) -> str:  # noqa: ANN001
    """The production bundle loads: the registry's production model, else the configured one."""
    try:
        from libs.bundle.manifest import load_manifest
        from libs.lifecycle import registry
    except ImportError as exc:
        return f"model bundle support is not installed ({_one_line(exc)})"
    try:
        production = registry.in_state(engine, registry.PRODUCTION)
        path = production.path if production is not None else settings.bundle_path  # hash: checked at load
        manifest = load_manifest(path)
    except Exception as exc:  # noqa: BLE001 - BundleUnavailable carries the reason
        return getattr(exc, "reason", None) or _one_line(exc)
    # No comparison with settings.image_size: the pipeline resizes to the bundle's own input size
    # (steps.model_input_size); image_size only applies when no bundle is installed.
    del manifest
    return "ok"


# A probe must answer even when a dependency hangs (an unroutable database host can take minutes
# to time out); the check's thread is left to finish on its own.
CHECK_TIMEOUT_S = 5.0


async def _timed(name: str, fn, *args) -> str:  # noqa: ANN001
    try:
        return await asyncio.wait_for(run_in_threadpool(fn, *args), CHECK_TIMEOUT_S)
    except asyncio.TimeoutError:
        return f"{name} check timed out after {CHECK_TIMEOUT_S:g} s"


async def run_checks(settings: Settings, engine) -> dict[str, str]:  # noqa: ANN001
    names = ["database"]
    calls = [_timed("database", _check_database, engine)]
    if settings.queue_backend.strip().lower() == "celery":
        names.append("redis")
        calls.append(_timed("redis", _check_redis, settings))
    names.append("bundle")
    calls.append(_timed("bundle", _check_bundle, settings, engine))
    return dict(zip(names, await asyncio.gather(*calls)))


def _step_workers(settings: Settings) -> dict[str, list[str]]:
    from libs.observability import runtime_status
    from libs.pipeline.messages import Step

    client = _redis_client(settings)
    try:
        board = runtime_status.read_workers(client)
    finally:
        client.close()
    return {step.value: sorted(b.worker for b in board.get(step.value, [])) for step in Step}


def _workers_check(workers: dict[str, list[str]] | None) -> str:
    if workers is None:
        return "worker heartbeats unreadable (see the redis check)"
    missing = [step for step, names in workers.items() if not names]
    return "ok" if not missing else f"no live worker for: {', '.join(missing)}"


async def _automation(engine) -> dict[str, str | None]:  # noqa: ANN001
    from libs.automation import switch

    try:
        state = await asyncio.wait_for(run_in_threadpool(switch.current, engine), CHECK_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - the database check says why
        return {"mode": "unknown"}
    return {"mode": state.mode, "reason": state.reason, "since": state.since.isoformat() if state.since else None}


async def _worker_board(settings: Settings) -> dict[str, list[str]] | None:
    try:
        return await asyncio.wait_for(run_in_threadpool(_step_workers, settings), CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - Redis down or slow: the redis check says why
        log.warning("step workers not listed: %s", _one_line(exc))
        return None


def _inference_workers(settings: Settings) -> list[InferenceWorkerOut]:
    from dataclasses import asdict

    from libs.observability import runtime_status

    if settings.queue_backend.strip().lower() == "celery":
        client = _redis_client(settings)
        try:
            statuses = runtime_status.read_redis(client)
        finally:
            client.close()
    else:
        statuses = list(runtime_status.LOCAL.values())
    return [InferenceWorkerOut(**asdict(s)) for s in statuses]


async def _inference_board(settings: Settings) -> list[InferenceWorkerOut]:
    try:
        return await asyncio.wait_for(run_in_threadpool(_inference_workers, settings), CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - informational: never fails the probe (redis is checked above)
        log.warning("inference workers not listed: %s", _one_line(exc))
        return []


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, settings: SettingsDep, engine: EngineDep) -> Response:
    """Prometheus exposition of this process (in-process mode: the whole pipeline's inference runtime),
    of the pipeline's shared state: jobs, dead letters, queues, feedback (libs/observability/pipeline.py),
    and of what /readyz finds: readiness, live workers, the automation switch."""
    from libs.observability.pipeline import readiness_text

    ready = await evaluate_readiness(settings, engine)
    shared = await run_in_threadpool(generate_latest, request.app.state.pipeline_registry)
    body = generate_latest() + shared + readiness_text(ready.status == "ready", ready.checks, ready.workers,
                                                       str(ready.automation.get("mode")))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness: database, queue and model bundle",
    description=(
        "200 when the database is reachable and migrated, Redis answers PING (Celery backend only), "
        "the model bundle's manifest is valid and (Celery backend) every step has a live worker; otherwise "
        "503 with each failing check's reason. `workers` lists the live step workers, `inference` the "
        "inference workers with their execution providers."
    ),
    responses={503: {"model": ReadyOut, "description": "At least one check failed"}},
)
async def readyz(response: Response, settings: SettingsDep, engine: EngineDep) -> ReadyOut:
    out = await evaluate_readiness(settings, engine)
    if out.status != "ready":
        response.status_code = 503
        log.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in out.checks.items() if v != "ok"))
    return out


async def evaluate_readiness(settings: Settings, engine) -> ReadyOut:  # noqa: ANN001
    """What /readyz answers; /metrics exports the same as cxr_ready (one truth for probes and alerts)."""
    celery = settings.queue_backend.strip().lower() == "celery"

    async def no_board() -> None:
        return None

    checks, inference, steps = await asyncio.gather(
        run_checks(settings, engine), _inference_board(settings), _worker_board(settings) if celery else no_board())
    if celery and settings.ready_requires_workers:
        checks["workers"] = _workers_check(steps)
    ready = all(v == "ok" for v in checks.values())
    return ReadyOut(status="ready" if ready else "not ready", checks=checks, inference=inference,
                    workers=steps or {}, automation=await _automation(engine))
