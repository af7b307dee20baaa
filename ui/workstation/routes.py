"""The review workstation's pages: sign-in, worklist, study page, and the sign / reject actions.

Server-rendered (Jinja2) with htmx for the parts that change in place (the worklist refreshes
itself; actions answer with the next state of the page): no build step, nothing loaded from a
CDN (htmx is vendored from its npm package, static/vendor), and every page works as plain HTML
forms too. Access: every page needs the radiologist's signing scope (services/gateway/api/access.py);
the browser carries it as the session cookie of libs/auth/sessions.py, and every form carries the
session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from libs.audit.trail import AuditRecord, append
from libs.auth import sessions
from libs.auth.principal import AuthenticationFailed
from libs.auth.scopes import SIGN_REPORT, grants
from libs.domain.feedback import FeedbackIn, FindingCorrection
from libs.domain.report import Report
from libs.feedback import corrections
from libs.feedback import record as feedback
from libs.storage.db import session_scope
from libs.storage.models import InstanceRow, JobRow
from services.gateway.api.deps import EngineDep, PrincipalDep, SettingsDep, audit_entity
from services.gateway.publish import PublishFailed, deliver_version, send_regenerate
from ui.workstation import images, worklist

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
SESSION_TTL = dt.timedelta(hours=10)  # a reading shift


def _session(request: Request, engine: EngineDep) -> sessions.Session | None:
    token = request.cookies.get(sessions.COOKIE)
    if not token:
        return None  # a caller with an API key header (scripts, tests): no forms, no CSRF
    try:
        return sessions.resolve(engine, token)
    except AuthenticationFailed:
        return None


SessionDep = Annotated[sessions.Session | None, Depends(_session)]


def _check_csrf(session: sessions.Session | None, presented: str | None) -> None:
    from services.gateway.problems import ProblemError

    if session is not None and not sessions.csrf_ok(session, presented):
        raise ProblemError(403, "the form's CSRF token does not match this session: reload the page",
                           slug="csrf", title="Form expired")


def _page(request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"  # patient data: never cached by the browser
    response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                                   "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# ---- sign-in ---------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/workstation") and "//" not in target else "/workstation"


def _token_expiry(token: str) -> dt.datetime | None:
    """A JWT session ends when its token does (the token was verified just before)."""
    import jwt

    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return dt.datetime.fromtimestamp(exp, dt.timezone.utc) if isinstance(exp, int | float) else None


@router.get("/workstation/signin", name="workstation_signin_page", response_class=HTMLResponse)
def workstation_signin_page(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    return _page(request, "signin.html", {"next": _safe_next(next), "error": None})


@router.post("/workstation/signin", name="workstation_signin")
def workstation_signin(request: Request, engine: EngineDep, settings: SettingsDep,
                       credential: Annotated[str, Form(max_length=4096)] = "",
                       next: Annotated[str, Form(max_length=500)] = "/workstation") -> Response:  # noqa: A002
    """Checks the credential like an API call would; a radiologist's gets a session cookie."""
    authenticator = request.app.state.authenticator
    source = request.client.host if request.client else None
    error, principal = None, None
    try:
        principal = authenticator.authenticate({"authorization": f"Bearer {credential.strip()}"})
    except AuthenticationFailed as exc:
        error = exc.reason
    if principal is not None and not grants(principal.scopes, SIGN_REPORT):
        error = "this credential does not grant signing reports: the workstation is for radiologists"
    append(engine, AuditRecord(
        agent_type=principal.kind if principal else "anonymous", agent_id=principal.id if principal else "unauthenticated",
        action="E", outcome="0" if error is None else "4", entity_type="Session", entity_id=None,
        operation="workstation_signin", source_address=source, http_status=303 if error is None else 401,
        detail=error))
    if error is not None or principal is None:
        return _page(request, "signin.html", {"next": _safe_next(next), "error": error}, status=401)
    not_after = _token_expiry(credential.strip()) if principal.kind == "jwt" else None
    token, session = sessions.start(engine, principal, SESSION_TTL, not_after)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(sessions.COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), path="/workstation",
                        httponly=True, samesite="strict",
                        secure=bool(settings.tls_certfile) or request.url.scheme == "https")
    return response


