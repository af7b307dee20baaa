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
                      CR/DX, an image over max_image_pixels, wrong part content type (our
                      InputRejected reasons);
      0xA901 (43265)  the instance belongs to another study than the one in the request URI
                      (an implementation code in the A9xx "does not match" range);
      0xA700 (42752)  refused, out of resources: the study already holds max_instances_per_study
                      instances (PS3.18's A7xx "out of resources"; the Warning header says so);
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

Parts arrive on disk, not in memory: `PartSpool` receives them from the streaming multipart parser
and writes each part's content to its own file under <data_dir>/uploads; `store_part` validates
and stores from that file, and the spool deletes every file it made when the request ends, however
it ends (stored, rejected, over a limit, client gone).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from sqlalchemy import Engine

from libs.core.errors import InputRejected
from libs.pipeline.intake import IntakeLimits, StudyFull, accept_instance
from libs.storage.db import session_scope
from services.gateway.multipart import MediaType, MultipartError, parse_media_type

log = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
DICOM_JSON_MEDIA_TYPE = "application/dicom+json"

FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_STUDY_MISMATCH = 0xA901
FAILURE_OUT_OF_RESOURCES = 0xA700
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
    study_uid: str | None = None  # of a stored instance: what the audit trail names


class TooManyParts(Exception):
    """The request holds more parts than max_instances_per_request (answered 413, nothing stored)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request holds more than {limit} parts, the limit per request")
        self.limit = limit


@dataclass(frozen=True)
class SpooledPart:
    """One part of a STOW-RS body: its headers, and its content in a file of the spool."""

    headers: dict[str, str]
    path: Path
    size: int

    @property
    def content_type(self) -> MediaType | None:
        value = self.headers.get("content-type")
        return parse_media_type(value) if value else None


class PartSpool:
    """A PartSink (services/gateway/multipart.py) writing each part's content to its own file.

    Files are made in `directory` (created if missing) with mkstemp, so concurrent requests never
    share one. `close()` deletes every file this spool made; use it as a context manager.
    """

    def __init__(self, directory: Path, max_parts: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._dir = directory
        self._max_parts = max_parts
        self._made: list[Path] = []
        self._current: tuple[dict[str, str], Path, BinaryIO] | None = None
        self._size = 0
        self.parts: list[SpooledPart] = []

    def start_part(self, index: int, headers: dict[str, str]) -> None:
        # Refused before its first byte is written: an over-long request costs no disk.
        if index >= self._max_parts:
            raise TooManyParts(self._max_parts)
        fd, name = tempfile.mkstemp(dir=self._dir, prefix="stow-", suffix=".part")
        path = Path(name)
        self._made.append(path)
        self._current = (headers, path, os.fdopen(fd, "wb"))
        self._size = 0

    def write(self, data: bytes) -> None:
        assert self._current is not None
        self._current[2].write(data)
        self._size += len(data)

    def end_part(self) -> None:
        assert self._current is not None
        headers, path, fh = self._current
        self._current = None
        fh.close()
        self.parts.append(SpooledPart(headers, path, self._size))

    def discard(self, part: SpooledPart) -> None:
        """Deletes one part's file early (once stored, it only takes disk space)."""
        part.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._current is not None:
            self._current[2].close()
            self._current = None
        for path in self._made:
            path.unlink(missing_ok=True)
        self._made.clear()

    def __enter__(self) -> PartSpool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _uid(ds: Any, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed element
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def _identify(path: Path) -> tuple[str | None, str | None, str | None]:
    """(SOPClassUID, SOPInstanceUID, StudyInstanceUID) from the header; InputRejected when not DICOM.

    The header alone is read (no pixel data) when the file is Part 10; a bare data set or a
    broken file goes through read_dataset, which reads a bare one or says why the file is unusable.
    """
    import pydicom

    from libs.dicom import read_dataset

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not Part 10 or broken: read_dataset tells which
        ds = read_dataset(path)
    return _uid(ds, "SOPClassUID"), _uid(ds, "SOPInstanceUID"), _uid(ds, "StudyInstanceUID")


def store_part(index: int, part: SpooledPart, engine: Engine, dicom_dir: Path, study_uid: str | None,
               limits: IntakeLimits) -> PartResult:
    """Validates and stores one part from its file; never raises (the outcome is in the result)."""
    media = None
    try:
        media = part.content_type
    except MultipartError:
        return PartResult(index, None, None, False, failure_reason=FAILURE_CANNOT_UNDERSTAND,
                          reason="the part's Content-Type is malformed")
    if media is not None and media.type != DICOM_MEDIA_TYPE:
        return PartResult(index, None, None, False, failure_reason=FAILURE_CANNOT_UNDERSTAND,
                          reason=f"the part's Content-Type is {media.type}, expected {DICOM_MEDIA_TYPE}")

    sop_class = sop_instance = None
    try:
        # A first read gives the UIDs for the response and lets us refuse another study's
        # instance before anything is written; accept_instance then validates fully.
        sop_class, sop_instance, found = _identify(part.path)
        if study_uid is not None and found != study_uid:
            return PartResult(index, sop_class, sop_instance, False, failure_reason=FAILURE_STUDY_MISMATCH,
                              reason=f"the instance belongs to study {found or '(none)'}, not to study {study_uid}"
                                     " named in the request URI")
        with session_scope(engine) as session:
            accepted = accept_instance(session, part.path, dicom_dir, limits=limits)
        return PartResult(index, sop_class, accepted.instance.sop_instance_uid, True,
                          newly_stored=accepted.newly_stored, study_uid=accepted.instance.study_uid)
    except StudyFull as exc:
        return PartResult(index, sop_class, sop_instance, False, failure_reason=FAILURE_OUT_OF_RESOURCES,
                          reason=exc.reason)
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
