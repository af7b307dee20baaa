"""FHIR R4 output: DiagnosticReport, Observations, Device and Provenance of a drafted report, the
/fhir facade's OperationOutcome and CapabilityStatement, and a client that pushes reports to a FHIR
server. Built and validated with fhir.resources (R4B models). See docs/fhir.md."""

from __future__ import annotations

import json
from typing import Any


def to_json(resource: Any) -> dict[str, Any]:
    """A fhir.resources model as plain JSON types (dates as strings), in FHIR element order."""
    return json.loads(resource.model_dump_json())
