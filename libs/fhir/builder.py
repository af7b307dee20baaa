"""Builds the FHIR R4 resources of one drafted report, each validated with fhir.resources (R4B models).

One reviewed job gives:
- a `DiagnosticReport` (status `preliminary`, never `final`): category RAD, LOINC code of the study,
  pseudonymous subject, the imaging study, times, conclusion (the impression), SNOMED CT conclusion
  codes of the positive findings, the whole text as base64 text/plain, and QA's verdict as extensions;
- one `Observation` per observation the bundle assesses, positive or not (`Report.observations`):
  valueQuantity = the calibrated probability, the head's call as interpretation POS (+ A/AA) or NEG, the
  decision threshold as a component; positives also carry severity, side as bodySite and the box as an
  extension. Reports stored before observations existed give one per positive finding;
- a `Device` for the model (name and version);
- a `Provenance` recording that the Device authored the report and its Observations.

The DiagnosticReport and every Observation (the AI-generated content) carry the security label
`meta.security` = v3-ObservationValue AIAST "Artificial Intelligence asserted" (HL7 AI Transparency on
FHIR); the Device and the Provenance describe the AI rather than assert anything clinical, and do not.
The project's own extension, code-system and identifier-system URLs come from `codes.Definitions`
(CXR_FHIR_DEFINITIONS_BASE_URL; `build_resources(src, defs)`), the default base when none is given.

Only elements that are the same in FHIR R4 (4.0.1) and R4B (4.3.0) are used, so the JSON is valid R4.

The subject is pseudonymous: the platform never stores patient identity (no name, ID or birth date),
so `subject` is a logical reference (identifier only, no literal Patient/ reference) whose value is
derived from the Study Instance UID (`study_pseudonym`). It names "the patient of this study" and
cannot be linked to a person or to that patient's other studies without the EHR, which links the
report to its patient through the imaging study (identifier urn:dicom:uid = the Study Instance UID it
ordered).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from libs.domain.feedback import FeedbackOut, signed_sections
from libs.domain.labels import CHEXPERT_LABELS
from libs.domain.model_output import ModelOutput
from libs.domain.report import AssessedObservation, Finding, Report
from libs.domain.study import View
from libs.fhir import codes

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_OBSERVATION_ID = re.compile(r"^(?P<report>.+)-o(?P<index>\d{2})$")
_PROVENANCE_ID = re.compile(r"^(?P<report>.+)-prov$")


class FhirBuildError(Exception):
    """A resource failed validation: a bug in the builder, never the client's fault."""


@dataclass(frozen=True)
class ReportSource:
    """Everything a reviewed job contributes to its FHIR resources."""

    job_id: str
    study_uid: str
    report: Report
    output: ModelOutput | None
    views: tuple[View, ...]  # views of the images the request covered (request views win)
    instance_uid: str | None  # the frontal image the model read (the boxes are on it)
    effective: dt.datetime  # when the images were received (the acquisition time is not stored)
    issued: dt.datetime  # when QA finished
    # The radiologist's verdict this version carries (None: the AI draft, version 1): signed
    # (accepted / edited) makes the report final, rejected makes it cancelled.
    verdict: FeedbackOut | None = None

    @property
    def version(self) -> int:
        return 1 if self.verdict is None else self.verdict.version + 1

    @property
    def signed(self) -> bool:
        return self.verdict is not None and self.verdict.decision in ("accepted", "edited")


@dataclass(frozen=True)
class ReportResources:
    diagnostic_report: DiagnosticReport
    observations: list[Observation]
    device: Device
    provenance: Provenance

    def all(self) -> list[Any]:
        return [self.device, *self.observations, self.diagnostic_report, self.provenance]


# ---------------------------------------------------------------- ids and references

def study_pseudonym(study_uid: str) -> str:
    """Per-study pseudonym of the subject: carries no patient identity (see the module docstring)."""
    return "study-" + hashlib.sha256(study_uid.encode("ascii", "replace")).hexdigest()[:32]


