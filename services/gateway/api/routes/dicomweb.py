"""DICOMweb STOW-RS: `POST /dicomweb/studies[/{study_uid}]` with `multipart/related; type="application/dicom"`.

How outcomes are reported is described in services/gateway/stow.py.

The body is never held in memory: it is fed to the streaming multipart parser as it arrives
(in batches of about FEED_BATCH bytes, parsed and written in a worker thread so the event loop
never waits on the disk), each part lands in its own file under <data_dir>/uploads, and the parts
are stored from there once the whole body has arrived and parsed. Limits answered before anything
is stored: a body over max_upload_mb (from Content-Length, or counted while streaming when there is
none) and more parts than max_instances_per_request are 413; per-instance limits (image size,
instances per study) fail that part (libs/pipeline/intake.py). The spool files are deleted however
the request ends, a client that disconnects mid-body included.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from libs.core.errors import InputRejected
from libs.pipeline.intake import IntakeLimits, check_uid
from services.gateway.api.deps import EngineDep, SettingsDep, audit_entity
from services.gateway.multipart import MultipartError, MultipartParser, parse_media_type
from services.gateway.problems import ProblemError, problem_response, problem_responses
from services.gateway.stow import (
    DICOM_JSON_MEDIA_TYPE,
    DICOM_MEDIA_TYPE,
    PartResult,
    PartSpool,
    TooManyParts,
    failures_list,
    store_part,
    store_response,
    warning_headers,
)

log = logging.getLogger(__name__)

MB = 1024 * 1024
# Chunks from the server (64 KiB or so) are joined to this size before a thread parses and writes
# them: fewer thread hand-offs, and still a small bound on what one upload holds in memory.
FEED_BATCH = 1 * MB

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

_STORE_RESPONSE_SCHEMA = {
    "type": "object",
    "description": "Store Instances Response Module in DICOM JSON: 00081199 ReferencedSOPSequence, "
                   "00081198 FailedSOPSequence (with 00081197 FailureReason)",
    "additionalProperties": True,
}

_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'multipart/related; type="application/dicom"; boundary=...: one DICOM Part 10 file per part',
        "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
    },
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every instance stored (or already stored)",
          "content": {DICOM_JSON_MEDIA_TYPE: {"schema": _STORE_RESPONSE_SCHEMA}}},
    202: {"description": "Some instances stored, some failed; a Warning header per failed part says why",
          "content": {DICOM_JSON_MEDIA_TYPE: {"schema": _STORE_RESPONSE_SCHEMA}}},
    **problem_responses(
        400, 409, 413, 415, 422,
        descriptions={
            400: "Empty body, missing boundary, or malformed multipart",
            409: "No instance stored; `failures` lists each part's reason",
            413: "Body larger than the server's max_upload_mb, or more parts than max_instances_per_request;"
                 " nothing is stored",
            415: 'Not multipart/related; type="application/dicom"',
            422: "The study UID in the path is not a valid DICOM UID",
        },
    ),
}

_DESCRIPTION = (
    "Stores chest radiographs (CR/DX) sent by a PACS or modality. Each part is validated (every header rule, and "
    "its pixel data checked complete; decoded once, at ingestion) and stored on its own: one bad part stores nothing and does not undo the others. "
    "200: all stored; 202: some failed (FailedSOPSequence + a `Warning` header per failure); 409: none "
    "stored (problem details with a `failures` list). A SOP instance already stored is reported as stored. "
    "Limits: a body over max_upload_mb or more parts than max_instances_per_request is 413 with nothing "
    "stored; an instance beyond max_instances_per_study fails with 0xA700, an image over max_image_pixels "
    "with 0xC000."
)


def _boundary_of(request: Request) -> str:
    value = request.headers.get("content-type")
    if not value:
        raise ProblemError(415, 'Content-Type must be multipart/related; type="application/dicom"')
    try:
        media = parse_media_type(value)
    except MultipartError as exc:
        raise ProblemError(415, f"Content-Type cannot be parsed: {exc}") from None
    if media.type != "multipart/related":
        raise ProblemError(415, f'Content-Type is {media.type}; expected multipart/related; type="application/dicom"')
    root = media.params.get("type")
    if root is not None and root.strip().lower() != DICOM_MEDIA_TYPE:
        raise ProblemError(415, f"multipart/related type {root!r} is not supported; only {DICOM_MEDIA_TYPE} parts are")
    boundary = media.params.get("boundary")
    if not boundary:
        raise ProblemError(400, "Content-Type has no boundary parameter", slug="malformed-multipart",
                           title="Malformed multipart body")
    return boundary


def _malformed(exc: MultipartError) -> ProblemError:
    return ProblemError(400, f"malformed multipart body: {exc}", slug="malformed-multipart",
                        title="Malformed multipart body")


async def _receive(request: Request, parser: MultipartParser, limit: int) -> int:
    """Feeds the request body to `parser` as it arrives; returns its size in bytes.

    413 as soon as the body is known to exceed `limit`: from Content-Length before reading, else
    while counting; the bytes past the limit are never parsed nor written.
    """
    too_large = ProblemError(413, f"the request body is larger than the {limit // MB} MB limit")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    received = 0
    batch: list[bytes] = []
    batched = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        batch.append(chunk)
        batched += len(chunk)
        if batched >= FEED_BATCH:
            await run_in_threadpool(parser.feed, b"".join(batch))
            batch.clear()
            batched = 0
    if batch:
        await run_in_threadpool(parser.feed, b"".join(batch))
    return received


async def _spool_body(request: Request, boundary: str, spool: PartSpool, limit: int) -> None:
    """Parses the streamed body into `spool`: 400 / 413 problems for bodies that cannot be stored."""
    try:
        parser = MultipartParser(boundary, spool)
        received = await _receive(request, parser, limit)
        if not received:
            raise ProblemError(400, "the request body is empty", slug="empty-body", title="Empty body")
        await run_in_threadpool(parser.close)
    except MultipartError as exc:
        raise _malformed(exc) from None
    except TooManyParts as exc:
        raise ProblemError(413, str(exc), slug="too-many-parts", title="Too many parts") from None
    except ClientDisconnect:
        # Nobody will read this answer; it ends the request without an error traceback in the log.
        log.info("STOW: the client disconnected before the body was complete; nothing stored")
        raise ProblemError(400, "the client disconnected before the body was complete",
                           slug="client-disconnected", title="Incomplete body") from None
    if not spool.parts:
        raise ProblemError(400, "the multipart body holds no parts", slug="empty-body", title="Empty body")


async def _stow(request: Request, engine: Any, settings: Any, study_uid: str | None) -> JSONResponse:
    if study_uid is not None:
        try:
            check_uid(study_uid, "the study UID in the path")
        except InputRejected as exc:
            raise ProblemError(422, exc.reason, slug="invalid-uid", title="Invalid UID") from None
    boundary = _boundary_of(request)
    with PartSpool(settings.data_dir / "uploads", settings.max_instances_per_request) as spool:
        await _spool_body(request, boundary, spool, settings.max_upload_mb * MB)
        results = await run_in_threadpool(_store_all, spool, engine, settings, study_uid)
    studies = sorted({r.study_uid for r in results if r.stored and r.study_uid})
    if studies:  # the audit trail names the study written (or how many, for a mixed request)
        audit_entity(request, "ImagingStudy", studies[0] if len(studies) == 1 else f"{len(studies)} studies")
    return _answer(request, results)


def _store_all(spool: PartSpool, engine: Any, settings: Any, study_uid: str | None) -> list[PartResult]:
    limits = IntakeLimits.of(settings)
    results = []
    for i, part in enumerate(spool.parts):
        results.append(store_part(i, part, engine, settings.dicom_dir, study_uid, limits))
        spool.discard(part)
    return results


def _answer(request: Request, results: list[PartResult]) -> JSONResponse:
    stored = [r for r in results if r.stored]
    failed = [r for r in results if not r.stored]
    for r in failed:
        log.info("STOW part %d (SOP instance %s) rejected: %s", r.index, r.sop_instance_uid, r.reason)
    log.info("STOW: %d part(s): %d stored (%d new), %d failed", len(results), len(stored),
             sum(r.newly_stored for r in stored), len(failed))

    if not stored:
        first = failed[0].reason
        detail = (f"the instance was not stored: {first}" if len(failed) == 1
                  else f"none of the {len(failed)} instances was stored; first reason: {first}")
        response = problem_response(request, 409, detail, slug="stow-failed", title="No instance stored",
                                    failures=failures_list(results))
    else:
        response = JSONResponse(store_response(results), status_code=202 if failed else 200,
                                media_type=DICOM_JSON_MEDIA_TYPE)
    for value in warning_headers(results):
        response.headers.append("Warning", value)
    return response


@router.post(
    "/studies",
    summary="STOW-RS: store DICOM instances",
    description=_DESCRIPTION,
    responses=_RESPONSES,
    openapi_extra=_OPENAPI,
    response_class=JSONResponse,
)
async def stow(request: Request, engine: EngineDep, settings: SettingsDep) -> JSONResponse:
    return await _stow(request, engine, settings, None)


@router.post(
    "/studies/{study_uid}",
    summary="STOW-RS: store DICOM instances of one study",
    description=_DESCRIPTION + " Instances of another study are refused (FailureReason 0xA901).",
    responses=_RESPONSES,
    openapi_extra=_OPENAPI,
    response_class=JSONResponse,
)
async def stow_study(study_uid: str, request: Request, engine: EngineDep, settings: SettingsDep) -> JSONResponse:
    return await _stow(request, engine, settings, study_uid)
