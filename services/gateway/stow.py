"""STOW-RS (DICOM PS3.18 §10.5 Store Instances): storing each part and building the response.

How results are reported (one design, for every client):

- Every part is stored on its own (`accept_instance` in its own transaction): a bad part stores
  nothing and never undoes the parts around it.
- HTTP status: 200 when every instance is stored; 202 when some are stored and some failed;
  409 when none is stored.
- 200 / 202 bodies are the Store Instances Response Module in DICOM JSON (`application/dicom+json`):
  stored instances in ReferencedSOPSequence (0008,1199) with ReferencedSOPClassUID (0008,1150) and
  ReferencedSOPInstanceUID (0008,1155); failed ones in FailedSOPSequence (0008,1198) with, when the
  part was readable enough to tell, the same two UIDs, and FailureReason (0008,1197) from PS3.18
  Table I.2-2:
      0xC000 (49152)  cannot understand: not DICOM, truncated, undecodable pixels, not a chest
                      CR/DX, wrong part content type (our InputRejected reasons);
      0xA901 (43265)  the instance belongs to another study than the one in the request URI
                      (an implementation code in the A9xx "does not match" range);
      0x0110 (272)    processing failure: an unexpected server-side error (see the server log).
  No RetrieveURL is given: this gateway does not serve WADO-RS.
- The human-readable reason of each failure, which DICOM JSON has no standard attribute for, is
  sent as an HTTP `Warning` header (the mechanism PS3.18 uses for status details):
      Warning: 299 cxr-gateway "part 2 (1.2.3...): modality MR is not a projection radiograph ..."
  one header per failed part (at most MAX_WARNINGS), PHI-free like every reason we produce.
- 409 (nothing stored): the body is an RFC 9457 problem (`application/problem+json`) instead, with
  a `failures` list [{index, sop_instance_uid?, failure_reason, reason}], so clients that only
  read problem details learn why; `index` is the part's 0-based position in the request.
- An instance whose SOPInstanceUID is already stored is a success, not an error: the first copy is
  kept unchanged and the instance is listed in ReferencedSOPSequence with WarningReason (0008,1196)
  0xB00E (45070) "instance already stored", plus a Warning header. PS3.18 Table I.2-1 defines no
  code for a duplicate (B000 coercion, B006 elements discarded, B007 does not match SOP class) and
  lets an implementation add its own, documented in its conformance statement (docs/pacs.md).
  45070 is the value Microsoft's DICOM service uses for "SOP instance already exists"; it reports
  it as a *failure* with 409, which a forwarding PACS treats as a failed transfer (Orthanc's STOW-RS
  client fails a job when FailedSOPSequence is not empty). Here it is a warning, so a PACS that
  sends a study again (a retried route, a re-forward) succeeds, and HTTP stays 200 when every
  instance is stored, newly or before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from libs.core.errors import InputRejected
from libs.pipeline.intake import accept_instance
from libs.storage.db import session_scope
from services.gateway.multipart import MultipartError, Part

log = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
DICOM_JSON_MEDIA_TYPE = "application/dicom+json"

FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_STUDY_MISMATCH = 0xA901
FAILURE_PROCESSING = 0x0110
WARNING_ALREADY_STORED = 0xB00E  # 45070, implementation-specific (see the module docstring)

MAX_WARNINGS = 50
WARN_AGENT = "cxr-gateway"


@dataclass(frozen=True)
class PartResult:
    index: int
    sop_class_uid: str | None
    sop_instance_uid: str | None
    stored: bool
    newly_stored: bool = False
    failure_reason: int | None = None
    reason: str | None = None


def _uid(ds: Any, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed element
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def store_part(index: int, part: Part, engine: Engine, dicom_dir: Path, study_uid: str | None) -> PartResult:
    """Validates and stores one part; never raises (the outcome is in the result)."""
    media = None
    try:
        media = part.content_type
    except MultipartError:
        return PartResult(index, None, None, False, failure_reason=FAILURE_CANNOT_UNDERSTAND,
                          reason="the part's Content-Type is malformed")
    if media is not None and media.type != DICOM_MEDIA_TYPE:
        return PartResult(index, None, None, False, failure_reason=FAILURE_CANNOT_UNDERSTAND,
                          reason=f"the part's Content-Type is {media.type}, expected {DICOM_MEDIA_TYPE}")

    from libs.dicom import read_dataset

    sop_class = sop_instance = None
    try:
        # A first read gives the UIDs for the response and lets us refuse another study's
        # instance before anything is written; accept_instance then validates fully.
        ds = read_dataset(part.content)
        sop_class, sop_instance = _uid(ds, "SOPClassUID"), _uid(ds, "SOPInstanceUID")
        found = _uid(ds, "StudyInstanceUID")
        del ds
        if study_uid is not None:
            if found != study_uid:
                return PartResult(index, sop_class, sop_instance, False, failure_reason=FAILURE_STUDY_MISMATCH,
                                  reason=f"the instance belongs to study {found or '(none)'}, not to study {study_uid}"
                                         " named in the request URI")
        with session_scope(engine) as session:
            accepted = accept_instance(session, part.content, dicom_dir)
        return PartResult(index, sop_class, accepted.instance.sop_instance_uid, True,
                          newly_stored=accepted.newly_stored)
    except InputRejected as exc:
        return PartResult(index, sop_class, sop_instance, False, failure_reason=FAILURE_CANNOT_UNDERSTAND,
                          reason=exc.reason)
    except Exception:  # noqa: BLE001 - one part's server error must not lose the others
        log.exception("STOW part %d (SOP instance %s): unexpected error", index, sop_instance)
        return PartResult(index, sop_class, sop_instance, False, failure_reason=FAILURE_PROCESSING,
                          reason="the server failed to store this instance; see the server log")


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


def store_response(results: list[PartResult]) -> dict[str, Any]:
    """The Store Instances Response Module as DICOM JSON (PS3.18 §F.2)."""
    body: dict[str, Any] = {}
    failed = []
    for r in results:
        if r.stored:
            continue
        item: dict[str, Any] = {}
        if r.sop_class_uid:
            item["00081150"] = _ui(r.sop_class_uid)
        if r.sop_instance_uid:
            item["00081155"] = _ui(r.sop_instance_uid)
        item["00081197"] = {"vr": "US", "Value": [r.failure_reason]}
        failed.append(item)
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    referenced = []
    for r in results:
        if not r.stored:
            continue
        item = {}
        if r.sop_class_uid:
            item["00081150"] = _ui(r.sop_class_uid)
        if r.sop_instance_uid:
            item["00081155"] = _ui(r.sop_instance_uid)
        if not r.newly_stored:
            item["00081196"] = {"vr": "US", "Value": [WARNING_ALREADY_STORED]}
        referenced.append(item)
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    return body


def _header_text(text: str) -> str:
    # Header values are Latin-1 on the wire; keep them to printable ASCII and escape the quoted-string.
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return clean.replace("\\", "\\\\").replace('"', '\\"')


def warning_headers(results: list[PartResult]) -> list[str]:
    values = []
    for r in results:
        who = f"part {r.index}" + (f" ({r.sop_instance_uid})" if r.sop_instance_uid else "")
        if not r.stored:
            text = f"{who}: {r.reason}"
        elif not r.newly_stored:
            text = f"{who}: already stored; the first copy is kept"
        else:
            continue
        values.append(f'299 {WARN_AGENT} "{_header_text(text)}"')
    if len(values) > MAX_WARNINGS:
        values = values[:MAX_WARNINGS] + [f'299 {WARN_AGENT} "{len(values) - MAX_WARNINGS} more not shown"']
    return values


def failures_list(results: list[PartResult]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        if r.stored:
            continue
        entry: dict[str, Any] = {"index": r.index}
        if r.sop_instance_uid:
            entry["sop_instance_uid"] = r.sop_instance_uid
        entry["failure_reason"] = r.failure_reason
        entry["reason"] = r.reason
        out.append(entry)
    return out
