"""A finished report as a DICOM Comprehensive SR (highdicom), to be stored back to the PACS.

Document layout (patterned on TID 2000 "Basic Diagnostic Imaging Report", without claiming the
template formally):

    CONTAINER  Diagnostic Imaging Report (LN 18748-4)
      HAS CONCEPT MOD  Language = en-US
      HAS OBS CONTEXT  Observer Type = Device; the model as the observer device (UID, name, version)
      CONTAINS  TEXT Comment: "AI-GENERATED PRELIMINARY REPORT ..." (and why review is required)
      CONTAINS  CODE Preliminary report = Yes; CODE Radiologist review required first = Yes/No
      CONTAINS  CONTAINER Findings
                  TEXT Finding: the findings text
                  CODE Finding = <observation>          one per reported observation
                    HAS PROPERTIES  NUM Certainty of Finding (%), CODE Severity, CODE Critical finding
                    HAS CONCEPT MOD CODE Laterality
                    INFERRED FROM   SCOORD POLYLINE Image Region (the box, source-image pixels)
                                      SELECTED FROM IMAGE (the image the model read)
                  TEXT Comment: observations the model does not assess
                  IMAGE Source image ...                one per source image
      CONTAINS  CONTAINER Impressions → TEXT Impression
      CONTAINS  CONTAINER Recommendations → TEXT Recommendation

Header: CompletionFlag PARTIAL, VerificationFlag UNVERIFIED, PreliminaryFlag PRELIMINARY, a series
description that says "AI generated, preliminary", the model in ContributingEquipmentSequence
(Processing Equipment), and the patient/study attributes copied from the source images so the SR
files into the same study. Those attributes are PHI: this module never logs them.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from libs.domain.feedback import FeedbackOut, signed_sections
from libs.domain.report import Finding, Report
from libs.sr import codes as C

AI_NOTICE = (
    "AI-GENERATED PRELIMINARY REPORT. Drafted automatically by {model}; not reviewed, verified or "
    "signed by a radiologist. Not for diagnosis until a radiologist has reviewed it."
)
SERIES_DESCRIPTION = "AI generated preliminary report (unverified)"
SIGNED_SERIES_DESCRIPTION = "AI assisted report, signed by a radiologist"
MANUFACTURER = "cxr-report"
SR_SERIES_NUMBER = 990


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    manufacturer: str = MANUFACTURER

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def device_uid(self) -> str:
        """Stable per model version: the same device in every SR it writes."""
        return generate_uid(entropy_srcs=["cxr-report observer device", self.name, self.version])


def sr_uids(job_id: str, version: int = 1) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) derived from the job and the report's version (1: the AI
    draft; each radiologist verdict makes the next, in a series of its own): a retried store sends
    the same SR."""
    if version == 1:
        return (generate_uid(entropy_srcs=["cxr-report sr series", job_id]),
                generate_uid(entropy_srcs=["cxr-report sr instance", job_id]))
    return (generate_uid(entropy_srcs=["cxr-report sr series", job_id, f"v{version}"]),
            generate_uid(entropy_srcs=["cxr-report sr instance", job_id, f"v{version}"]))


def _text(name: hd.sr.CodedConcept, value: str, rel: str = "CONTAINS") -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=rel)


def _code(name: hd.sr.CodedConcept, value: hd.sr.CodedConcept, rel: str) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(name=name, value=value, relationship_type=rel)


def _image(ds: Dataset, rel: str) -> hd.sr.ImageContentItem:
    return hd.sr.ImageContentItem(
        name=C.SOURCE_IMAGE,
        referenced_sop_class_uid=ds.SOPClassUID,
        referenced_sop_instance_uid=ds.SOPInstanceUID,
        relationship_type=rel,
    )


def _box(finding: Finding, read_image: Dataset) -> hd.sr.ScoordContentItem:
    x0, y0, x1, y1 = (float(v) for v in finding.bounding_box or ())
    # Box edges are pixel edges (x1, y1 exclusive): the same as SR image coordinates, where (0, 0)
    # is the top left corner of the top left pixel. A closed polyline: first point repeated.
    points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)
    scoord = hd.sr.ScoordContentItem(
        name=C.IMAGE_REGION,
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=points,
        relationship_type="INFERRED FROM",
    )
    scoord.ContentSequence = hd.sr.ContentSequence([_image(read_image, "SELECTED FROM")])
    return scoord


