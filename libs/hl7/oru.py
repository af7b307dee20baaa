r"""The report as an HL7 v2.5.1 ORU^R01 for RIS / EHR systems that take results over MLLP.

Built with hl7apy and validated against the 2.5.1 message structure (strict) before it is sent:

    MSH  sending app/facility (CXR_HL7_SENDING_*), receiving app/facility (the destination's),
         control id derived from the job id (a re-send carries the same one), processing id P
    PID  patient id (PatientID^^^IssuerOfPatientID), name, birth date, sex: from the study's images
    ORC  RE (observations to follow), placer order = accession number, filler order = report id
    OBR  the same order numbers, universal service id (CXR_HL7_SERVICE_CODE), observation time =
         study date/time, result status P (preliminary), diagnostic service RAD
    NTE  the AI notice: generated, preliminary, not reviewed; QA's review reasons when required
    OBX  FT Findings (LOINC 18782-3), FT Impression (19005-8), FT Recommendations (18783-1), then one
         NM per reported finding: its code (libs/sr/codes.py, the SR's), probability in %, abnormal
         flag A, result status P; each with observation method "AI" (OBX-17)

Free text is escaped per HL7 (python-hl7's escape of | ^ & ~ \\) and lines are joined with \\.br\\.
The message holds PHI (it is the result for the patient's record): it is never logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from pydicom.dataset import Dataset

from libs.domain.feedback import FeedbackOut, signed_sections
from libs.domain.report import Report
from libs.sr.builder import AI_NOTICE
from libs.sr.codes import OBSERVATION_CODES

VERSION = "2.5.1"
FINDINGS_CODE = "18782-3^Radiology Study observation (narrative)^LN"
IMPRESSION_CODE = "19005-8^Radiology Imaging study [Impression] (narrative)^LN"
RECOMMENDATION_CODE = "18783-1^Radiology Study recommendation (narrative)^LN"
_SEX = {"M": "M", "F": "F", "O": "O"}
# Any parsed message gives python-hl7's escape() with the standard separators.
_ESCAPER = hl7.parse("MSH|^~\\&|X|X|X|X|20000101||ACK|1|P|2.5.1")


@dataclass(frozen=True)
class OruHeader:
    """Who sends to whom, and what the order is (configuration, not report content)."""

    sending_application: str = "CXR_REPORT"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    service_code: str = "18748-4^Diagnostic imaging study^LN"


def control_id(job_id: str, version: int = 1) -> str:
    """MSH-10, 20 characters, the same for every send of one version of a job's report (receivers can
    de-duplicate); version 1 is the AI draft, each radiologist verdict the next."""
    key = job_id if version == 1 else f"{job_id}:v{version}"
    return hashlib.sha256(key.encode()).hexdigest()[:20].upper()


# hl7apy escapes a backslash it does not know as an escape sequence, \.br\ included: line breaks are
# marked with a control character (never in report text: stripped below) and written out by to_er7().
_LINE_BREAK = "\x1e"


def escape(text: str) -> str:
    lines = ("".join(ch for ch in line if ch >= " " or ch == "\t") for line in text.splitlines())
    return _LINE_BREAK.join(_ESCAPER.escape(line) for line in lines)


def to_er7(message: Message) -> str:
    r"""The message as ER7 (segments separated by CR), line breaks in text as \.br\."""
    return message.to_er7().replace(_LINE_BREAK, "\\.br\\")


def _ts(date: str | None, time: str | None = None) -> str:
    digits = "".join(ch for ch in (date or "") if ch.isdigit())[:8]
    if len(digits) != 8:
        return ""
    clock = "".join(ch for ch in (time or "").split(".")[0] if ch.isdigit())[:6]
    return digits + clock


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _name(ds: Dataset) -> str:
    # DICOM PN family^given^middle^prefix^suffix maps onto XPN's first five components.
    # PID-5 is required: an image without a name gets UNKNOWN (the id in PID-3 identifies the patient)
    name = "^".join(escape(part) for part in _text(ds, "PatientName").split("=")[0].split("^")).strip("^")
    return name or "UNKNOWN"


def result_status(verdict: FeedbackOut | None) -> str:
    """OBR-25 / OBX-11: P the AI draft, F signed by a radiologist, X rejected (HL7 tables 0123 / 0085)."""
    if verdict is None:
        return "P"
    return "X" if verdict.decision == "rejected" else "F"


def build_oru_r01(report: Report, source: Dataset, job_id: str, header: OruHeader, model_label: str,
                  now: dt.datetime | None = None, verdict: FeedbackOut | None = None) -> Message:
    """The ORU^R01 of one report; `source` is a header of one of the study's images; `verdict`, the
    radiologist's latest feedback, makes it the report's next version (final, or rejected)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    status = result_status(verdict)
    findings_text, impression = report.findings_text, report.impression
    if verdict is not None and verdict.final_text:
        findings_text, impression = signed_sections(verdict.final_text)
    # Built tolerant (OBX-5 is "varies": strict mode makes it ST, 199 characters, which a report's
    # text exceeds), then validated against the 2.5.1 structure, OBX-5 left as "varies".
    m = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    msh = m.msh
    msh.msh_3 = escape(header.sending_application)
    msh.msh_4 = escape(header.sending_facility)
    msh.msh_5 = escape(header.receiving_application)
    msh.msh_6 = escape(header.receiving_facility)
    msh.msh_7 = now.strftime("%Y%m%d%H%M%S")
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = control_id(job_id, 1 if verdict is None else verdict.version + 1)
    msh.msh_11 = "P"
    msh.msh_12 = VERSION

    result = m.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").add_segment("PID")
    pid.pid_1 = "1"
    issuer = escape(_text(source, "IssuerOfPatientID"))
    pid.pid_3 = escape(_text(source, "PatientID")) + (f"^^^{issuer}" if issuer else "")
    pid.pid_5 = _name(source)
    pid.pid_7 = _ts(_text(source, "PatientBirthDate"))
    pid.pid_8 = _SEX.get(_text(source, "PatientSex").upper(), "U")

    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    accession = escape(_text(source, "AccessionNumber"))
    orc = order.add_segment("ORC")
    orc.orc_1 = "RE"
    orc.orc_2 = accession
    orc.orc_3 = escape(report.report_id)
    orc.orc_5 = "CM"
    obr = order.add_segment("OBR")
    obr.obr_1 = "1"
    obr.obr_2 = accession
    obr.obr_3 = escape(report.report_id)
    obr.obr_4 = header.service_code
    obr.obr_7 = _ts(_text(source, "StudyDate"), _text(source, "StudyTime"))
    obr.obr_22 = now.strftime("%Y%m%d%H%M%S")
    obr.obr_24 = "RAD"
    obr.obr_25 = status
    notice = AI_NOTICE.format(model=model_label)
    if report.requires_radiologist_review:
        notice += f" Radiologist review required first: {'; '.join(report.review_reasons) or 'flagged by QA'}."
    if verdict is not None:
        who = verdict.reviewer_name or verdict.reviewer
        at = verdict.created_at.strftime("%Y-%m-%d %H:%M UTC")
        if status == "F":
            notice = f"Drafted by {model_label} (AI); reviewed and signed by {who} at {at}."
            # OBR-32 principal result interpreter (NDL): the radiologist who signed
            obr.obr_32 = f"{escape(verdict.reviewer)}&{escape(who)}"
        else:
            notice = f"REJECTED by {who} at {at}: {verdict.reason}. The AI draft is withdrawn."
    nte = order.add_segment("NTE")
    nte.nte_1 = "1"
    nte.nte_3 = escape(notice)

    def obx(value_type: str, code: str, value: str, **extra: str) -> None:
        seg = order.add_group("ORU_R01_OBSERVATION").add_segment("OBX")
        seg.obx_1 = str(len(order.children) - 3)  # after ORC, OBR and NTE: 1, 2, 3 ...
        seg.obx_2 = value_type
        seg.obx_3 = code
        seg.obx_5 = value  # "varies": its type is OBX-2's
        for name, field_value in extra.items():
            setattr(seg, name, field_value)
        seg.obx_11 = "F" if status == "F" else "W" if status == "X" else "P"  # W: the earlier result was wrong
        seg.obx_17 = "AI^Artificial intelligence (model: " + escape(model_label) + ")^L"

    for code, text in ((FINDINGS_CODE, findings_text), (IMPRESSION_CODE, impression),
                       (RECOMMENDATION_CODE, report.recommendations)):
        if text and text.strip():
            obx("FT", code, escape(text))
    for finding in report.findings:
        concept = OBSERVATION_CODES[finding.label]
        obx("NM", f"{concept.value}^{escape(concept.meaning)}^{concept.scheme_designator}",
            f"{100 * float(finding.confidence):.1f}", obx_6="%^percent^UCUM", obx_8="A")
    m.validate()
    return m


def oru_bytes(message: Message) -> bytes:
    return to_er7(message).encode("utf-8")
