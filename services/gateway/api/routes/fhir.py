"""Read-only FHIR R4 facade over reviewed reports and the audit trail (docs/fhir.md, docs/security.md).

    GET /fhir/metadata                                   CapabilityStatement
    GET /fhir/DiagnosticReport/{id}                      id = the report_id of the REST API ("rpt-<job id>")
    GET /fhir/DiagnosticReport?subject=&imaging-study=   searchset Bundle (+ _include=DiagnosticReport:result)
    GET /fhir/Observation/{id}                           one assessed observation (positive or negative)
    GET /fhir/Device/{id}, GET /fhir/Provenance/{id}     the model, and the AI authorship record
    GET /fhir/AuditEvent/{id}, GET /fhir/AuditEvent?date=&agent=&entity=   the audit trail (ops scope)

Bodies are `application/fhir+json`. Every error under /fhir, routing errors included, is an
OperationOutcome (FHIR clients do not parse the problem+json the rest of the API uses): the route class
below turns exceptions into one, and a catch-all route answers unknown paths (404) and methods (405).
Only reviewed jobs have resources; a job still running or failed answers 404 with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.audit import trail as audit_trail
from libs.core.errors import CxrError
from libs.fhir import codes, to_json
from libs.fhir.builder import (
    FhirBuildError,
    ReportResources,
    build_device,
    build_resources,
    job_id_of_report,
    parse_observation_id,
    parse_provenance_id,
    searchset,
)
from libs.fhir.audit import audit_event, parse_event_id as parse_audit_id
from libs.fhir.audit import event_id as audit_event_id
from libs.fhir.capability import capability_statement
from libs.fhir.outcome import operation_outcome
from libs.fhir.source import NoSuchVersion, ReportNotAvailable, find_model, load_source, search_sources
from libs.storage.db import session_scope
from libs.auth import scopes
from libs.auth.principal import ANONYMOUS
from services.gateway.api.deps import EngineDep, get_principal
from services.gateway.problems import ProblemError, database_problem

log = logging.getLogger(__name__)

FHIR_MEDIA_TYPE = "application/fhir+json"
_JSON_FORMATS = {"json", "application/json", FHIR_MEDIA_TYPE, "application/json+fhir"}
_PSEUDONYM = re.compile(r"^study-[0-9a-f]{32}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
DEFAULT_COUNT = 50
MAX_COUNT = 200


class FhirResponse(JSONResponse):
    media_type = FHIR_MEDIA_TYPE


class FhirError(Exception):
    def __init__(self, status: int, diagnostics: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code
        self.headers = headers or {}


def outcome_response(status: int, diagnostics: str, code: str | None = None,
                     headers: dict[str, str] | None = None) -> FhirResponse:
    return FhirResponse(operation_outcome(status, diagnostics, code=code), status_code=status, headers=headers)


def _from_exception(request: Request, exc: Exception) -> FhirResponse:
    if isinstance(exc, FhirError):
        return outcome_response(exc.status, exc.diagnostics, exc.code, exc.headers)
    if isinstance(exc, ProblemError):  # raised by shared code (authentication, the database handler)
        return outcome_response(exc.status, exc.detail, headers=exc.headers)
    if isinstance(exc, RequestValidationError):
        first = next(iter(exc.errors()), {"loc": (), "msg": "invalid request"})
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return outcome_response(400, f"{where}: {first.get('msg', 'invalid value')}")
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return outcome_response(exc.status_code, detail)
    if isinstance(exc, CxrError):
        return outcome_response(422, exc.reason)
    if (problem := database_problem(exc)) is not None:  # an outage: 503 transient, Retry-After
        log.warning("database unavailable on %s %s (%s)", request.method, request.url.path, type(exc).__name__)
        return outcome_response(problem.status, problem.detail, headers=problem.headers)
    # The traceback goes to the log (code paths and UIDs, no patient data); the client gets a sentence.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return outcome_response(500, "the server failed to handle this request; see the server log")


class FhirRoute(APIRoute):
    """Answers every error of its endpoint with an OperationOutcome instead of a problem."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except Exception as exc:  # noqa: BLE001 - every error becomes an OperationOutcome
                return _from_exception(request, exc)

        return handler


router = APIRouter(prefix="/fhir", tags=["fhir"], route_class=FhirRoute)

_OK = {"description": "FHIR resource", "content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}}}
_OUTCOME = {"description": "OperationOutcome", "content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}}}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {200: _OK, **{s: _OUTCOME for s in statuses}}


# Handlers read the id from request.path_params (a declared parameter would make FastAPI document a
# problem+json 422 that /fhir never sends), so the path parameter is declared here for OpenAPI.
_ID_PARAM = {"parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
                             "description": "The resource's logical id"}]}