def _finding_item(finding: Finding, read_image: Dataset | None) -> hd.sr.CodeContentItem:
    item = _code(C.FINDING, C.observation_code(finding.label), "CONTAINS")
    children: list = [
        hd.sr.NumContentItem(name=C.CERTAINTY, value=round(finding.confidence * 100, 1), unit=C.PERCENT,
                             relationship_type="HAS PROPERTIES"),
        _code(C.CRITICAL_FINDING, C.YES if finding.is_critical else C.NO, "HAS PROPERTIES"),
    ]
    if finding.severity:
        children.append(_code(C.SEVERITY, C.SEVERITIES[finding.severity], "HAS PROPERTIES"))
    if finding.laterality:
        children.append(_code(C.LATERALITY, C.LATERALITIES[finding.laterality], "HAS CONCEPT MOD"))
    if finding.finding:
        children.append(_text(C.COMMENT, finding.finding, "HAS PROPERTIES"))
    if finding.bounding_box and read_image is not None:
        children.append(_box(finding, read_image))
    item.ContentSequence = hd.sr.ContentSequence(children)
    return item


def _as_called(report: Report, verdict: FeedbackOut) -> list[Finding]:
    """The findings as the radiologist called them: the model's, less those called absent, plus
    those called present that the model missed (with the model's probability), with the
    radiologist's side and severity."""
    calls = {c.observation: c for c in verdict.corrections}
    probability = {o.label: o.probability for o in report.observations}
    out = []
    for finding in report.findings:
        call = calls.get(finding.label)
        if call is None:
            out.append(finding)
        elif call.present:
            out.append(finding.model_copy(update={"laterality": call.laterality, "severity": call.severity}))
    known = {f.label for f in report.findings}
    for label, call in calls.items():
        if call.present and label not in known:
            out.append(Finding(finding=f"{label} (radiologist)", label=label, confidence=probability.get(label, 0.0),
                               laterality=call.laterality, severity=call.severity))
    return out


def _person_name(name: str) -> str:
    """A display name as a DICOM PN value (no component separators of its own)."""
    clean = name.replace("^", " ").replace("=", " ").strip()[:63] or "Radiologist"
    return clean + "^"  # one component (the whole display name as the family name), said explicitly


def _predecessor(source: Dataset, series_uid: str, sop_uid: str) -> Dataset:
    """What highdicom needs to reference the version this SR replaces (same study)."""
    previous = Dataset()
    for keyword in ("PatientID", "StudyInstanceUID"):
        setattr(previous, keyword, source.get(keyword, ""))
    previous.SeriesInstanceUID = series_uid
    previous.SOPInstanceUID = sop_uid
    previous.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    return previous


def _container(name: hd.sr.CodedConcept, items: list) -> hd.sr.ContainerContentItem:
    box = hd.sr.ContainerContentItem(name=name, relationship_type="CONTAINS")
    box.ContentSequence = hd.sr.ContentSequence(items)
    return box


# Type 2 in the Patient and General Study modules: required, but may be empty (unknown). An image
# that omits one (anonymised exports often do) is still a valid source; highdicom copies them
# from the first source, so each gets an empty value in our in-memory copy, never a made-up one.
_TYPE2_STUDY_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                           "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2_study_attributes(ds: Dataset) -> Dataset:
    missing = [k for k in _TYPE2_STUDY_ATTRIBUTES if k not in ds]
    if not missing:
        return ds
    filled = copy.deepcopy(ds)
    for keyword in missing:
        setattr(filled, keyword, "")
    return filled


def study_sources(sources: Sequence[Dataset]) -> list[Dataset]:
    """The evidence of an SR: at least one image, all of one study, each with the Type 2 patient and
    study attributes present (empty when the image lacks them)."""
    if not sources:
        raise ValueError("an SR needs at least one source image")
    studies = {str(ds.StudyInstanceUID) for ds in sources}
    if len(studies) != 1:
        raise ValueError(f"the source images belong to more than one study ({len(studies)} studies)")
    return [_with_type2_study_attributes(ds) for ds in sources]


def device_observer(model: ModelIdentity) -> hd.sr.ObserverContext:
    """The model as the SR's observer device (TID 1004): the same in every SR it writes."""
    return hd.sr.ObserverContext(
        observer_type=C.DEVICE,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=model.device_uid, name=model.name[:64], manufacturer_name=model.manufacturer[:64],
            model_name=model.label[:64]),
    )


def model_equipment(model: ModelIdentity, when: dt.datetime, description: str) -> hd.ContributingEquipment:
    """The model as Processing Equipment in ContributingEquipmentSequence."""
    return hd.ContributingEquipment(
        manufacturer=model.manufacturer[:64], purpose_of_reference=C.PROCESSING_EQUIPMENT,
        manufacturer_model_name=model.name[:64], software_versions=model.version[:64],
        contribution_datetime=when, contribution_description=description[:64])


