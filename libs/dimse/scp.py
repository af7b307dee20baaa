"""The C-STORE SCP: modalities and PACS send chest radiographs here over DICOM DIMSE (pynetdicom).

Each received instance goes through the same intake as a STOW-RS part (libs.pipeline.intake:
header size check, pixel-data completeness check (decoded once, at ingestion), UID checks, limits, stored once per SOPInstanceUID, file and row
together or neither). What the SCP answers (PS3.4 Annex B.2.3, PS3.7 Annex C):

- association: refused (rejected-permanent) when the called AE title is not ours or the calling AE
  title is not in `dimse_allowed_calling_aets` (if that list is set); presentation contexts other
  than Verification and the chest radiograph storage SOP classes below are refused per context;
- C-STORE: 0x0000 stored (also for an instance already stored: the sender's retry is not an error),
  0xA700 out of resources (the study is full: CXR_MAX_INSTANCES_PER_STUDY), 0xA900 the data set's
  SOP class or instance UID does not match the request's, 0xC000 cannot understand (the intake's
  reason: not a radiograph, undecodable pixel data, bad UIDs, too large), 0x0110 processing failure
  (ours; the log has it);
- C-ECHO: 0x0000.

A study received here gets its report like a pushed one: the stable-study watcher
(`CXR_AUTO_REPORT_ON_STABLE`, in the gateway) sees its instances in the database, or the EHR asks
(POST /api/v1/studies/{id}/report). No PHI is logged: UIDs and AE titles only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    Verification,
)
from sqlalchemy import Engine

from libs.core.errors import InputRejected
from libs.pipeline.intake import IntakeLimits, StudyFull, accept_instance
from libs.storage.db import session_scope

log = logging.getLogger(__name__)

# Projection radiography: what the platform reads (validate_dataset accepts CR and DX).
STORAGE_SOP_CLASSES: tuple[UID, ...] = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
)
# The common transfer syntaxes; each decodes with the project's decoders (pylibjpeg, gdcm, pyjpegls).
TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110


@dataclass(frozen=True)
class ScpConfig:
    ae_title: str
    host: str
    port: int
    allowed_calling_aets: tuple[str, ...]
    max_pdu: int
    acse_timeout_s: float
    network_timeout_s: float
    max_associations: int

    @classmethod
    def of(cls, settings) -> "ScpConfig":  # noqa: ANN001 - libs.core.config.Settings
        return cls(settings.dimse_ae_title, settings.dimse_host, settings.dimse_port,
                   tuple(a.strip() for a in settings.dimse_allowed_calling_aets if a.strip()),
                   settings.dimse_max_pdu, settings.dimse_acse_timeout_s, settings.dimse_network_timeout_s,
                   settings.dimse_max_associations)


class StoreHandler:
    """EVT_C_STORE: one received instance through the intake; returns the C-STORE status."""

    def __init__(self, engine: Engine, dicom_dir: Path, limits: IntakeLimits) -> None:
        self.engine, self.dicom_dir, self.limits = engine, dicom_dir, limits

    def __call__(self, event: evt.Event) -> int:
        calling = event.assoc.requestor.ae_title
        request = event.request
        sop_class, sop_instance = request.AffectedSOPClassUID, request.AffectedSOPInstanceUID
        try:
            data = event.encoded_dataset()  # preamble + File Meta + the data set as received
            dataset = event.dataset
        except Exception as exc:  # noqa: BLE001 - pynetdicom could not decode what was sent
            log.warning("C-STORE from %s: instance %s not decodable: %s", calling, sop_instance, type(exc).__name__)
            return CANNOT_UNDERSTAND
        if (getattr(dataset, "SOPClassUID", None), getattr(dataset, "SOPInstanceUID", None)) != (sop_class, sop_instance):
            log.warning("C-STORE from %s: the data set's SOP class/instance UIDs differ from the request's", calling)
            return DATASET_DOES_NOT_MATCH
        try:
            with session_scope(self.engine) as session:
                accepted = accept_instance(session, data, self.dicom_dir, limits=self.limits)
        except StudyFull as exc:
            log.warning("C-STORE from %s: instance %s refused: %s", calling, sop_instance, exc.reason)
            return OUT_OF_RESOURCES
        except InputRejected as exc:
            log.warning("C-STORE from %s: instance %s refused: %s", calling, sop_instance, exc.reason)
            return CANNOT_UNDERSTAND
        except Exception:  # noqa: BLE001 - the sender gets a failure status, we keep serving
            log.exception("C-STORE from %s: instance %s: unexpected error", calling, sop_instance)
            return PROCESSING_FAILURE
        log.info("C-STORE from %s: instance %s of study %s %s", calling, sop_instance, accepted.instance.study_uid,
                 "stored" if accepted.newly_stored else "already stored")
        return SUCCESS


def make_ae(config: ScpConfig) -> AE:
    ae = AE(ae_title=config.ae_title)
    ae.maximum_pdu_size = config.max_pdu
    ae.acse_timeout = config.acse_timeout_s
    ae.network_timeout = config.network_timeout_s
    ae.dimse_timeout = config.network_timeout_s
    ae.maximum_associations = config.max_associations
    # Refuse an association that calls another AE title, or comes from a calling AE not on the list.
    ae.require_called_aet = True
    if config.allowed_calling_aets:
        ae.require_calling_aet = list(config.allowed_calling_aets)
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
    return ae


def log_association(event: evt.Event) -> None:
    a = event.assoc
    log.info("association %s from %s (%s:%s)", event.event.name, a.requestor.ae_title, a.requestor.address,
             a.requestor.port)


def serve(config: ScpConfig, engine: Engine, dicom_dir: Path, limits: IntakeLimits, *, block: bool = True):  # noqa: ANN201
    """Starts the SCP; with block=False returns pynetdicom's server (call .shutdown() to stop)."""
    if not config.allowed_calling_aets:
        log.warning("DIMSE SCP %s: any calling AE title may associate (set CXR_DIMSE_ALLOWED_CALLING_AETS)",
                    config.ae_title)
    ae = make_ae(config)
    handlers = [(evt.EVT_C_STORE, StoreHandler(engine, dicom_dir, limits)),
                (evt.EVT_ACCEPTED, log_association), (evt.EVT_REJECTED, log_association)]
    log.info("DIMSE SCP %s listening on %s:%d", config.ae_title, config.host, config.port)
    return ae.start_server((config.host, config.port), block=block, evt_handlers=handlers)