def fhir_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def definitions(request: Request) -> codes.Definitions:
    """The project's extension / code-system URLs under the configured CXR_FHIR_DEFINITIONS_BASE_URL."""
    return codes.Definitions.of(getattr(request.app.state, "settings", None))


def _check_format(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt.split(";")[0].strip().lower() not in _JSON_FORMATS:
        raise FhirError(406, f"_format {fmt!r} is not supported: this server speaks JSON only", "not-supported")


def _resource(resource: Any) -> FhirResponse:
    return FhirResponse(to_json(resource))


def _load(engine, report_id: str, defs: codes.Definitions, version: int | None = None) -> ReportResources:  # noqa: ANN001
    job_id = job_id_of_report(report_id)
    if job_id is None:
        raise FhirError(404, f"no DiagnosticReport {report_id}")
    with session_scope(engine) as session:
        try:
            source = load_source(session, job_id, version)
        except ReportNotAvailable as exc:
            raise FhirError(404, f"DiagnosticReport {report_id} is not available: {exc}") from None
        except NoSuchVersion as exc:
            raise FhirError(404, f"DiagnosticReport {report_id}: {exc}") from None
    if source is None:
        raise FhirError(404, f"no DiagnosticReport {report_id}")
    try:
        return build_resources(source, defs)
    except FhirBuildError as exc:
        log.error("FHIR build failed for %s: %s", report_id, exc)
        raise FhirError(500, f"the resources of {report_id} could not be built; see the server log") from None


@router.get("/metadata", summary="CapabilityStatement", response_class=FhirResponse, responses=_responses(406))
def metadata(request: Request) -> FhirResponse:
    _check_format(request)
    return FhirResponse(capability_statement(fhir_base(request), defs=definitions(request)))


@router.get("/DiagnosticReport/{id}", summary="Read a DiagnosticReport (its latest version)", response_class=FhirResponse,
            responses=_responses(404, 406), openapi_extra=_ID_PARAM)
def read_diagnostic_report(request: Request, engine: EngineDep) -> FhirResponse:
    _check_format(request)
    return _resource(_load(engine, request.path_params["id"], definitions(request)).diagnostic_report)


@router.get("/DiagnosticReport/{id}/_history/{vid}", summary="Read one version of a DiagnosticReport (vread)",
            response_class=FhirResponse, responses=_responses(404, 406),
            openapi_extra={"parameters": [*_ID_PARAM["parameters"], {
                "name": "vid", "in": "path", "required": True, "schema": {"type": "string"},
                "description": "1: the AI draft (preliminary); then one per radiologist verdict (final or cancelled)"}]})
def read_diagnostic_report_version(request: Request, engine: EngineDep) -> FhirResponse:
    """The report as it was in version `vid` (its meta.versionId): drafts are never overwritten, so every
    version can be read again."""
    _check_format(request)
    vid = request.path_params["vid"]
    if not vid.isdigit() or len(vid) > 9:
        raise FhirError(404, f"no version {vid!r} of DiagnosticReport {request.path_params['id']}: versions are 1, 2, ...")
    return _resource(_load(engine, request.path_params["id"], definitions(request), int(vid)).diagnostic_report)


@router.get("/Observation/{id}", summary="Read an assessed-observation Observation", response_class=FhirResponse,
            responses=_responses(404, 406), openapi_extra=_ID_PARAM)
def read_observation(request: Request, engine: EngineDep) -> FhirResponse:
    _check_format(request)
    resource_id = request.path_params["id"]
    parsed = parse_observation_id(resource_id)
    if parsed is None:
        raise FhirError(404, f"no Observation {resource_id}")
    resources = _load(engine, parsed[0], definitions(request))
    for observation in resources.observations:
        if observation.id == resource_id:
            return _resource(observation)
    raise FhirError(404, f"no Observation {resource_id}: the model does not assess {parsed[1]}")


@router.get("/Provenance/{id}", summary="Read the AI authorship Provenance of a report", response_class=FhirResponse,
            responses=_responses(404, 406), openapi_extra=_ID_PARAM)
def read_provenance(request: Request, engine: EngineDep) -> FhirResponse:
    _check_format(request)
    resource_id = request.path_params["id"]
    report_id = parse_provenance_id(resource_id)
    if report_id is None:
        raise FhirError(404, f"no Provenance {resource_id}")
    return _resource(_load(engine, report_id, definitions(request)).provenance)


@router.get("/Device/{id}", summary="Read the Device (model name and version) that drafted reports",
            response_class=FhirResponse, responses=_responses(404, 406), openapi_extra=_ID_PARAM)
def read_device(request: Request, engine: EngineDep) -> FhirResponse:
    _check_format(request)
    resource_id = request.path_params["id"]
    with session_scope(engine) as session:
        model = find_model(session, resource_id)
    if model is None:
        raise FhirError(404, f"no Device {resource_id}")
    return _resource(build_device(*model))


def _may_read_observations(request: Request) -> bool:
    principal = get_principal(request)
    return principal is ANONYMOUS or scopes.grants(principal.scopes, scopes.READ_OBSERVATION)


def _subject_pseudonym(values: list[tuple[str, str]], subject_system: str) -> tuple[bool, str | None]:
    """(given, pseudonym) from subject= / subject:identifier=; pseudonym None when it cannot match."""
    if not values:
        return False, None
    found: set[str | None] = set()
    for name, value in values:
        value = value.strip()
        if name == "subject:identifier":
            system, _, ident = value.rpartition("|")
            if system and system != subject_system:
                found.add(None)
                continue
            value = ident
        elif value.startswith("Patient/"):
            value = value[len("Patient/"):]
        found.add(value if _PSEUDONYM.match(value) else None)
    return True, (found.pop() if len(found) == 1 else None)


def _study_uid(values: list[str]) -> tuple[bool, str | None]:
    if not values:
        return False, None
    found: set[str | None] = set()
    for value in values:
        system, _, uid = value.strip().rpartition("|")
        if system and system != codes.DICOM_UID:
            found.add(None)
            continue
        uid = uid.removeprefix("urn:oid:")
        found.add(uid if _UID.match(uid) and len(uid) <= 64 else None)
    return True, (found.pop() if len(found) == 1 else None)


_SUPPORTED = {"subject", "subject:identifier", "imaging-study", "_include", "_count", "_format"}
# What the handlers accept, declared exactly, so a client (or a fuzzer) knows what is valid.
_FORMAT_SCHEMA = {"type": "string", "enum": sorted(_JSON_FORMATS)}
_COUNT_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 10**9}
_SEARCH_PARAMS = {"parameters": [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("subject", {"type": "string"}, "The subject pseudonym, or Patient/<pseudonym>"),
        ("subject:identifier", {"type": "string"}, "<system>|<pseudonym>"),
        ("imaging-study", {"type": "string"}, "Study Instance UID (plain or urn:oid:)"),
        ("_include", {"type": "string"}, "DiagnosticReport:result adds the finding Observations"),
        ("_count", _COUNT_SCHEMA, f"Page size (default {DEFAULT_COUNT}, at most {MAX_COUNT})"),
        ("_format", _FORMAT_SCHEMA, "json only"),
    )
]}