def subject_reference(study_uid: str, defs: codes.Definitions = codes.DEFAULT) -> dict[str, Any]:
    return {
        "type": "Patient",
        "identifier": {"system": defs.subject_system, "value": study_pseudonym(study_uid)},
        "display": "Pseudonymous subject (patient identity is not stored)",
    }


def imaging_study_reference(study_uid: str) -> dict[str, Any]:
    return {"type": "ImagingStudy", "identifier": {"system": codes.DICOM_UID, "value": f"urn:oid:{study_uid}"}}


def report_resource_id(report: Report) -> str:
    if _ID.match(report.report_id):
        return report.report_id
    return "rpt-" + hashlib.sha256(report.report_id.encode()).hexdigest()[:40]


def observation_id(report_id: str, label: str) -> str:
    return f"{report_id}-o{CHEXPERT_LABELS.index(label):02d}"


def parse_observation_id(resource_id: str) -> tuple[str, str] | None:
    """(DiagnosticReport id, label) of an Observation id, or None when it is not one of ours."""
    match = _OBSERVATION_ID.match(resource_id)
    if match is None or int(match["index"]) >= len(CHEXPERT_LABELS):
        return None
    return match["report"], CHEXPERT_LABELS[int(match["index"])]


def provenance_id(report_id: str) -> str:
    return f"{report_id}-prov"


def parse_provenance_id(resource_id: str) -> str | None:
    match = _PROVENANCE_ID.match(resource_id)
    return match["report"] if match else None


def device_id(model_name: str, model_version: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9.\-]+", "-", f"{model_name}-{model_version}")
    slug = re.sub(r"-{2,}", "-", slug).strip("-.") or "model"
    full = f"model-{slug}"
    if len(full) <= 64:
        return full
    digest = hashlib.sha256(f"{model_name}\x00{model_version}".encode()).hexdigest()[:12]
    return f"model-{slug[:45].rstrip('-.')}-{digest}"


def job_id_of_report(resource_id: str) -> str | None:
    """The job id inside a DiagnosticReport id ("rpt-<job id>")."""
    return resource_id[4:] if resource_id.startswith("rpt-") and len(resource_id) > 4 else None


def study_code(views: Iterable[View]) -> codes.Code:
    """XR Chest 2 Views when a frontal and a lateral image were received, else XR Chest Single view."""
    views = set(views)
    if any(v.is_frontal for v in views) and View.LATERAL in views:
        return codes.XR_CHEST_2_VIEWS
    return codes.XR_CHEST_SINGLE_VIEW


def _instant(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ai_asserted() -> dict[str, Any]:
    """meta of a resource holding AI-generated content: the AIAST security label."""
    return {"security": [codes.AI_ASSERTED.coding()]}


def _validated(model: type, data: dict[str, Any]):  # noqa: ANN202
    try:
        return model.model_validate(data)
    except ValueError as exc:
        raise FhirBuildError(f"{data.get('resourceType')} {data.get('id')} failed FHIR validation: {exc}") from exc


# ---------------------------------------------------------------- resources

def build_device(model_name: str, model_version: str) -> Device:
    return _validated(Device, {
        "resourceType": "Device",
        "id": device_id(model_name, model_version),
        "status": "active",
        "deviceName": [{"name": model_name, "type": "model-name"}],
        "version": [{"value": model_version}],
        "type": {"text": "AI software: chest radiograph report drafting model"},
        "note": [{"text": "Research software, not a medical device: its reports are preliminary drafts "
                          "for a radiologist to review and sign."}],
    })


def _bounding_box_extension(box: list[int], instance_uid: str | None, defs: codes.Definitions) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": name, "valueInteger": int(value)} for name, value in zip(("x0", "y0", "x1", "y1"), box)
    ]
    parts.append({"url": "coordinates", "valueString": "source-image pixels, pixel edges, x1 and y1 exclusive"})
    if instance_uid:
        parts.append({"url": "instance", "valueOid": f"urn:oid:{instance_uid}"})
    return {"url": defs.ext_bounding_box, "extension": parts}


def _quantity(value: float) -> dict[str, Any]:
    return {"value": round(float(value), 4), "unit": "probability", "system": codes.UCUM, "code": "1"}


