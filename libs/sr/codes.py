"""Coded concepts for the report SR.

Each CheXpert observation is coded with a SNOMED CT or DICOM (DCM) code *only* where the DICOM
standard's own code tables (as shipped in pydicom's code dictionary) name that concept; the others
use the local coding scheme `99CXR` (a private scheme: the "99" prefix is reserved by DICOM PS3.16
for local schemes), which a site maps to its own terminology. No code is invented in SCT or DCM.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from libs.domain.labels import CHEXPERT_LABELS

LOCAL_SCHEME = "99CXR"
LOCAL_SCHEME_NAME = "cxr-report local codes (CheXpert observations)"


def _local(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator=LOCAL_SCHEME, meaning=meaning)


def _std(code) -> CodedConcept:  # noqa: ANN001 - pydicom.sr.coding.Code
    return CodedConcept(value=code.value, scheme_designator=code.scheme_designator, meaning=code.meaning)


# CheXpert observation → the code of the finding it reports.
OBSERVATION_CODES: dict[str, CodedConcept] = {
    "Enlarged Cardiomediastinum": _local("ECM", "Enlarged cardiomediastinum"),
    "Cardiomegaly": _local("CMG", "Cardiomegaly"),
    "Lung Opacity": _std(codes.DCM.Opacity),                # DCM 112001, CID 6102 (chest findings)
    "Lung Lesion": _local("LLS", "Lung lesion"),
    "Edema": _std(codes.SCT.PulmonaryEdema),                # SCT 19242006
    "Consolidation": _local("CNS", "Consolidation"),
    "Pneumonia": _local("PNA", "Pneumonia"),
    "Atelectasis": _local("ATL", "Atelectasis"),
    "Pneumothorax": _std(codes.SCT.Pneumothorax),           # SCT 36118008, CID 6102
    "Pleural Effusion": _std(codes.SCT.PleuralEffusion),    # SCT 60046008
    "Pleural Other": _local("PLO", "Pleural abnormality, other"),
    "Fracture": _local("FRX", "Fracture"),
    "Support Devices": _local("DEV", "Support device"),
}
assert set(OBSERVATION_CODES) == set(CHEXPERT_LABELS) - {"No Finding"}

# Concept names used in the document.
DOCUMENT_TITLE = _std(codes.LN.DiagnosticImagingReport)    # LN 18748-4
FINDINGS_SECTION = _std(codes.DCM.Findings)                 # 121070
FINDING = _std(codes.DCM.Finding)                           # 121071
IMPRESSIONS_SECTION = _std(codes.DCM.Impressions)           # 121072
IMPRESSION = _std(codes.DCM.Impression)                     # 121073
RECOMMENDATIONS_SECTION = _std(codes.DCM.Recommendations)   # 121074
RECOMMENDATION = _std(codes.DCM.Recommendation)             # 121075
COMMENT = _std(codes.DCM.Comment)                           # 121106
CERTAINTY = _std(codes.DCM.CertaintyOfFinding)              # 111012
SEVERITY = _std(codes.SCT.Severity)                         # 246112005
LATERALITY = _std(codes.SCT.Laterality)                     # 272741003
IMAGE_REGION = _std(codes.DCM.ImageRegion)                  # 111030
SOURCE_IMAGE = _std(codes.DCM.SourceImage)                  # 121324
DEVICE = _std(codes.DCM.Device)                             # 121007
PROCESSING_EQUIPMENT = _std(codes.DCM.ProcessingEquipment)  # 109102
PRELIMINARY_REPORT = _std(codes.DCM.PreliminaryReport)      # 121362
ARTIFICIAL_INTELLIGENCE = _std(codes.DCM.ArtificialIntelligence)  # 123110
YES = _std(codes.SCT.Yes)
NO = _std(codes.SCT.No)
CRITICAL_FINDING = _local("CRIT", "Critical finding")
REVIEW_REQUIRED = _local("REVIEW", "Radiologist review required first")
PERCENT = CodedConcept(value="%", scheme_designator="UCUM", meaning="Percent")
ENGLISH = CodedConcept(value="en-US", scheme_designator="RFC5646", meaning="English (United States)")

SEVERITIES: dict[str, CodedConcept] = {
    "mild": _std(codes.SCT.Mild),
    "moderate": _std(codes.SCT.Moderate),
    "severe": _std(codes.SCT.Severe),
}
LATERALITIES: dict[str, CodedConcept] = {
    "left": _std(codes.SCT.Left),
    "right": _std(codes.SCT.Right),
    "bilateral": _std(codes.SCT.Bilateral),
}


def observation_code(label: str) -> CodedConcept:
    try:
        return OBSERVATION_CODES[label]
    except KeyError:
        raise ValueError(f"no code for observation {label!r}") from None
