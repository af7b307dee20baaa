"""The gateway application: REST API for report jobs, DICOMweb STOW-RS intake, health probes.

`create_app(settings)` builds an app bound to those settings (tests pass their own); the schema
is migrated at start-up (lifespan), and the pipeline publisher is closed at shutdown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from libs.core.config import Settings, get_settings
from libs.observability.http import HttpMetricsMiddleware
from libs.observability.pipeline import pipeline_registry
from libs.pipeline.context import PipelineContext
from libs.storage.db import get_engine, upgrade_schema
from services.gateway.api.access import missing_rules, rule_for
from services.gateway.api.main import api_router
from services.gateway.api.routes.fhir import router as fhir_router
from services.gateway.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from services.gateway.publish import make_publisher
from services.gateway.routing import leaf_routes, route_template
from services.gateway.security import Authenticator, SecurityMiddleware
from ui.workstation import STATIC as WORKSTATION_STATIC
from ui.workstation import router as workstation_router

log = logging.getLogger(__name__)

DESCRIPTION = """\
Drafts **preliminary** chest X-ray reports (research software, not a medical device): every report
is for a radiologist to review and finalise.

1. Store the study's images with DICOMweb STOW-RS: `POST /dicomweb/studies`.
2. Ask for a report: `POST /api/v1/studies/{study_id}/report` → 202 with a job id.
3. Read it: `GET /api/v1/studies/{study_id}/report?wait=30`.
4. Or read it as FHIR R4: `GET /fhir/DiagnosticReport/{report_id}` (status `preliminary`), search
   `GET /fhir/DiagnosticReport?imaging-study=<study uid>`, capabilities at `GET /fhir/metadata`.

Every endpoint except `/healthz` and `/readyz` needs credentials: an OAuth2 bearer JWT from the
configured issuer, or an API key (`X-API-Key`), with the scope the operation names (docs/security.md).
Missing or invalid credentials: 401; a valid caller without the scope: 403.

Errors are RFC 9457 problem details (`application/problem+json`), except under /fhir, where they are
FHIR OperationOutcomes (`application/fhir+json`).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = get_engine(settings.sqlalchemy_url)
    ctx = PipelineContext(settings=settings, engine=engine)
    publisher = make_publisher(settings, ctx)
    authenticator = Authenticator(settings, engine)  # a bad OIDC setting fails here, at start

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(upgrade_schema, engine)
        if settings.auth_disabled:
            log.warning("AUTHENTICATION IS SWITCHED OFF (CXR_AUTH_DISABLED=true): every endpoint answers "
                        "anonymous clients, and the audit trail records them as 'anonymous'. Never run a "
                        "gateway reachable by others like this.")
        log.info("gateway ready: database %s, queue %s, bundle %s",
                 engine.url.render_as_string(hide_password=True), settings.queue_backend, settings.bundle_path)
        watcher = None
        if settings.auto_report_on_stable:
            # Studies pushed with STOW-RS get a job once no instance arrived for stable_study_age_s.
            from libs.dicomweb.stable import StableStudyWatcher

            watcher = StableStudyWatcher(engine, settings, publisher.publish)
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                await watcher.stop()
            await run_in_threadpool(publisher.close)

    app = FastAPI(
        title="cxr-report gateway",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.pipeline = ctx
    app.state.publisher = publisher
    celery = settings.queue_backend.strip().lower() == "celery"
    app.state.pipeline_registry = pipeline_registry(engine, settings.redis_url if celery else None,
                                                     settings.feedback_window_days)
    install_problem_handlers(app)
    app.include_router(api_router)
    app.include_router(fhir_router)  # /fhir: FHIR R4 read access; its errors are OperationOutcomes
    # The radiologists' review workstation (ui/workstation): pages under /workstation, its assets.
    app.include_router(workstation_router)
    app.mount("/workstation/static", StaticFiles(directory=WORKSTATION_STATIC), name="workstation_static")
    app.state.authenticator = authenticator
    missing = missing_rules([r.name for r in leaf_routes(app.routes)])
    if missing:  # a route without an access rule would be served to anyone: refuse to start
        raise RuntimeError(f"routes without an access rule in services/gateway/api/access.py: {', '.join(missing)}")
    app.add_middleware(SecurityMiddleware, settings=settings, engine=engine, authenticator=authenticator)
    # Added last = outermost: it times and counts every answer, the security middleware's refusals too.
    app.add_middleware(HttpMetricsMiddleware, route_of=route_template)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with error responses declared as application/problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if not str(status).isdigit() or int(status) < 400:
                    continue
                content = response.setdefault("content", {})
                if int(status) == 422:
                    # FastAPI's HTTPValidationError is not what we send: validation errors are problems.
                    content.pop("application/json", None)
                    content[PROBLEM_MEDIA_TYPE] = {"schema": problem_ref}
                elif content.get("application/json", {}).get("schema") == problem_ref:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    _declare_security(app, schema)
    app.openapi_schema = schema
    return schema


SECURITY_SCHEMES: dict[str, Any] = {
    "bearerJWT": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                  "description": "OAuth2 access token (RS256/ES256) from the configured issuer, with SMART scopes"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "An API key from `cxr-report apikey create` (also accepted as `Authorization: Bearer <key>`)"},
}


def _declare_security(app: FastAPI, schema: dict[str, Any]) -> None:
    """Each operation's credentials and scope, and its 401/403 answers, from services/gateway/api/access.py."""
    schema["components"]["securitySchemes"] = SECURITY_SCHEMES
    names = {(route.path, method.lower()): route.name
             for route in leaf_routes(app.routes) if hasattr(route, "methods") for method in (route.methods or ())}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            rule = rule_for(names.get((path, method), ""))
            if rule is None or rule.public:
                operation["security"] = []
                continue
            operation["security"] = [{"bearerJWT": []}, {"apiKey": []}]
            fhir = path.startswith("/fhir")
            media = "application/fhir+json" if fhir else PROBLEM_MEDIA_TYPE
            body = {"schema": {"type": "object"}} if fhir else {"schema": {"$ref": "#/components/schemas/Problem"}}
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "Missing or invalid credentials", "content": {media: body}})
            responses.setdefault("503", {"description": "The database or the audit trail is unavailable; retry later",
                                         "content": {media: body}})
            if rule.need is not None:
                operation["description"] = (operation.get("description", "") +
                                            f"\n\nRequires the scope `{rule.need}`.").strip()
                responses.setdefault("403", {"description": f"The caller lacks the scope {rule.need}",
                                             "content": {media: body}})