def _observation(src: ReportSource, label: str, text: str, probability: float, threshold: float | None,
                 device: Device, report_id: str, defs: codes.Definitions) -> dict[str, Any]:
    """What every Observation carries, positive or negative. value[x] is a choice in FHIR, so it holds one
    thing, the calibrated probability (what outside AUROC/calibration monitoring reads); the head's call
    is in `interpretation`, and the threshold it was judged against is a component."""
    components: list[dict[str, Any]] = [
        # The same number as valueQuantity: kept for readers written before value[x] carried it.
        {"code": {"coding": [defs.confidence.coding()], "text": "confidence"},
         "valueQuantity": _quantity(probability)},
    ]
    if threshold is not None:
        components.append({"code": {"coding": [defs.threshold.coding()], "text": "decision threshold"},
                           "valueQuantity": _quantity(threshold)})
    return {
        "resourceType": "Observation",
        "id": observation_id(report_id, label),
        "meta": _ai_asserted(),
        "status": "preliminary",
        "category": [{"coding": [codes.IMAGING.coding()]}],
        "code": codes.finding_concept(label, text, defs),
        "subject": subject_reference(src.study_uid, defs),
        "effectiveDateTime": _instant(src.effective),
        "issued": _instant(src.issued),
        "valueQuantity": _quantity(probability),
        "device": {"reference": f"Device/{device.id}"},
        "derivedFrom": [imaging_study_reference(src.study_uid)],
        "component": components,
    }


def _threshold(src: ReportSource, label: str) -> float | None:
    """The bundle's threshold for a label: from the report where it records one, else from the model output
    (None for a report stored with neither)."""
    for obs in src.report.observations:
        if obs.label == label:
            return obs.threshold
    prediction = src.output.prediction(label) if src.output is not None else None
    return prediction.threshold if prediction is not None else None


def build_observation(src: ReportSource, finding: Finding, device: Device, report_id: str,
                      defs: codes.Definitions = codes.DEFAULT) -> Observation:
    data = _observation(src, finding.label, finding.finding, finding.confidence, _threshold(src, finding.label),
                        device, report_id, defs)
    if finding.severity:
        data["component"].append({"code": {"coding": [codes.SEVERITY_ATTRIBUTE.coding()], "text": "severity"},
                                  "valueCodeableConcept": {"coding": [codes.SEVERITY[finding.severity].coding()],
                                                           "text": finding.severity}})
    data["interpretation"] = [
        {"coding": [codes.POSITIVE.coding()]},
        {"coding": [(codes.CRITICAL_ABNORMAL if finding.is_critical else codes.ABNORMAL).coding()]},
    ]
    data["method"] = {"text": "AI detection head: calibrated probability at or above the model's per-label threshold"}
    if finding.laterality:
        data["bodySite"] = {"coding": [codes.LATERALITY[finding.laterality].coding()],
                            "text": f"{finding.laterality} side of the chest"}
    if finding.bounding_box and len(finding.bounding_box) == 4:
        data["extension"] = [_bounding_box_extension(finding.bounding_box, src.instance_uid, defs)]
    return _validated(Observation, data)


def build_negative_observation(src: ReportSource, obs: AssessedObservation, device: Device,
                               report_id: str, defs: codes.Definitions = codes.DEFAULT) -> Observation:
    """An assessed observation the head calls absent: its probability stays visible (monitoring, borderline)."""
    from libs.reporting.phrases import PHRASES

    text = PHRASES[obs.label].noun if obs.label in PHRASES else obs.label
    data = _observation(src, obs.label, text, obs.probability, obs.threshold, device, report_id, defs)
    data["interpretation"] = [{"coding": [codes.NEGATIVE.coding()]}]
    data["method"] = {"text": "AI detection head: calibrated probability below the model's per-label threshold"}
    return _validated(Observation, data)


