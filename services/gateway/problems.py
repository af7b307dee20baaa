"""RFC 9457 problem details: every error the gateway returns has this shape.

    {"type": "https://cxr-report.dev/problems/<slug>", "title": ..., "status": ...,
     "detail": <a PHI-free reason>, "instance": <request path>}

served as `application/problem+json`. Routes raise `ProblemError`; the handlers below also turn
FastAPI's validation errors, Starlette's routing errors (404/405), our domain errors
(`libs.core.errors`) and a database that cannot be reached (503 with Retry-After: the engine's
pre-ping reconnects once it is back, no restart needed) into problems, so a client only ever has one
error format to parse.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.core.errors import BundleUnavailable, CxrError, InputRejected, NotFound

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://cxr-report.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# Default slug and title per HTTP status, used when a route does not name its own.
_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Invalid request"),
    500: ("internal-error", "Internal server error"),
    503: ("service-unavailable", "Service unavailable"),
}


class Problem(BaseModel):
    """RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI naming the kind of problem", examples=[PROBLEM_BASE + "unknown-study"])
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What went wrong with this request, in one PHI-free sentence")
    instance: str | None = Field(default=None, description="The request path")


class ProblemError(Exception):
    """Raise from a route to answer with a problem; `extra` members are added to the body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        default_slug, default_title = _DEFAULTS.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.slug = slug or default_slug
        self.title = title or default_title
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    request: Request | None,
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    default_slug, default_title = _DEFAULTS.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else None,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _from_problem_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        request, exc.status, exc.detail, slug=exc.slug, title=exc.title, headers=exc.headers, **exc.extra
    )


def _from_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else _DEFAULTS.get(status, ("", "Error"))[1]
    if status == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    elif status == 405 and detail == "Method Not Allowed":
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(request, status, detail, headers=getattr(exc, "headers", None))


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc) or "request"


def _from_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = first.get("ctx") or {}
        reason = ctx.get("error") or first.get("msg", "invalid JSON")
        return problem_response(
            request, 400, f"the request body is not valid JSON: {reason}", slug="malformed-json",
            title="Malformed JSON",
        )
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    detail = f"{_location(first.get('loc', ()))}: {first.get('msg', 'invalid value')}"
    # Input values are left out on purpose: a body may carry clinical context.
    summary = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    return problem_response(request, 422, detail, errors=summary)


def _from_cxr_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CxrError)
    if isinstance(exc, InputRejected):
        return problem_response(request, 422, exc.reason, slug="input-rejected", title="Input rejected")
    if isinstance(exc, NotFound):
        return problem_response(request, 404, exc.reason)
    if isinstance(exc, BundleUnavailable):
        return problem_response(request, 503, exc.reason, slug="bundle-unavailable", title="Model bundle unavailable")
    return problem_response(request, 500, exc.reason)


DATABASE_RETRY_AFTER_S = "5"


def database_problem(exc: BaseException) -> ProblemError | None:
    """The 503 for a database that cannot be reached, or None when `exc` is something else.

    OperationalError (refused, timed out, server gone), InterfaceError (the connection is closed) and
    any DBAPIError that invalidated its connection (a disconnect mid-query) are outages: retrying later
    helps. Other DBAPIErrors (integrity, programming errors) are bugs and stay 500s. Shared with the
    FHIR routes (routes/fhir.py), which answer the same as an OperationOutcome.
    """
    outage = isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated))
    if not outage:
        return None
    return ProblemError(503, "database unavailable: the request could not be completed, retry later",
                        slug="database-unavailable", title="Database unavailable",
                        headers={"Retry-After": DATABASE_RETRY_AFTER_S})


def _from_database_error(request: Request, exc: Exception) -> JSONResponse:
    problem = database_problem(exc)
    if problem is None:
        return _from_unexpected(request, exc)
    # One line, no SQL: the statement's parameters would only add ids to the log.
    log.warning("database unavailable on %s %s (%s)", request.method, request.url.path, type(exc).__name__)
    return _from_problem_error(request, problem)


def _from_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Errors raised before routing (the authentication middleware reading API keys) arrive here, past
    # the specific handlers: a database outage is still a 503, not a 500.
    if database_problem(exc) is not None:
        return _from_database_error(request, exc)
    # The traceback goes to the log (it holds code paths and UIDs, no patient data); the client
    # gets a generic sentence.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, "the server failed to handle this request; see the server log")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _from_problem_error)
    app.add_exception_handler(StarletteHTTPException, _from_http_exception)
    app.add_exception_handler(RequestValidationError, _from_validation_error)
    app.add_exception_handler(CxrError, _from_cxr_error)
    app.add_exception_handler(DBAPIError, _from_database_error)
    app.add_exception_handler(Exception, _from_unexpected)


def problem_responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring problem bodies for the given statuses."""
    descriptions = descriptions or {}
    return {
        status: {
            "model": Problem,
            "description": descriptions.get(status, _DEFAULTS.get(status, ("", "Error"))[1]),
        }
        for status in statuses
    }
