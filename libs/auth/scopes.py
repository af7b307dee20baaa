"""Scopes in SMART on FHIR syntax (`context/Resource.permissions`), the roles that bundle them, and
the check a route's requirement makes against the scopes a caller holds.

A requirement is one resource and one SMART v2 permission letter (c create, r read, u update,
d delete, s search). Granted scopes may be SMART v1 (`system/DiagnosticReport.read`, `.write`, `.*`)
or v2 (`system/DiagnosticReport.rs`), with `*` as the resource. Only `system/` (backend services:
PACS, EHR integration engines) and `user/` (a signed-in clinician) contexts grant anything here:
this platform has no patient-facing access, so `patient/` scopes are ignored.

Resources that are not FHIR types (Job, Metrics, Automation) name the platform's own operations;
the syntax is the same so one authorisation server can issue every scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
_SCOPE = re.compile(r"^(system|user|patient)/([A-Za-z*]+)\.([a-z*]+)$")
CONTEXTS = ("system", "user")


@dataclass(frozen=True)
class Requirement:
    resource: str
    permission: str  # one of c r u d s

    def __str__(self) -> str:
        return f"system/{self.resource}.{self.permission}"


def parse_scope(scope: str) -> tuple[str, str, frozenset[str]] | None:
    """(context, resource, permission letters) of a SMART scope; None for anything else (openid, ...)."""
    m = _SCOPE.match(scope.strip())
    if m is None:
        return None
    context, resource, perms = m.groups()
    if perms in _V1:
        return context, resource, _V1[perms]
    if set(perms) <= set("cruds") and list(perms) == sorted(perms, key="cruds".index):
        return context, resource, frozenset(perms)
    return None


def grants(scopes: frozenset[str] | set[str] | list[str], need: Requirement) -> bool:
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed is None:
            continue
        context, resource, perms = parsed
        if context in CONTEXTS and resource in (need.resource, "*") and need.permission in perms:
            return True
    return False


# ---- what each route needs (services/gateway/api/access.py maps routes to these)
STORE_STUDIES = Requirement("ImagingStudy", "c")
REQUEST_REPORT = Requirement("DiagnosticReport", "c")
READ_REPORT = Requirement("DiagnosticReport", "r")
SEARCH_REPORTS = Requirement("DiagnosticReport", "s")
SIGN_REPORT = Requirement("DiagnosticReport", "u")
READ_OBSERVATION = Requirement("Observation", "r")
READ_PROVENANCE = Requirement("Provenance", "r")
READ_DEVICE = Requirement("Device", "r")
READ_JOB = Requirement("Job", "r")
SEARCH_JOBS = Requirement("Job", "s")
REDRIVE_JOB = Requirement("Job", "u")
READ_AUDIT = Requirement("AuditEvent", "r")
SEARCH_AUDIT = Requirement("AuditEvent", "s")
READ_METRICS = Requirement("Metrics", "r")
READ_AUTOMATION = Requirement("Automation", "r")
SWITCH_AUTOMATION = Requirement("Automation", "u")

# Least privilege: each role gets what its clients do and nothing else.
ROLES: dict[str, tuple[str, ...]] = {
    # a PACS or modality: stores studies, reads nothing back
    "pacs": ("system/ImagingStudy.c",),
    # an EHR / integration engine: asks for reports and reads them (REST and FHIR)
    "ehr": ("system/DiagnosticReport.crs", "system/Observation.rs", "system/Provenance.rs", "system/Device.rs"),
    # a radiologist: reads, gives feedback and signs (update), never stores studies
    "radiologist": ("user/DiagnosticReport.rus", "user/Observation.rs", "user/Provenance.rs", "user/Device.rs"),
    # operations: metrics, job history, dead letters, the automation switch and the audit trail
    "ops": ("system/Job.rus", "system/Metrics.r", "system/Automation.ru", "system/AuditEvent.rs"),
}


def role_scopes(role: str) -> tuple[str, ...]:
    try:
        return ROLES[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}") from None
