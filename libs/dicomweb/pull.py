"""Pulling a study from a PACS: QIDO-RS to find it, WADO-RS to fetch it, `accept_instance` to store it.

All or nothing, in two phases:
1. fetch: every wanted instance is streamed from the PACS (multipart, one part in memory at a time)
   into a spool folder on disk. A PACS that is down, times out or breaks off half-way raises
   `PacsUnavailable` and the spool is deleted: nothing has been stored.
2. store: the spooled files go through `accept_instance` (full validation) in one database
   transaction. An instance that is not a usable chest radiograph is skipped with its reason; any
   other error rolls the transaction back and removes the files this pull wrote.

Only projection-radiograph series (CR/DX) are fetched: a study on a PACS often also holds SRs,
presentation states or key-object notes (ours included, once results are stored back).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from libs.core.config import PacsServer, Settings
from libs.core.errors import InputRejected
from libs.dicomweb.client import PacsUnavailable, describe, make_client

log = logging.getLogger(__name__)

# Ask for the instances as stored: JPEG 2000, JPEG-LS... are decoded here, never transcoded there.
ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)


@dataclass
class PullResult:
    pacs: str
    fetched: int = 0
    newly_stored: int = 0
    already_stored: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Series:
    uid: str
    modality: str | None


def _value(item: dict, tag: str) -> str | None:
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


def _find_series(client, pacs: PacsServer, study_uid: str) -> list[_Series]:  # noqa: ANN001
    try:
        found = client.search_for_series(study_instance_uid=study_uid, fields=["00080060"])
    except Exception as exc:  # noqa: BLE001 - every failure of the PACS is reported the same way
        raise describe(pacs, exc, f"looking for study {study_uid} (QIDO-RS)") from exc
    out = []
    for item in found:
        uid = _value(item, "0020000E")
        if uid:
            out.append(_Series(uid, (_value(item, "00080060") or "").upper() or None))
    return out


def _spool(dataset, folder: Path) -> Path:  # noqa: ANN001 - pydicom Dataset
    path = folder / f"{uuid.uuid4().hex}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def _fetch(client, pacs: PacsServer, study_uid: str, series: Sequence[_Series],  # noqa: ANN001
           wanted: dict[str, str], folder: Path) -> list[Path]:
    """Streams the wanted instances into `folder`; returns the spooled files."""
    files: list[Path] = []
    try:
        if wanted:
            for sop_uid, series_uid in wanted.items():
                ds = client.retrieve_instance(study_uid, series_uid, sop_uid, media_types=ANY_TRANSFER_SYNTAX)
                files.append(_spool(ds, folder))
                del ds
        else:
            for s in series:
                for ds in client.iter_series(study_uid, s.uid, media_types=ANY_TRANSFER_SYNTAX):
                    files.append(_spool(ds, folder))
                    del ds
    except Exception as exc:  # noqa: BLE001
        raise describe(pacs, exc, f"retrieving study {study_uid} (WADO-RS)") from exc
    return files


def _store(engine: Engine, settings: Settings, files: list[Path], result: PullResult) -> None:
    from libs.pipeline.intake import accept_instance
    from libs.storage.db import session_scope

    written: list[Path] = []
    try:
        with session_scope(engine) as session:
            for path in files:
                try:
                    accepted = accept_instance(session, path.read_bytes(), settings.dicom_dir)
                except InputRejected as exc:
                    result.skipped.append(exc.reason)
                    continue
                if accepted.newly_stored:
                    result.newly_stored += 1
                    if accepted.instance.path is not None:
                        written.append(Path(accepted.instance.path))
                else:
                    result.already_stored += 1
            if result.newly_stored + result.already_stored == 0:
                raise InputRejected(
                    f"none of the {len(files)} instance(s) fetched from PACS {result.pacs!r} is usable: "
                    + "; ".join(dict.fromkeys(result.skipped))
                )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def pull_study(engine: Engine, settings: Settings, study_uid: str, images: Sequence = ()) -> PullResult:
    """Fetches `study_uid` (or just the `images` named, each with series_uid/instance_uid) from the
    first configured PACS that has it and stores it. Raises PacsUnavailable (transient) or
    InputRejected (no PACS has the study, or nothing in it is a usable chest radiograph)."""
    from libs.dicom.rules import ACCEPTED_MODALITIES

    servers = settings.pull_servers
    if not servers:
        raise InputRejected(f"study {study_uid} is not stored and no PACS is configured to pull it from")
    wanted = {ref.instance_uid: ref.series_uid for ref in images}
    unavailable: list[PacsUnavailable] = []
    missing: list[str] = []
    for pacs in servers:
        client = make_client(pacs)
        try:
            series = _find_series(client, pacs, study_uid)
        except PacsUnavailable as exc:
            log.warning("pull of study %s: %s", study_uid, exc.reason)
            unavailable.append(exc)
            continue
        if not series:
            missing.append(pacs.name)
            continue
        if wanted:
            known = {s.uid for s in series}
            absent = sorted({se for se in wanted.values() if se not in known})
            if absent:
                raise InputRejected(f"series {', '.join(absent)} of study {study_uid} is not on PACS {pacs.name!r}")
        usable = [s for s in series if s.modality is None or s.modality in ACCEPTED_MODALITIES]
        if not usable:
            found = sorted({s.modality or "?" for s in series})
            raise InputRejected(f"study {study_uid} on PACS {pacs.name!r} has no projection radiograph "
                                f"(CR/DX) series, only {', '.join(found)}")
        result = PullResult(pacs=pacs.name)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        spool = Path(tempfile.mkdtemp(prefix="pull-", dir=settings.data_dir))
        try:
            files = _fetch(client, pacs, study_uid, usable, wanted, spool)
            result.fetched = len(files)
            log.info("pull of study %s: %d instance(s) fetched from PACS %s", study_uid, len(files), pacs.name)
            if not files:
                raise InputRejected(f"PACS {pacs.name!r} listed study {study_uid} but returned no instances")
            _store(engine, settings, files, result)
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        log.info("pull of study %s from PACS %s: %d new, %d already stored, %d skipped", study_uid,
                 pacs.name, result.newly_stored, result.already_stored, len(result.skipped))
        return result
    if unavailable:
        # Another server may well have it: this is worth retrying.
        raise PacsUnavailable("; ".join(e.reason for e in unavailable)
                              + (f"; not on {', '.join(map(repr, missing))}" if missing else ""))
    raise InputRejected(f"study {study_uid} is not stored here and no configured PACS has it "
                        f"(asked {', '.join(map(repr, missing))})")