@router.get(
    "/DiagnosticReport",
    summary="Search DiagnosticReports by pseudonymous subject and/or imaging study",
    description="`subject` (the pseudonym, `Patient/<pseudonym>` or `subject:identifier=<system>|<value>`), "
                "`imaging-study` (Study Instance UID, plain or `urn:oid:`), `_include=DiagnosticReport:result`, "
                f"`_count` (default {DEFAULT_COUNT}, at most {MAX_COUNT}). Newest first. Unknown parameters are "
                "ignored unless the request says `Prefer: handling=strict`.",
    response_class=FhirResponse,
    responses=_responses(400, 406),
    openapi_extra=_SEARCH_PARAMS,
)
def search_diagnostic_reports(request: Request, engine: EngineDep) -> FhirResponse:
    _check_format(request)
    items = request.query_params.multi_items()
    strict = "handling=strict" in request.headers.get("prefer", "").replace(" ", "").lower()
    unknown = sorted({name for name, _ in items if name not in _SUPPORTED})
    if unknown and strict:
        raise FhirError(400, f"unsupported search parameter(s): {', '.join(unknown)}; supported: "
                             f"{', '.join(sorted(_SUPPORTED))}", "not-supported")
    count_values = [v for n, v in items if n == "_count"]
    try:
        count = int(count_values[-1]) if count_values else DEFAULT_COUNT
    except ValueError:
        raise FhirError(400, "_count must be a whole number") from None
    if count < 0:
        raise FhirError(400, "_count must not be negative")
    count = min(count, MAX_COUNT)
    includes = {v for n, v in items if n == "_include"}
    include_results = "DiagnosticReport:result" in includes
    if include_results and not _may_read_observations(request):
        raise ProblemError(403, f"_include=DiagnosticReport:result returns Observations: it needs the scope "
                                f"{scopes.READ_OBSERVATION} as well", headers={
                                    "WWW-Authenticate": f'Bearer realm="cxr-report", error="insufficient_scope", '
                                                        f'scope="{scopes.READ_OBSERVATION}"'})
    if strict and includes - {"DiagnosticReport:result"}:
        raise FhirError(400, "only _include=DiagnosticReport:result is supported", "not-supported")

    defs = definitions(request)
    subject_given, pseudonym = _subject_pseudonym([(n, v) for n, v in items if n in ("subject", "subject:identifier")],
                                                  defs.subject_system)
    study_given, study_uid = _study_uid([v for n, v in items if n == "imaging-study"])
    used = [(n, v) for n, v in items if n in _SUPPORTED and n != "_format"]
    self_url = f"{fhir_base(request)}/DiagnosticReport" + (f"?{urlencode(used)}" if used else "")

    sources = []
    if not ((subject_given and pseudonym is None) or (study_given and study_uid is None)) and count > 0:
        with session_scope(engine) as session:
            sources = search_sources(session, study_uid=study_uid, pseudonym=pseudonym, limit=count)
    matches, included = [], []
    for source in sources:
        try:
            resources = build_resources(source, defs)
        except FhirBuildError as exc:
            log.error("FHIR build failed for job %s: %s", source.job_id, exc)
            raise FhirError(500, "a matching report could not be built; see the server log") from None
        matches.append(resources.diagnostic_report)
        if include_results:
            included.extend(resources.observations)
    return _resource(searchset(matches, included, fhir_base(request), self_url))


