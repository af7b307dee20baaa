"""Who may call each route, and what the audit trail records about the call: one rule per route.

Rules are keyed by the route's name (its endpoint function's name). `create_app` refuses to start
when a route has no rule, and tests/gateway/test_access.py generates its cases from this table and
the app's route table, so a new route cannot ship unprotected or unaudited by accident.

`need=None` with `public=True`: no credentials (the liveness/readiness probes only). `need=None`
without `public`: any valid credential (capabilities, API docs, unknown FHIR paths).
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.auth import scopes as s
from libs.auth.scopes import Requirement


@dataclass(frozen=True)
class Rule:
    need: Requirement | None
    action: str  # FHIR AuditEvent.action: C create, R read/search, U update, D delete, E execute
    entity_type: str  # what the audit trail names as the entity
    id_param: str | None = None  # the path parameter holding the entity's id
    public: bool = False
    audit: bool = True  # probes and the metrics scrape are not audited (they carry no patient data)
    search: bool = False  # a search: the audit entity records the query


RULES: dict[str, Rule] = {
    # probes: Kubernetes and load balancers call them without credentials
    "healthz": Rule(None, "E", "System", public=True, audit=False),
    "readyz": Rule(None, "E", "System", public=True, audit=False),
    # operations
    "metrics": Rule(s.READ_METRICS, "R", "Metrics", audit=False),
    "get_job": Rule(s.READ_JOB, "R", "Job", "job_id"),
    "list_dead_letters": Rule(s.SEARCH_JOBS, "R", "Job", search=True),
    "redrive_job": Rule(s.REDRIVE_JOB, "U", "Job", "job_id"),
    "automation_status": Rule(s.READ_AUTOMATION, "R", "Automation"),
    "pause_automation": Rule(s.SWITCH_AUTOMATION, "U", "Automation"),
    "resume_automation": Rule(s.SWITCH_AUTOMATION, "U", "Automation"),
    "alertmanager_webhook": Rule(s.SWITCH_AUTOMATION, "U", "Automation"),
    # PACS
    "stow": Rule(s.STORE_STUDIES, "C", "ImagingStudy"),
    "stow_study": Rule(s.STORE_STUDIES, "C", "ImagingStudy", "study_uid"),
    # EHR (REST)
    "request_report": Rule(s.REQUEST_REPORT, "C", "ImagingStudy", "study_id"),
    "get_report": Rule(s.READ_REPORT, "R", "ImagingStudy", "study_id"),
    # radiologists: feedback on a draft (the same scope signs, later)
    "give_feedback": Rule(s.SIGN_REPORT, "C", "DiagnosticReport", "report_id"),
    "list_feedback": Rule(s.READ_REPORT, "R", "DiagnosticReport", "report_id"),
    # FHIR
    "metadata": Rule(None, "R", "CapabilityStatement"),
    "read_diagnostic_report": Rule(s.READ_REPORT, "R", "DiagnosticReport", "id"),
    "read_diagnostic_report_version": Rule(s.READ_REPORT, "R", "DiagnosticReport", "id"),
    "search_diagnostic_reports": Rule(s.SEARCH_REPORTS, "R", "DiagnosticReport", search=True),
    "read_observation": Rule(s.READ_OBSERVATION, "R", "Observation", "id"),
    "read_provenance": Rule(s.READ_PROVENANCE, "R", "Provenance", "id"),
    "read_device": Rule(s.READ_DEVICE, "R", "Device", "id"),
    "read_audit_event": Rule(s.READ_AUDIT, "R", "AuditEvent", "id"),
    "search_audit_events": Rule(s.SEARCH_AUDIT, "R", "AuditEvent", search=True),
    "fhir_fallback": Rule(None, "R", "Unknown"),
    # the review workstation (ui/workstation): every page needs the radiologist's signing scope
    "workstation_signin_page": Rule(None, "E", "Session", public=True, audit=False),
    "workstation_signin": Rule(None, "E", "Session", public=True, audit=False),  # audited by the route itself
    "workstation_signout": Rule(None, "E", "Session"),
    "workstation_static": Rule(None, "R", "Asset", public=True, audit=False),  # CSS, JS: no data
    "workstation_worklist": Rule(s.SIGN_REPORT, "R", "DiagnosticReport", search=True),
    "workstation_worklist_rows": Rule(s.SIGN_REPORT, "R", "DiagnosticReport", search=True),
    "workstation_study": Rule(s.SIGN_REPORT, "R", "DiagnosticReport", "report_id"),
    "workstation_image": Rule(s.SIGN_REPORT, "R", "DiagnosticReport", "report_id"),
    "workstation_sign": Rule(s.SIGN_REPORT, "C", "DiagnosticReport", "report_id"),
    "workstation_regenerate": Rule(s.SIGN_REPORT, "C", "DiagnosticReport", "report_id"),
    "workstation_correction": Rule(s.SIGN_REPORT, "R", "DiagnosticReport", "report_id"),
    # API documentation (no data, but it maps the attack surface: credentials unless public_api_docs)
    "openapi": Rule(None, "R", "OpenAPI", audit=False),
    "swagger_ui_html": Rule(None, "R", "OpenAPI", audit=False),
    "swagger_ui_redirect": Rule(None, "R", "OpenAPI", audit=False),
    "redoc_html": Rule(None, "R", "OpenAPI", audit=False),
}


def rule_for(name: str) -> Rule | None:
    return RULES.get(name)


def missing_rules(route_names: list[str]) -> list[str]:
    return sorted({n for n in route_names if n not in RULES})
