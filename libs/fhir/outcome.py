"""OperationOutcome: the error body of every /fhir response (FHIR clients expect it, not problem+json)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.operationoutcome import OperationOutcome

from libs.fhir import to_json

# HTTP status -> FHIR issue type (http://hl7.org/fhir/issue-type)
ISSUE_CODES: dict[int, str] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    415: "not-supported",
    422: "processing",
    413: "too-costly",
    500: "exception",
    503: "transient",
}


def operation_outcome(status: int, diagnostics: str, *, code: str | None = None,
                      severity: str = "error", expression: list[str] | None = None) -> dict[str, Any]:
    """A validated OperationOutcome as JSON; `diagnostics` must be a PHI-free sentence."""
    issue: dict[str, Any] = {
        "severity": severity,
        "code": code or ISSUE_CODES.get(status, "processing"),
        "diagnostics": diagnostics,
    }
    if expression:
        issue["expression"] = expression
    resource = OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": [issue]})
    return to_json(resource)