@router.post("/workstation/signout", name="workstation_signout")
def workstation_signout(request: Request, engine: EngineDep, session: SessionDep,
                        csrf: Annotated[str, Form()] = "") -> Response:
    _check_csrf(session, csrf)
    token = request.cookies.get(sessions.COOKIE)
    if token:
        sessions.end(engine, token)
    response = RedirectResponse("/workstation/signin", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/workstation")
    return response


# ---- worklist --------------------------------------------------------------------------------

def _filters(principal_id: str, flagged: bool, status: str, mine: bool, modality: str | None, view: str | None,
             since: dt.date | None, until: dt.date | None) -> worklist.Filters:
    return worklist.Filters(flagged=flagged, status=status if status in ("all", "unread", "read") else "unread",
                            mine=principal_id if mine else None, modality=modality or None, view=view or None,
                            since=since, until=until)


FilterArgs = dict


def _filter_query(flagged: bool = False, status: str = "unread", mine: bool = False,
                  modality: Annotated[str | None, Query(pattern=r"^(CR|DX)?$")] = None,
                  view: Annotated[str | None, Query(pattern=r"^[A-Z]{0,16}$")] = None,
                  since: dt.date | None = None, until: dt.date | None = None) -> FilterArgs:
    return {"flagged": flagged, "status": status, "mine": mine, "modality": modality, "view": view,
            "since": since, "until": until}


@router.get("/workstation", name="workstation_worklist", response_class=HTMLResponse)
def workstation_worklist(request: Request, engine: EngineDep, principal: PrincipalDep, session: SessionDep,
                         args: Annotated[FilterArgs, Depends(_filter_query)]) -> HTMLResponse:
    items = worklist.rows(engine, _filters(principal.id, **args))
    return _page(request, "worklist.html", {"rows": items, "args": args, "principal": principal,
                                            "csrf": session.csrf_token if session else ""})


@router.get("/workstation/worklist/rows", name="workstation_worklist_rows", response_class=HTMLResponse)
def workstation_worklist_rows(request: Request, engine: EngineDep, principal: PrincipalDep,
                              args: Annotated[FilterArgs, Depends(_filter_query)]) -> HTMLResponse:
    """The table body alone: what the worklist page polls every few seconds."""
    items = worklist.rows(engine, _filters(principal.id, **args))
    return _page(request, "_rows.html", {"rows": items})


# ---- study page ------------------------------------------------------------------------------

def _load(engine, report_id: str) -> tuple[JobRow, Report, InstanceRow | None]:  # noqa: ANN001
    from services.gateway.problems import ProblemError

    job_id = report_id[len(feedback.REPORT_PREFIX):] if report_id.startswith(feedback.REPORT_PREFIX) else ""
    with session_scope(engine) as db:
        job = db.get(JobRow, job_id) if job_id and len(job_id) <= 36 else None
        if job is None or not job.report:
            raise ProblemError(404, f"no drafted report {report_id}", slug="unknown-report", title="Unknown report")
        instance = db.get(InstanceRow, job.instance_uid) if job.instance_uid else None
        db.expunge(job)
        if instance is not None:
            db.expunge(instance)
    return job, Report.model_validate(job.report), instance


@router.get("/workstation/reports/{report_id}", name="workstation_study", response_class=HTMLResponse)
def workstation_study(report_id: str, request: Request, engine: EngineDep, principal: PrincipalDep,
                      session: SessionDep) -> HTMLResponse:
    job, report, instance = _load(engine, report_id)
    audit_entity(request, "DiagnosticReport", report_id)
    history = feedback.history(engine, report_id)
    context = job.request.get("clinical_context") or {}
    findings = {f.label: f for f in report.findings}
    queue = [r.report_id for r in worklist.rows(engine, worklist.Filters(status="unread"))]
    following = next((r for r in queue if r != report_id), None)
    return _page(request, "study.html", {
        "job": job, "report": report, "instance": instance, "history": history, "context": context,
        "findings": findings, "csrf": session.csrf_token if session else "", "next_report": following,
        "rows": instance.rows if instance else None, "columns": instance.columns if instance else None,
        "patient": dict(zip(("name", "id", "study_date"), worklist.patient_header(instance.path if instance else None))),
        "principal": principal,
    })


@router.get("/workstation/reports/{report_id}/image.png", name="workstation_image")
def workstation_image(report_id: str, request: Request, engine: EngineDep, settings: SettingsDep,
                      max_side: Annotated[int, Query(ge=256, le=4096)] = images.DEFAULT_MAX_SIDE) -> Response:
    from services.gateway.problems import ProblemError

    job, _, instance = _load(engine, report_id)
    audit_entity(request, "DiagnosticReport", report_id)
    if instance is None or not Path(instance.path).is_file():
        raise ProblemError(404, "the image this report was drafted from is no longer stored", slug="no-image",
                           title="Image not stored")
    data = images.cached_png(settings.data_dir, job.id, Path(instance.path), max_side)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


# ---- actions ---------------------------------------------------------------------------------

def _calls(report: Report, form: dict[str, str]) -> tuple[list[FindingCorrection], list[str]]:
    """The radiologist's call on each assessed observation (radio `call:<label>` present / absent,
    `side:<label>`, `severity:<label>`), and which of them differ from the head's."""
    assessed = report.observations or []
    findings = {f.label: f for f in report.findings}
    calls, changed = [], []
    for obs in assessed:
        value = form.get(f"call:{obs.label}", "present" if obs.present else "absent")
        present = value == "present"
        side = form.get(f"side:{obs.label}") or (findings[obs.label].laterality if obs.label in findings else None)
        severity = form.get(f"severity:{obs.label}") or (findings[obs.label].severity if obs.label in findings else None)
        calls.append(FindingCorrection(observation=obs.label, present=present,
                                       laterality=side if present else None, severity=severity if present else None))
        model_side = findings[obs.label].laterality if obs.label in findings else None
        model_severity = findings[obs.label].severity if obs.label in findings else None
        if present != obs.present or (present and (side != model_side or severity != model_severity)):
            changed.append(obs.label)
    return calls, changed


def _normal(text: str) -> str:
    return " ".join(text.split())


@router.post("/workstation/reports/{report_id}/sign", name="workstation_sign")
async def workstation_sign(report_id: str, request: Request, background: BackgroundTasks, engine: EngineDep,
                           settings: SettingsDep, principal: PrincipalDep, session: SessionDep) -> Response:
    """`action` sign (accepted when the text is the draft's, edited otherwise) or reject (with a
    reason): stored as the report's next feedback version; the draft itself is never changed."""
    from services.gateway.problems import ProblemError

    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    _check_csrf(session, form.get("csrf"))
    _, report, _ = _load(engine, report_id)
    audit_entity(request, "DiagnosticReport", report_id)
    calls, changed = _calls(report, form)
    action = form.get("action")
    if action == "reject":
        body = {"decision": "rejected", "reason": form.get("reason", ""),
                "corrections": [c for c in calls if c.observation in changed]}
    elif action == "sign":
        final = f"{form.get('findings_text', '').strip()}\n\n{form.get('impression', '').strip()}".strip()
        edited = _normal(final) != _normal(feedback.draft_text(report))
        body = {"decision": "edited" if edited else "accepted", "final_text": final if edited else None,
                "corrections": calls}
    else:
        raise ProblemError(422, "action must be sign or reject", slug="bad-action", title="Unknown action")
    if form.get("rating"):  # the draft's usefulness, 1-5: the canary comparison weighs it (docs/lifecycle.md)
        body["rating"] = form["rating"]
    try:
        stored = feedback.record(engine, report_id, FeedbackIn.model_validate(body), principal)
    except ValidationError as exc:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ProblemError(422, message, slug="invalid-feedback", title="Feedback not valid") from None
    except feedback.NotAssessed as exc:
        raise ProblemError(422, str(exc), slug="not-assessed", title="Observation not assessed") from None
    # The verdict is the report's next version: delivered to the PACS, RIS and FHIR destinations.
    deliver_version(settings, request.app.state.pipeline, background,
                    report_id.removeprefix(feedback.REPORT_PREFIX), stored.version + 1)
    target = f"/workstation/reports/{report_id}?signed={stored.version}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


# ---- correction: the draft written again from the radiologist's calls ------------------------

REGENERATION_PATIENCE = dt.timedelta(minutes=2)  # then the page stops waiting and says so


@router.post("/workstation/reports/{report_id}/regenerate", name="workstation_regenerate", response_class=HTMLResponse)
async def workstation_regenerate(report_id: str, request: Request, background: BackgroundTasks, engine: EngineDep,
                                 settings: SettingsDep, principal: PrincipalDep, session: SessionDep) -> Response:
    """The calls of the form that differ from the head's, stored as a correction and regenerated by the
    model; answers the fragment that waits for the regenerated draft."""
    from services.gateway.problems import ProblemError

    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    _check_csrf(session, form.get("csrf"))
    _, report, _ = _load(engine, report_id)
    audit_entity(request, "DiagnosticReport", report_id)
    calls, changed = _calls(report, form)
    try:
        stored = corrections.request(engine, report_id, [c for c in calls if c.observation in changed], principal)
    except (ValueError, feedback.NotAssessed, feedback.NoReportYet) as exc:
        raise ProblemError(422, str(exc), slug="nothing-to-regenerate", title="Nothing to regenerate") from None
    try:
        send_regenerate(settings, request.app.state.pipeline, background, stored.id)
    except PublishFailed as exc:
        raise ProblemError(503, f"{exc}: try again shortly", slug="queue-unavailable", title="Queue unavailable") from None
    return _correction_fragment(request, report, stored)


@router.get("/workstation/reports/{report_id}/corrections/{correction_id}", name="workstation_correction",
            response_class=HTMLResponse)
def workstation_correction(report_id: str, correction_id: str, request: Request, engine: EngineDep) -> Response:
    from services.gateway.problems import ProblemError

    _, report, _ = _load(engine, report_id)
    audit_entity(request, "DiagnosticReport", report_id)
    try:
        stored = corrections.get(engine, correction_id, report_id.removeprefix(feedback.REPORT_PREFIX))
    except corrections.UnknownCorrection:
        raise ProblemError(404, f"no correction {correction_id} of {report_id}", slug="unknown-correction",
                           title="Unknown correction") from None
    return _correction_fragment(request, report, stored)


def _correction_fragment(request: Request, report: Report, stored: corrections.Correction) -> HTMLResponse:
    waited = dt.datetime.now(dt.timezone.utc) - stored.created_at
    context = {"report": report, "correction": stored, "stale": stored.state == corrections.PENDING
               and waited > REGENERATION_PATIENCE}
    if stored.draft is not None:
        context["findings_diff"] = corrections.word_diff(report.findings_text, stored.draft.findings_text)
        context["impression_diff"] = corrections.word_diff(report.impression, stored.draft.impression)
    return _page(request, "_correction.html", context)
