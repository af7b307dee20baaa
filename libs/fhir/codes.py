"""Code systems and codes the FHIR resources use; docs/fhir.md has the same tables with their sources.

SNOMED CT codes were checked against public terminology material (HL7 implementation guides, DICOM
context groups, SNOMED International pages). `Snomed.confidence` says how well each one fits the
CheXpert observation: "exact", "approximate" (a broader or neighbouring concept) or there is no
SNOMED coding at all (None), where no concept could be verified; those observations are coded with
the project's own CheXpert code system only, never with a guessed SNOMED code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from libs.domain.labels import CHEXPERT_LABELS

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service section
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DICOM_UID = "urn:dicom:uid"  # identifier system for DICOM UIDs, values "urn:oid:<uid>"
RFC_3986 = "urn:ietf:rfc:3986"

# The project's own systems (https://cxr-report.dev is the namespace the problem types already use).
BASE = "https://cxr-report.dev/fhir"
CHEXPERT_SYSTEM = f"{BASE}/CodeSystem/chexpert-observation"
CXR_SYSTEM = f"{BASE}/CodeSystem/cxr-report"  # confidence, threshold, ... component codes
SUBJECT_SYSTEM = f"{BASE}/NamingSystem/study-pseudonym"
EXT_REQUIRES_REVIEW = f"{BASE}/StructureDefinition/requires-radiologist-review"
EXT_REVIEW_REASON = f"{BASE}/StructureDefinition/review-reason"
EXT_NOT_ASSESSED = f"{BASE}/StructureDefinition/not-assessed"
EXT_BOUNDING_BOX = f"{BASE}/StructureDefinition/bounding-box"
EXT_TEMPLATE = f"{BASE}/StructureDefinition/report-template"
SEARCH_IMAGING_STUDY = f"{BASE}/SearchParameter/DiagnosticReport-imaging-study"


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


# ---------------------------------------------------------------- study codes (LOINC)
XR_CHEST_2_VIEWS = Code(LOINC, "36643-5", "XR Chest 2 Views")
XR_CHEST_SINGLE_VIEW = Code(LOINC, "36554-4", "XR Chest Single view")

RADIOLOGY = Code(V2_0074, "RAD", "Radiology")
IMAGING = Code(OBSERVATION_CATEGORY, "imaging", "Imaging")

# ---------------------------------------------------------------- finding codes (SNOMED CT)


@dataclass(frozen=True)
class Snomed:
    code: str
    display: str
    confidence: Literal["exact", "approximate"]


FINDING_SNOMED: dict[str, Snomed | None] = {
    "No Finding": None,  # derived (nothing positive); never a finding, never emitted
    "Enlarged Cardiomediastinum": None,  # no verified concept for a widened cardiomediastinal silhouette
    "Cardiomegaly": Snomed("8186001", "Cardiomegaly", "exact"),
    "Lung Opacity": Snomed("28328005", "Abnormal radiologic density", "approximate"),
    "Lung Lesion": Snomed("309529002", "Lung mass", "approximate"),
    "Edema": Snomed("19242006", "Pulmonary edema", "exact"),
    "Consolidation": Snomed("95436008", "Lung consolidation", "exact"),
    "Pneumonia": Snomed("233604007", "Pneumonia", "exact"),
    "Atelectasis": Snomed("46621007", "Atelectasis", "exact"),
    "Pneumothorax": Snomed("36118008", "Pneumothorax", "exact"),
    "Pleural Effusion": Snomed("60046008", "Pleural effusion", "exact"),
    "Pleural Other": Snomed("301256004", "Pleura finding", "approximate"),
    "Fracture": Snomed("125605004", "Fracture of bone", "exact"),
    "Support Devices": None,  # a device is not a diagnosis; no finding concept verified
}
assert tuple(FINDING_SNOMED) == CHEXPERT_LABELS


def chexpert_code(label: str) -> Code:
    """The project's own code for a CheXpert observation: "pleural-effusion" for "Pleural Effusion"."""
    return Code(CHEXPERT_SYSTEM, label.lower().replace(" ", "-"), label)


def finding_concept(label: str, text: str | None = None) -> dict:
    """CodeableConcept for a finding: SNOMED CT where one is verified, always the CheXpert code."""
    codings = []
    snomed = FINDING_SNOMED[label]
    if snomed is not None:
        codings.append({"system": SNOMED, "code": snomed.code, "display": snomed.display})
    codings.append(chexpert_code(label).coding())
    return {"coding": codings, "text": text or label}


# Qualifier values (SNOMED CT); DICOM CID 244 (laterality) and CID 6130 (severity) use the same codes.
LATERALITY: dict[str, Code] = {
    "right": Code(SNOMED, "24028007", "Right"),
    "left": Code(SNOMED, "7771000", "Left"),
    "bilateral": Code(SNOMED, "51440002", "Right and left"),
}
SEVERITY_ATTRIBUTE = Code(SNOMED, "246112005", "Severity")
SEVERITY: dict[str, Code] = {
    "mild": Code(SNOMED, "255604002", "Mild"),
    "moderate": Code(SNOMED, "6736007", "Moderate"),
    "severe": Code(SNOMED, "24484000", "Severe"),
}

# v3 ObservationInterpretation
POSITIVE = Code(V3_INTERPRETATION, "POS", "Positive")
NEGATIVE = Code(V3_INTERPRETATION, "NEG", "Negative")
ABNORMAL = Code(V3_INTERPRETATION, "A", "Abnormal")
CRITICAL_ABNORMAL = Code(V3_INTERPRETATION, "AA", "Critical abnormal")

# Components of a finding Observation (the project's own codes: no standard code says "AI confidence").
CONFIDENCE = Code(CXR_SYSTEM, "model-confidence", "Calibrated probability from the detection head")
THRESHOLD = Code(CXR_SYSTEM, "decision-threshold", "Per-label decision threshold of the model bundle")

CREATE = Code(V3_DATA_OPERATION, "CREATE", "create")
AUTHOR = Code(PROVENANCE_PARTICIPANT, "author", "Author")