# ---------------------------------------------------------------- AuditEvent (the audit trail, ops scope)

_AUDIT_SUPPORTED = {"date", "agent", "entity", "entity-type", "action", "outcome", "_count", "_cursor", "_format"}
_DATE_PREFIXES = ("eq", "ge", "gt", "le", "lt")
_DATE_PATTERN = (r"^(eq|ge|gt|le|lt)?[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
                 r"(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$")
_AUDIT_PARAMS = {"parameters": [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("date", {"type": "string", "pattern": _DATE_PATTERN},
         "When it was recorded: [eq|ge|gt|le|lt]YYYY-MM-DD[THH:MM:SS[Z|+hh:mm]]; may be given twice (a range)"),
        ("agent", {"type": "string"}, "Who: <kind>:<id> (jwt:<client>, apikey:<key id>, cli:<user>, anonymous:...) or <id>"),
        ("entity", {"type": "string", "pattern": r"^[A-Za-z]+/.+$"}, "What: <ResourceType>/<id>"),
        ("entity-type", {"type": "string"}, "What kind: a resource type (DiagnosticReport, ImagingStudy, Job, ApiKey, ...)"),
        ("action", {"type": "string", "enum": ["C", "R", "U", "D", "E"]}, "C, R, U, D or E"),
        ("outcome", {"type": "string", "enum": ["0", "4", "8", "12"]}, "0 success, 4 refused, 8 server failure"),
        ("_count", _COUNT_SCHEMA, f"Page size (default {DEFAULT_COUNT}, at most {MAX_COUNT})"),
        ("_cursor", {"type": "integer", "minimum": 0, "maximum": 10**18},
         "Continue after this sequence number (the next link carries it)"),
        ("_format", _FORMAT_SCHEMA, "json only"),
    )
]}


def _parse_instant(value: str) -> tuple[dt.datetime, dt.timedelta]:
    """A FHIR date or dateTime and the precision it names (a day, or one second)."""
    try:
        if len(value) == 10:
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc), dt.timedelta(days=1)
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FhirError(400, f"date {value!r} is not a FHIR date or dateTime (YYYY-MM-DD[THH:MM:SS[Z]])") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed, dt.timedelta(seconds=1)


def _date_range(values: list[str]) -> tuple[dt.datetime | None, dt.datetime | None]:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    for raw in values:
        prefix = raw[:2] if raw[:2] in _DATE_PREFIXES else "eq"
        start, width = _parse_instant(raw[2:] if raw[:2] in _DATE_PREFIXES else raw)
        low, high = {"eq": (start, start + width), "ge": (start, None), "gt": (start + width, None),
                     "le": (None, start + width), "lt": (None, start)}[prefix]
        if low is not None:
            since = low if since is None else max(since, low)
        if high is not None:
            until = high if until is None else min(until, high)
    return since, until


