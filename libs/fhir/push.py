"""Pushes a drafted report to an external FHIR R4 server, with retries.

The report's resources go as one transaction Bundle (`POST [base]`) in which every entry is a PUT
to the resource's own id, so a retry, or pushing the same report twice, updates rather than
duplicates. Transport errors, 408, 429 and 5xx answers are retried with exponential backoff (a
Retry-After header is honoured, capped); any other 4xx is permanent and raised at once with the
server's OperationOutcome diagnostics.

The pipeline pushes every finished report itself: each `FhirDestination` (CXR_FHIR_DESTINATIONS, or
CXR_FHIR_PUSH_URL as the destination "fhir") is a result destination like a PACS
(libs/dicomweb/results.py: the outcome is recorded per destination on the job, a failure is retried
by the reconciler, held while automation is paused). This command is the manual re-push, e.g. after
the server lost data; it does not touch the job's recorded outcome:

    python -m libs.fhir.push <job_id>                      # to every configured FHIR destination
    python -m libs.fhir.push <job_id> --destination ehr    # to one of them
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from libs.fhir.builder import ReportResources, transaction_bundle

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
_RETRY_STATUSES = frozenset({408, 429})


class PushError(Exception):
    pass


class PushRejected(PushError):
    """The server refused the bundle (a 4xx other than 408/429): retrying will not help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"FHIR server rejected the report with HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class PushFailed(PushError):
    """Every attempt failed with a retryable error."""

    def __init__(self, attempts: int, last: str) -> None:
        super().__init__(f"FHIR push failed after {attempts} attempt(s): {last}")
        self.attempts = attempts
        self.last = last


@dataclass(frozen=True)
class PushResult:
    status: int
    attempts: int
    response: dict[str, Any] | None  # the server's transaction-response Bundle, when it sent JSON


class FhirPushClient:
    def __init__(
        self,
        base_url: str,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the FHIR push URL must be http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._client = httpx.Client(timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> FhirPushClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, resources: ReportResources) -> PushResult:
        body = transaction_bundle(resources, self.base_url).model_dump_json()
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        attempts = self.retries + 1
        last = "no attempt made"
        for attempt in range(1, attempts + 1):
            delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.base_url, content=body.encode("utf-8"), headers=headers)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    log.info("FHIR push of %s: HTTP %s after %d attempt(s)",
                             resources.diagnostic_report.id, response.status_code, attempt)
                    return PushResult(response.status_code, attempt, _json(response))
                detail = _diagnostics(response)
                if response.status_code not in _RETRY_STATUSES and response.status_code < 500:
                    raise PushRejected(response.status_code, detail)
                last = f"HTTP {response.status_code}: {detail}"
                delay = _retry_after(response, delay, self.backoff_max_s)
            log.warning("FHIR push of %s, attempt %d/%d failed: %s", resources.diagnostic_report.id, attempt,
                        attempts, last)
            if attempt < attempts:
                self._sleep(delay)
        raise PushFailed(attempts, last)


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _diagnostics(response: httpx.Response) -> str:
    data = _json(response)
    if data and data.get("resourceType") == "OperationOutcome":
        issues = [i.get("diagnostics") or i.get("code") or "" for i in data.get("issue", []) if isinstance(i, dict)]
        text = "; ".join(i for i in issues if i)
        if text:
            return text[:500]
    return (response.reason_phrase or "no detail")[:200]


def _retry_after(response: httpx.Response, default: float, cap: float) -> float:
    value = response.headers.get("Retry-After")
    if value is None:
        return default
    try:
        return max(0.0, min(cap, float(value)))
    except ValueError:
        return default


def job_resources(job_id: str, settings: Any) -> ReportResources:
    """A reviewed job's resources, built as the /fhir facade builds them (the configured definitions base)."""
    from libs.fhir import codes
    from libs.fhir.builder import FhirBuildError, build_resources
    from libs.fhir.source import ReportNotAvailable, load_source
    from libs.storage.db import get_engine, session_scope

    try:
        with session_scope(get_engine(settings.sqlalchemy_url)) as session:
            source = load_source(session, job_id)
        if source is None:
            raise PushError(f"no job {job_id}")
        return build_resources(source, codes.Definitions.of(settings))
    except (ReportNotAvailable, FhirBuildError) as exc:
        raise PushError(str(exc)) from exc


def client_for(destination: Any, **kwargs: Any) -> FhirPushClient:
    """The push client of a FhirDestination (its base URL, retries, backoff and timeout)."""
    return FhirPushClient(destination.base_url, retries=destination.retries, backoff_s=destination.backoff_s,
                          timeout_s=destination.timeout_s, **kwargs)


def push_job(job_id: str, settings: Any = None, client: FhirPushClient | None = None,
             destination: Any = None) -> PushResult:
    """Builds a reviewed job's resources and pushes them to one FHIR server: `client`, else `destination`
    (a FhirDestination or the name of a configured one), else the only configured FHIR destination."""
    from libs.core.config import get_settings

    settings = settings or get_settings()
    if client is None:
        configured = list(getattr(settings, "fhir_destinations", []) or [])
        if isinstance(destination, str):
            named = [d for d in configured if d.name == destination]
            if not named:
                raise PushError(f"no FHIR destination named {destination!r}; configured: "
                                f"{', '.join(d.name for d in configured) or 'none'}")
            destination = named[0]
        elif destination is None:
            if not configured:
                raise PushError("no FHIR server configured (CXR_FHIR_DESTINATIONS or CXR_FHIR_PUSH_URL)")
            if len(configured) > 1:
                raise PushError(f"several FHIR destinations are configured; name one of "
                                f"{', '.join(d.name for d in configured)}")
            destination = configured[0]
    resources = job_resources(job_id, settings)
    if client is not None:
        return client.push(resources)
    with client_for(destination) as own:
        return own.push(resources)


def main(argv: list[str] | None = None) -> int:
    from libs.core.config import get_settings

    parser = argparse.ArgumentParser(prog="python -m libs.fhir.push", description=__doc__.splitlines()[0])
    parser.add_argument("job_id")
    parser.add_argument("--destination", help="name of one FHIR destination (default: every configured one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    names = [args.destination] if args.destination else [d.name for d in settings.fhir_destinations]
    if not names:
        print("push failed: no FHIR server configured (CXR_FHIR_DESTINATIONS or CXR_FHIR_PUSH_URL)", file=sys.stderr)
        return 1
    failed = 0
    for name in names:
        try:
            result = push_job(args.job_id, settings, destination=name)
        except Exception as exc:  # noqa: BLE001 - one line for the operator
            print(f"{name}: push failed: {exc}", file=sys.stderr)
            failed += 1
        else:
            print(f"{name}: pushed: HTTP {result.status} after {result.attempts} attempt(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
