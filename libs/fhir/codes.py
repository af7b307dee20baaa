"""Code systems and codes the FHIR resources use; docs/fhir.md has the same tables with their sources.

SNOMED CT codes were checked against public terminology material (HL7 implementation guides, DICOM
context groups, SNOMED International pages). `Snomed.confidence` says how well each one fits the
CheXpert observation: "exact", "approximate" (a broader or neighbouring concept) or there is no
SNOMED coding at all (None), where no concept could be verified; those observations are coded with
the project's own CheXpert code system only, never with a guessed SNOMED code.

Standard systems (LOINC, SNOMED CT, UCUM, terminology.hl7.org) are fixed; the project's own URLs are
`Definitions`, derived from the configured canonical base (CXR_FHIR_DEFINITIONS_BASE_URL).
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

# AI-transparency security label (HL7 AI Transparency on FHIR IG, ValueSet ProvenanceVS): every resource
# holding AI-generated content carries it in meta.security.
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"

# The project's own canonical URLs (extensions, code systems, naming systems, search parameters) all
# hang off one base, CXR_FHIR_DEFINITIONS_BASE_URL: a hospital publishing these resources sets its
# own. The default is the namespace the problem types already use; it is not a resolvable registry.
DEFAULT_BASE = "https://cxr-report.dev/fhir"


@dataclass(frozen=True)
class Definitions:
    """Every project-defined URL, derived from one canonical base (`Definitions.of(settings)`)."""

    base: str = DEFAULT_BASE

    def __post_init__(self) -> None:
        if not self.base.startswith(("http://", "https://", "urn:")):
            raise ValueError(f"the FHIR definitions base must be an http(s) or urn: URI, not {self.base!r}")
        object.__setattr__(self, "base", self.base.rstrip("/"))

    @classmethod
    def of(cls, settings: object | None) -> "Definitions":
        """The definitions of these settings (their `fhir_definitions_base_url`); the default without."""
        base = getattr(settings, "fhir_definitions_base_url", None) if settings is not None else None
        return DEFAULT if not base or base.rstrip("/") == DEFAULT_BASE else cls(base)

    def _url(self, kind: str, name: str) -> str:
        return f"{self.base}/{kind}/{name}"

    # code systems and identifier systems
    @property
    def chexpert_system(self) -> str:
        return self._url("CodeSystem", "chexpert-observation")

    @property
    def cxr_system(self) -> str:  # confidence, threshold, ... component codes
        return self._url("CodeSystem", "cxr-report")

    @property
    def subject_system(self) -> str:
        return self._url("NamingSystem", "study-pseudonym")

    @property
    def audit_agent_system(self) -> str:
        return self._url("NamingSystem", "client")

    @property
    def audit_entity_system(self) -> str:
        return self._url("NamingSystem", "entity")

    # extensions
    @property
    def ext_requires_review(self) -> str:
        return self._url("StructureDefinition", "requires-radiologist-review")

    @property
    def ext_review_reason(self) -> str:
        return self._url("StructureDefinition", "review-reason")

    @property
    def ext_not_assessed(self) -> str:
        return self._url("StructureDefinition", "not-assessed")

    @property
    def ext_bounding_box(self) -> str:
        return self._url("StructureDefinition", "bounding-box")

    @property
    def ext_template(self) -> str:
        return self._url("StructureDefinition", "report-template")

    @property
    def ext_audit_chain_hash(self) -> str:
        return self._url("StructureDefinition", "audit-chain-hash")

    # search parameters
    @property
    def search_imaging_study(self) -> str:
        return self._url("SearchParameter", "DiagnosticReport-imaging-study")

    # codes in the project's systems
    def chexpert_code(self, label: str) -> "Code":
        """The project's own code for a CheXpert observation: "pleural-effusion" for "Pleural Effusion"."""
        return Code(self.chexpert_system, label.lower().replace(" ", "-"), label)

    @property
    def confidence(self) -> "Code":
        return Code(self.cxr_system, "model-confidence", "Calibrated probability from the detection head")

    @property
    def threshold(self) -> "Code":
        return Code(self.cxr_system, "decision-threshold", "Per-label decision threshold of the model bundle")


DEFAULT = Definitions()
# The default URLs as constants, for readers without settings.
BASE = DEFAULT.base
CHEXPERT_SYSTEM = DEFAULT.chexpert_system
CXR_SYSTEM = DEFAULT.cxr_system
SUBJECT_SYSTEM = DEFAULT.subject_system
EXT_REQUIRES_REVIEW = DEFAULT.ext_requires_review
EXT_REVIEW_REASON = DEFAULT.ext_review_reason
EXT_NOT_ASSESSED = DEFAULT.ext_not_assessed
EXT_BOUNDING_BOX = DEFAULT.ext_bounding_box
EXT_TEMPLATE = DEFAULT.ext_template
SEARCH_IMAGING_STUDY = DEFAULT.search_imaging_study


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


def chexpert_code(label: str, defs: Definitions = DEFAULT) -> Code:
    """The project's own code for a CheXpert observation: "pleural-effusion" for "Pleural Effusion"."""
    return defs.chexpert_code(label)


def finding_concept(label: str, text: str | None = None, defs: Definitions = DEFAULT) -> dict:
    """CodeableConcept for a finding: SNOMED CT where one is verified, always the CheXpert code."""
    codings = []
    snomed = FINDING_SNOMED[label]
    if snomed is not None:
        codings.append({"system": SNOMED, "code": snomed.code, "display": snomed.display})
    codings.append(defs.chexpert_code(label).coding())
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
CONFIDENCE = DEFAULT.confidence
THRESHOLD = DEFAULT.threshold

CREATE = Code(V3_DATA_OPERATION, "CREATE", "create")
UPDATE = Code(V3_DATA_OPERATION, "UPDATE", "revise")
AUTHOR = Code(PROVENANCE_PARTICIPANT, "author", "Author")
VERIFIER = Code(PROVENANCE_PARTICIPANT, "verifier", "Verifier")

# meta.security of every resource holding AI-generated content (the DiagnosticReport, each Observation):
# v3 ObservationValue AIAST, as the HL7 AI Transparency on FHIR IG (STU1) has every AI-influenced
# resource labelled.
AI_ASSERTED = Code(V3_OBSERVATION_VALUE, "AIAST", "Artificial Intelligence asserted")
# After a radiologist signed the AI's draft (HL7 AI Transparency on FHIR, AddedProvenanceCS).
AI_TRANSPARENCY_PROVENANCE = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AddedProvenanceCS"
CLINICIAN_ASSERTED_FROM_AI = Code(AI_TRANSPARENCY_PROVENANCE, "CLINAST_AIRPT", "Clinician Asserted from AI Reported")