def build_observations(src: ReportSource, device: Device, report_id: str,
                       defs: codes.Definitions = codes.DEFAULT) -> list[Observation]:
    """One Observation per assessed observation: the positive findings first, in the report's order
    (critical first, then by confidence), then the negatives in CheXpert order. A report stored before
    observations were recorded gives its findings only."""
    report = src.report
    out = [build_observation(src, f, device, report_id, defs) for f in report.findings]
    positive = {f.label for f in report.findings}
    out += [build_negative_observation(src, obs, device, report_id, defs)
            for obs in report.observations if not obs.present and obs.label not in positive]
    return out


def _narrative(text: str, heading: str = "Preliminary AI-generated draft, not a signed report.") -> dict[str, str]:
    body = html.escape(text, quote=False)
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{html.escape(heading, quote=False)}</b></p>'
               f"<pre>{body}</pre></div>",
    }


def _verdict_parts(src: ReportSource, text: str) -> dict[str, Any]:
    """What the radiologist's verdict changes in the DiagnosticReport: status, text, who, labels."""
    verdict = src.verdict
    if verdict is None:
        # versionId 1 as well: every version, the draft too, can be read again with vread (_history/1).
        return {"status": "preliminary", "meta": {"versionId": "1", **_ai_asserted()}, "text": _narrative(text),
                "conclusion": src.report.impression, "title": "Preliminary chest radiograph report (AI-generated draft)",
                "issued": src.issued}
    who = verdict.reviewer_name or verdict.reviewer
    at = _instant(verdict.created_at)
    meta = {"versionId": str(src.version), "lastUpdated": at}
    if src.signed:
        findings, impression = (signed_sections(verdict.final_text) if verdict.final_text
                                else (src.report.findings_text, src.report.impression))
        signed_text = f"FINDINGS:\n{findings}\n\nIMPRESSION:\n{impression}\n\nSigned by {who} at {at}."
        return {"status": "final", "meta": {**meta, "security": [codes.CLINICIAN_ASSERTED_FROM_AI.coding()]},
                "text": _narrative(signed_text, f"Final report, signed by {who} (drafted by AI)."),
                "conclusion": impression or findings, "title": "Chest radiograph report, signed", "issued": verdict.created_at,
                "body": signed_text}
    return {"status": "cancelled", "meta": {**meta, **_ai_asserted()},
            "text": _narrative(text, f"AI draft rejected by {who}: {verdict.reason}"),
            "conclusion": f"Rejected by the radiologist: {verdict.reason}", "issued": verdict.created_at,
            "title": "Rejected AI-generated draft (not a report)"}


def build_diagnostic_report(
    src: ReportSource, observations: list[Observation], report_id: str, text: str,
    defs: codes.Definitions = codes.DEFAULT,
) -> DiagnosticReport:
    report = src.report
    code = study_code(src.views)
    extensions: list[dict[str, Any]] = [
        {"url": defs.ext_requires_review, "valueBoolean": report.requires_radiologist_review},
        *({"url": defs.ext_review_reason, "valueString": reason} for reason in report.review_reasons),
        *({"url": defs.ext_not_assessed, "valueCodeableConcept": {"coding": [defs.chexpert_code(label).coding()],
                                                                  "text": label}}
          for label in report.not_assessed),
    ]
    if report.template:
        extensions.append({"url": defs.ext_template, "valueString": report.template})
    by_id = {o.id: o for o in observations}
    parts = _verdict_parts(src, text)
    data: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "meta": parts["meta"],
        "text": parts["text"],
        "extension": extensions,
        "status": parts["status"],
        "category": [{"coding": [codes.RADIOLOGY.coding()]}],
        "code": {"coding": [code.coding()], "text": code.display},
        "subject": subject_reference(src.study_uid, defs),
        "effectiveDateTime": _instant(src.effective),
        "issued": _instant(parts["issued"]),
        "imagingStudy": [imaging_study_reference(src.study_uid)],
        "conclusion": parts["conclusion"],
        "presentedForm": [{
            "contentType": "text/plain; charset=utf-8",
            "language": "en",
            "data": base64.b64encode(parts.get("body", text).encode("utf-8")).decode("ascii"),
            "title": parts["title"],
            "creation": _instant(parts["issued"]),
        }],
    }
    if src.signed:
        verdict = src.verdict
        data["resultsInterpreter"] = [{"display": verdict.reviewer_name or verdict.reviewer,
                                       "identifier": {"system": defs.audit_agent_system, "value": verdict.reviewer}}]
    if _is_uuid(src.job_id):
        data["identifier"] = [{"system": codes.RFC_3986, "value": f"urn:uuid:{src.job_id}"}]
    if observations:
        data["result"] = [{"reference": f"Observation/{oid}", "display": by_id[oid].code.text} for oid in by_id]
    if report.findings:
        data["conclusionCode"] = [codes.finding_concept(f.label, f.finding, defs) for f in report.findings]
    resource = _validated(DiagnosticReport, data)
    expected = {None: "preliminary"}.get(src.verdict and src.verdict.decision,
                                         "final" if src.signed else "cancelled")
    if resource.status != expected:  # fhir.resources does not check code values; we do
        raise FhirBuildError(f"this DiagnosticReport version must be {expected}")
    return resource


