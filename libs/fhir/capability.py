"""The CapabilityStatement served at /fhir/metadata: what this read-only FHIR facade supports."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from libs.fhir import codes, to_json

FHIR_VERSION = "4.0.1"  # R4: the resources use only elements that are the same in R4 and R4B
SOFTWARE_VERSION = "0.1.0"


def capability_statement(base_url: str, now: dt.datetime | None = None,
                         defs: codes.Definitions = codes.DEFAULT) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.timezone.utc)
    read = [{"code": "read"}]
    data = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now.date().isoformat(),
        "publisher": "cxr-report",
        "kind": "instance",
        "software": {"name": "cxr-report", "version": SOFTWARE_VERSION},
        "implementation": {
            "description": "Read-only FHIR R4 view of preliminary, AI-drafted chest radiograph reports "
                           "(research software, not a medical device). Subjects are pseudonymous.",
            "url": base_url.rstrip("/"),
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Reports appear once QA has reviewed them, preliminary (version 1, the AI draft); "
                             "each radiologist verdict is the next version (final or cancelled), readable with vread.",
            "resource": [
                {
                    "type": "DiagnosticReport",
                    "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "search-type"}],
                    "versioning": "versioned",
                    "readHistory": False,
                    "searchInclude": ["DiagnosticReport:result"],
                    "searchParam": [
                        {"name": "subject", "type": "reference",
                         "definition": "http://hl7.org/fhir/SearchParameter/clinical-patient",
                         "documentation": "The pseudonymous subject: its identifier value, Patient/<value>, or "
                                          "subject:identifier=<system>|<value>."},
                        {"name": "imaging-study", "type": "token", "definition": defs.search_imaging_study,
                         "documentation": "Study Instance UID of the imaging study (plain or urn:oid:)."},
                    ],
                },
                {"type": "Observation", "interaction": read},
                {"type": "Device", "interaction": read},
                {"type": "Provenance", "interaction": read},
                {
                    "type": "AuditEvent",
                    "documentation": "The audit trail (IHE BALP); needs the ops scope system/AuditEvent.rs.",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [
                        {"name": name, "type": kind, "definition": f"http://hl7.org/fhir/SearchParameter/AuditEvent-{name}"}
                        for name, kind in (("date", "date"), ("agent", "reference"), ("entity", "reference"),
                                           ("entity-type", "token"), ("action", "token"), ("outcome", "token"))
                    ],
                },
            ],
            "security": {
                "cors": False,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "SMART-on-FHIR"}]}],
                "description": "Bearer JWTs from the configured OAuth2/OIDC issuer with SMART system/ or user/ "
                               "scopes, or API keys (X-API-Key). 401 without credentials, 403 without the scope.",
            },
        }],
    }
    return to_json(CapabilityStatement.model_validate(data))