def _one(items: list[tuple[str, str]], name: str) -> str | None:
    values = [v for n, v in items if n == name]
    if len(values) > 1:
        raise FhirError(400, f"{name} may be given once")
    return values[0].strip() if values else None


def _whole(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or len(value) > 18:
        raise FhirError(400, f"{name} must be a whole number")
    return int(value)


@router.get("/AuditEvent/{id}", summary="Read one audit-trail entry", response_class=FhirResponse,
            responses=_responses(404, 406), openapi_extra=_ID_PARAM, tags=["fhir", "audit"])
def read_audit_event(request: Request, engine: EngineDep) -> FhirResponse:
    _check_format(request)
    resource_id = request.path_params["id"]
    seq = parse_audit_id(resource_id)
    row = audit_trail.get(engine, seq) if seq is not None else None
    if row is None:
        raise FhirError(404, f"no AuditEvent {resource_id}")
    return FhirResponse(audit_event(row, definitions(request)))


@router.get(
    "/AuditEvent",
    summary="Search the audit trail by date, agent and entity",
    description="Oldest first; `date` (repeatable, with eq/ge/gt/le/lt prefixes), `agent`, `entity`, "
                "`entity-type`, `action`, `outcome`, `_count`; the `next` link continues the search. "
                "Unknown parameters are refused (an ignored filter would return more than was asked for).",
    response_class=FhirResponse,
    responses=_responses(400, 406),
    openapi_extra=_AUDIT_PARAMS,
    tags=["fhir", "audit"],
)
def search_audit_events(request: Request, engine: EngineDep) -> FhirResponse:
    _check_format(request)
    items = request.query_params.multi_items()
    unknown = sorted({name for name, _ in items if name not in _AUDIT_SUPPORTED})
    if unknown:
        raise FhirError(400, f"unsupported search parameter(s): {', '.join(unknown)}; supported: "
                             f"{', '.join(sorted(_AUDIT_SUPPORTED))}", "not-supported")
    since, until = _date_range([v for n, v in items if n == "date"])
    entity = _one(items, "entity")
    entity_type = _one(items, "entity-type")
    entity_id = None
    if entity:
        entity_type, _, entity_id = entity.partition("/")
        if not entity_id:
            raise FhirError(400, "entity must be <ResourceType>/<id>")
    action, outcome = _one(items, "action"), _one(items, "outcome")
    if action is not None and action not in {"C", "R", "U", "D", "E"}:
        raise FhirError(400, "action must be one of C, R, U, D, E")
    if outcome is not None and outcome not in {"0", "4", "8", "12"}:
        raise FhirError(400, "outcome must be one of 0, 4, 8, 12")
    count = min(_whole(_one(items, "_count"), "_count", DEFAULT_COUNT), MAX_COUNT)
    cursor = _whole(_one(items, "_cursor"), "_cursor", 0)
    query = audit_trail.Query(since=since, until=until, agent=_one(items, "agent"), entity_type=entity_type,
                              entity_id=entity_id, action=action, outcome=outcome, after_seq=cursor,
                              limit=count + 1)
    rows = audit_trail.search(engine, query) if count > 0 else []
    more, rows = len(rows) > count, rows[:count]
    used = [(n, v) for n, v in items if n not in ("_format", "_cursor")]
    base = f"{fhir_base(request)}/AuditEvent"
    self_url = base + (f"?{urlencode(used)}" if used else "")
    defs = definitions(request)
    entries = [{"fullUrl": f"{base}/{audit_event_id(r.seq)}", "resource": audit_event(r, defs), "search": {"mode": "match"}}
               for r in rows]
    links = [{"relation": "self", "url": self_url}]
    if more:
        links.append({"relation": "next", "url": f"{base}?{urlencode([*used, ('_cursor', rows[-1].seq)])}"})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if entries:
        bundle["entry"] = entries
    return FhirResponse(bundle)


_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@router.api_route("", methods=_ALL_METHODS, include_in_schema=False)
@router.api_route("/{path:path}", methods=_ALL_METHODS, include_in_schema=False)
def fhir_fallback(request: Request) -> FhirResponse:
    """Unknown paths under /fhir (404) and methods a path does not take (405), as OperationOutcomes."""
    allowed = sorted({
        method
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint is not fhir_fallback and route.path_regex.match(request.url.path)
        for method in (route.methods or ())
    })
    if allowed:
        raise FhirError(405, f"{request.method} is not allowed on {request.url.path}; this server is read-only",
                        "not-supported", headers={"Allow": ", ".join(allowed)})
    raise FhirError(404, f"no FHIR resource or operation at {request.url.path}", "not-found")
