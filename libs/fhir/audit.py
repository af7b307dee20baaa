"""The audit trail as FHIR R4 AuditEvent resources, after IHE Basic Audit Log Patterns (BALP).

One AuditEvent per trail row (id `audit-<seq>`):
- type: `rest` (audit-event-type) for REST/FHIR calls, DICOM 110100 "Application Activity" for
  commands and pipeline actions; subtype: the FHIR restful interaction (read, search-type, create,
  update) where one applies;
- action C/R/U/D/E, recorded, outcome 0/4/8/12 with outcomeDesc (why it was refused);
- agent: the requesting client (who.identifier = "<kind>:<id>", requestor true, its network
  address) and this server (requestor false);
- source: this gateway (security-source-type 4, application server);
- entity: what was touched (what.identifier = "<type>/<id>"), and the search query (base64) for searches.
The row's chain hash rides along as an extension, so a copy of an event can be checked against the trail.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent

from libs.fhir import codes, to_json
from libs.storage.models import AuditEventRow

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
# The project's own URLs at the default base (audit_event takes the configured codes.Definitions).
EXT_CHAIN_HASH = codes.DEFAULT.ext_audit_chain_hash
AGENT_SYSTEM = codes.DEFAULT.audit_agent_system
ENTITY_SYSTEM = codes.DEFAULT.audit_entity_system
SOURCE_NAME = "cxr-report gateway"


def event_id(seq: int) -> str:
    return f"audit-{seq}"


def parse_event_id(value: str) -> int | None:
    head, _, number = value.partition("-")
    return int(number) if head == "audit" and number.isdigit() and len(number) <= 18 else None


def _subtype(row: AuditEventRow) -> str | None:
    if row.action == "C":
        return "create"
    if row.action == "U":
        return "update"
    if row.action == "R":
        return "search-type" if row.entity_id is None else "read"
    return None


def _recorded(at: dt.datetime) -> str:
    aware = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
    return aware.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def audit_event(row: AuditEventRow, defs: codes.Definitions = codes.DEFAULT) -> dict[str, Any]:
    rest = row.http_status is not None
    subtype = _subtype(row)
    data: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id(row.seq),
        "extension": [{"url": defs.ext_audit_chain_hash, "valueString": row.hash}],
        "type": ({"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"} if rest
                 else {"system": DCM, "code": "110100", "display": "Application Activity"}),
        "action": row.action,
        "recorded": _recorded(row.at),
        "outcome": row.outcome,
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPATION_TYPE, "code": "AUT",
                                     "display": "author (originator)"}]},
                "who": {"identifier": {"system": defs.audit_agent_system, "value": f"{row.agent_type}:{row.agent_id}"}},
                "requestor": True,
                **({"network": {"address": row.source_address, "type": "2"}} if row.source_address else {}),
            },
            {
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110153",
                                     "display": "Source Role ID"}]},
                "who": {"display": SOURCE_NAME},
                "requestor": False,
            },
        ],
        "source": {"observer": {"display": SOURCE_NAME},
                   "type": [{"system": SECURITY_SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
        "entity": [_entity(row, defs)],
    }
    if subtype is not None and rest:
        data["subtype"] = [{"system": RESTFUL_INTERACTION, "code": subtype}]
    if row.detail and row.outcome != "0":
        data["outcomeDesc"] = row.detail
    resource = AuditEvent.model_validate(data)
    return to_json(resource)


def _entity(row: AuditEventRow, defs: codes.Definitions) -> dict[str, Any]:
    what = f"{row.entity_type}/{row.entity_id}" if row.entity_id else row.entity_type
    entity: dict[str, Any] = {
        "what": {"identifier": {"system": defs.audit_entity_system, "value": what}},
        "type": {"system": AUDIT_ENTITY_TYPE, "code": "2", "display": "System Object"},
        "description": f"{row.operation}" + (f" (HTTP {row.http_status})" if row.http_status else ""),
    }
    if row.detail and row.detail.startswith("query: "):
        entity["query"] = base64.b64encode(row.detail[len("query: "):].encode()).decode()
        entity["role"] = {"system": OBJECT_ROLE, "code": "24", "display": "Query"}
    return entity