def declare_local_scheme(sr: Dataset) -> None:
    """CodingSchemeIdentificationSequence: the local scheme of the observations DICOM has no code for."""
    scheme = Dataset()
    scheme.CodingSchemeDesignator = C.LOCAL_SCHEME
    scheme.CodingSchemeName = C.LOCAL_SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]


def build_report_sr(
    report: Report,
    sources: Sequence[Dataset],
    *,
    model: ModelIdentity,
    series_instance_uid: str,
    sop_instance_uid: str,
    read_instance_uid: str | None = None,
    series_number: int = SR_SERIES_NUMBER,
    instance_number: int = 1,
    when: dt.datetime | None = None,
    verdict: FeedbackOut | None = None,
    predecessor_uids: tuple[str, str] | None = None,
    verifying_organization: str = "Radiology",
) -> hd.sr.ComprehensiveSR:
    """The report as a Comprehensive SR in the sources' study.

    `sources`: the study's images (headers are enough: read with stop_before_pixels), all of one
    study; `read_instance_uid`: the image the model read, to which bounding boxes refer.
    `verdict`: the radiologist's latest feedback, which makes this the report's next version: signed
    (accepted / edited: the signed text, COMPLETE, VERIFIED by the radiologist, FINAL, the coded
    findings as the radiologist called them) or rejected (still unverified, the reason first);
    `predecessor_uids` (series, instance) of the version it replaces, in PredecessorDocumentsSequence.
    """
    sources = study_sources(sources)
    read_image = next((ds for ds in sources if ds.SOPInstanceUID == read_instance_uid), None)
    when = when or dt.datetime.now(dt.timezone.utc)

    device = device_observer(model)
    signed = verdict is not None and verdict.decision in ("accepted", "edited")
    notice = AI_NOTICE.format(model=model.label)
    if report.requires_radiologist_review:
        reasons = "; ".join(report.review_reasons) or "flagged by QA"
        notice += f" Radiologist review required first: {reasons}."
    findings_text, impression = report.findings_text, report.impression
    reported = list(report.findings)
    if verdict is not None:
        who = verdict.reviewer_name or verdict.reviewer
        at = verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")
        if signed:
            notice = (f"SIGNED REPORT. Drafted by {model.label} (AI); reviewed"
                      f"{', edited' if verdict.decision == 'edited' else ''} and signed by {who} at {at}.")
            if verdict.final_text:
                findings_text, impression = signed_sections(verdict.final_text)
            reported = _as_called(report, verdict)
        else:
            notice = (f"REJECTED by {who} at {at}: {verdict.reason}. The AI draft below ({model.label}) is not a "
                      "report and must not be used for diagnosis.")

    findings: list = []
    if findings_text:
        findings.append(_text(C.FINDING, findings_text))
    findings += [_finding_item(f, read_image) for f in reported]
    if report.not_assessed:
        findings.append(_text(C.COMMENT, "Not assessed by the model (neither positive nor negative): "
                                         + ", ".join(report.not_assessed)))
    findings += [_image(ds, "CONTAINS") for ds in sources]

    root = hd.sr.ContainerContentItem(name=C.DOCUMENT_TITLE)
    root.ContentSequence = hd.sr.ContentSequence([
        *hd.sr.LanguageOfContentItemAndDescendants(C.ENGLISH),
        *hd.sr.ObservationContext(observer_device_context=device),
        _text(C.COMMENT, notice),
        _code(C.PRELIMINARY_REPORT, C.NO if signed else C.YES, "CONTAINS"),
        _code(C.REVIEW_REQUIRED, C.YES if report.requires_radiologist_review and verdict is None else C.NO, "CONTAINS"),
        _container(C.FINDINGS_SECTION, findings),
        _container(C.IMPRESSIONS_SECTION, [_text(C.IMPRESSION, impression or "(none)")]),
        _container(C.RECOMMENDATIONS_SECTION, [_text(C.RECOMMENDATION, report.recommendations or "(none)")]),
    ])

    equipment = model_equipment(model, when, f"AI model {model.label} drafted this preliminary report")
    sr = hd.sr.ComprehensiveSR(
        evidence=list(sources),
        content=root,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=model.manufacturer[:64],
        is_complete=signed,
        is_final=signed,
        is_verified=signed,
        verifying_observer_name=_person_name(verdict.reviewer_name or verdict.reviewer) if signed else None,
        verifying_organization=verifying_organization[:64] if signed else None,
        previous_versions=[_predecessor(sources[0], *predecessor_uids)] if predecessor_uids else None,
        contributing_equipment=[equipment],
    )
    sr.SeriesDescription = SIGNED_SERIES_DESCRIPTION if signed else SERIES_DESCRIPTION
    sr.PreliminaryFlag = "FINAL" if signed else "PRELIMINARY"
    declare_local_scheme(sr)
    return sr