def build_provenance(src: ReportSource, report: DiagnosticReport, observations: list[Observation],
                     device: Device) -> Provenance:
    targets = [{"reference": f"DiagnosticReport/{report.id}"}]
    targets += [{"reference": f"Observation/{o.id}"} for o in observations]
    name = device.deviceName[0].name if device.deviceName else "model"
    version = device.version[0].value if device.version else ""
    return _validated(Provenance, {
        "resourceType": "Provenance",
        "id": provenance_id(report.id),
        "target": targets,
        "recorded": _instant(src.verdict.created_at if src.verdict else src.issued),
        "activity": {"coding": [(codes.UPDATE if src.verdict else codes.CREATE).coding()]},
        "agent": [{
            "type": {"coding": [codes.AUTHOR.coding()]},
            "who": {"reference": f"Device/{device.id}", "display": f"{name} {version}".strip()},
        }, *([{
            "type": {"coding": [codes.VERIFIER.coding()]},
            "who": {"display": src.verdict.reviewer_name or src.verdict.reviewer},
        }] if src.signed else [])],
        "entity": [{"role": "source", "what": imaging_study_reference(src.study_uid)}],
    })


def build_resources(src: ReportSource, defs: codes.Definitions | None = None) -> ReportResources:
    """The report's resources; `defs` (codes.Definitions.of(settings)) gives the project's URLs."""
    from libs.reporting.render import document_text

    defs = defs or codes.DEFAULT
    report_id = report_resource_id(src.report)
    model_name = src.output.model_name if src.output is not None else "unknown-model"
    device = build_device(model_name, src.report.model_version)
    observations = build_observations(src, device, report_id, defs)
    text = document_text(src.report, study_code(src.views).display)
    diagnostic_report = build_diagnostic_report(src, observations, report_id, text, defs)
    provenance = build_provenance(src, diagnostic_report, observations, device)
    return ReportResources(diagnostic_report, observations, device, provenance)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


# ---------------------------------------------------------------- bundles

def transaction_bundle(resources: ReportResources, base_url: str) -> Bundle:
    """A transaction that creates or updates every resource under its own id (PUT): repeating it is harmless."""
    base = base_url.rstrip("/")
    entries = []
    for resource in resources.all():
        path = f"{resource.get_resource_type()}/{resource.id}"
        entries.append({"fullUrl": f"{base}/{path}", "resource": resource.model_dump(),
                        "request": {"method": "PUT", "url": path}})
    return _validated(Bundle, {"resourceType": "Bundle", "type": "transaction", "entry": entries})


def searchset(matches: list[Any], includes: list[Any], base_url: str, self_url: str) -> Bundle:
    base = base_url.rstrip("/")
    entries = [
        {"fullUrl": f"{base}/{r.get_resource_type()}/{r.id}", "resource": r.model_dump(), "search": {"mode": mode}}
        for mode, group in (("match", matches), ("include", includes)) for r in group
    ]
    data: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(matches),
        "link": [{"relation": "self", "url": self_url}],
    }
    if entries:
        data["entry"] = entries
    return _validated(Bundle, data)
