"""A finished report as an IHE AI Results SR: a TID 1500 Measurement Report (highdicom).

What AI-result consumers (IHE AIR, OHIF's SR viewport, dcm4chee's AI worklists) read: each
observation the model assessed is a measurement group with a coded qualitative evaluation, its
probability, the region it refers to and the algorithm that produced it. The narrative (findings,
impression, recommendations) is not part of TID 1500; it stays in the text SR (libs/sr/builder.py),
which can be stored beside this one (CXR_SR_TEMPLATES).

    CONTAINER  Imaging Measurement Report (DCM 126000)                         TID 1500
      HAS CONCEPT MOD  Language = en-US
      HAS OBS CONTEXT  Observer Type = Device; the model (UID, name, version)
      HAS CONCEPT MOD  Procedure reported = Chest imaging (SCT 413815006)
      CONTAINS  CONTAINER Image Library → the source images
      CONTAINS  CONTAINER Imaging Measurements
                  CONTAINER Measurement Group       one per assessed observation      TID 1410 / 1501
                    Tracking Identifier / Tracking Unique Identifier (stable per job and observation)
                    Finding = <observation code>      (libs/sr/codes.py, the text SR's)
                    Algorithm Name / Version / Parameters (operating threshold)         TID 4019
                    Finding Site = Chest, with laterality when the model gave one
                    IMAGE REGION  SCOORD POLYLINE on the image the model read (its box, source pixels)
                      or Source image for the group when the model gave no box
                    NUM  Probability (DCM 122157), %   (with the algorithm, TID 300)
                    CODE <observation> = Present / Absent (the head's call at its threshold)
                    CODE Severity, CODE Critical finding                      qualitative evaluations

Header: CompletionFlag PARTIAL, VerificationFlag UNVERIFIED, PreliminaryFlag PRELIMINARY, a series
description that says "AI generated", the model as Contributing Equipment: the same markings as
the text SR. Patient and study attributes are copied from the source images (PHI: never logged).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from libs.domain.report import AssessedObservation, Finding, Report
from libs.sr import codes as C
from libs.sr.builder import ModelIdentity, declare_local_scheme, device_observer, model_equipment, study_sources

SERIES_DESCRIPTION = "AI generated measurement report (unverified)"
SR_SERIES_NUMBER = 991
PROCEDURE = C._std(codes.SCT.ChestImaging)          # SCT 413815006 Chest imaging
CHEST = C._std(codes.SCT.Chest)                      # SCT 816094009
PROBABILITY = C._std(codes.DCM.Probability)          # DCM 122157
PRESENT = C._std(codes.SCT.Present)                  # SCT 52101004
ABSENT = C._std(codes.SCT.Absent)                    # SCT 272519000
SOURCE = hd.sr.CodedConcept(value="260753009", scheme_designator="SCT", meaning="Source")  # as highdicom's library


def measurement_report_uids(job_id: str) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the job's TID 1500 SR: stable, so a retried store
    sends the same instance; a series of its own beside the text SR's."""
    return (generate_uid(entropy_srcs=["cxr-report tid1500 series", job_id]),
            generate_uid(entropy_srcs=["cxr-report tid1500 instance", job_id]))


def _observations(report: Report) -> list[AssessedObservation]:
    """Every assessed observation; a report from before `observations` existed has its findings only."""
    if report.observations:
        return list(report.observations)
    return [AssessedObservation(label=f.label, probability=f.confidence, threshold=0.0, present=True,
                                is_critical=f.is_critical, bounding_box=f.bounding_box) for f in report.findings]


def _image_library(sources: Sequence[Dataset]) -> hd.sr.ContainerContentItem:
    """TID 1600 Image Library: highdicom's (with the TID 1603 projection radiography descriptors) when
    every image has Patient Orientation and Imager Pixel Spacing; otherwise the images without
    descriptors (they are optional; many CRs carry neither, and none is made up)."""
    if all(len(ds.get("PatientOrientation") or []) == 2 and "ImagerPixelSpacing" in ds for ds in sources):
        return hd.sr.ImageLibrary(list(sources))[0]
    group = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibraryGroup, relationship_type="CONTAINS")
    group.ContentSequence = hd.sr.ContentSequence([
        hd.sr.ImageContentItem(name=SOURCE, referenced_sop_class_uid=ds.SOPClassUID,
                               referenced_sop_instance_uid=ds.SOPInstanceUID, relationship_type="CONTAINS")
        for ds in sources])
    library = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibrary, relationship_type="CONTAINS")
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library


def _group(obs: AssessedObservation, finding: Finding | None, index: int, *, job_key: str,
           model: ModelIdentity, read_image: Dataset | None):  # noqa: ANN202 - a highdicom template
    concept = C.observation_code(obs.label)
    parameters = [f"operating threshold {obs.threshold:.4f}"] if obs.threshold else None
    algorithm = hd.sr.AlgorithmIdentification(name=model.name[:64], version=model.version[:64],
                                              parameters=parameters, manufacturer=model.manufacturer[:64])
    tracking = hd.sr.TrackingIdentifier(
        uid=generate_uid(entropy_srcs=["cxr-report tid1500 finding", job_key, obs.label]),
        identifier=f"{obs.label} ({index})"[:64])
    laterality = C.LATERALITIES.get(finding.laterality) if finding and finding.laterality else None
    evaluations = [hd.sr.QualitativeEvaluation(name=concept, value=PRESENT if obs.present else ABSENT),
                   hd.sr.QualitativeEvaluation(name=C.CRITICAL_FINDING,
                                               value=C.YES if obs.is_critical and obs.present else C.NO)]
    if finding and finding.severity:
        evaluations.append(hd.sr.QualitativeEvaluation(name=C.SEVERITY, value=C.SEVERITIES[finding.severity]))
    common = dict(
        tracking_identifier=tracking,
        finding_type=concept,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(anatomic_location=CHEST, laterality=laterality)],
        measurements=[hd.sr.Measurement(name=PROBABILITY, value=round(obs.probability * 100, 2), unit=C.PERCENT,
                                        algorithm_id=algorithm)],
        qualitative_evaluations=evaluations,
    )
    box = obs.bounding_box or (finding.bounding_box if finding else None)
    if read_image is not None and box:
        x0, y0, x1, y1 = (float(v) for v in box)
        # Box edges are pixel edges (x1, y1 exclusive), as SR image coordinates: (0, 0) is the top
        # left corner of the top left pixel. A closed polyline: the first point repeated.
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float),
            source_image=hd.sr.SourceImageForRegion(read_image.SOPClassUID, read_image.SOPInstanceUID))
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=region, **common)
    sources = ([hd.sr.SourceImageForMeasurementGroup(read_image.SOPClassUID, read_image.SOPInstanceUID)]
               if read_image is not None else None)
    return hd.sr.MeasurementsAndQualitativeEvaluations(source_images=sources, **common)


def build_measurement_report_sr(
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
) -> hd.sr.ComprehensiveSR:
    """The report's assessed observations as a TID 1500 Measurement Report in the sources' study.

    `sources`: the study's images (headers are enough), all of one study; `read_instance_uid`: the
    image the model read, to which regions refer.
    """
    sources = study_sources(sources)
    read_image = next((ds for ds in sources if ds.SOPInstanceUID == read_instance_uid), None)
    when = when or dt.datetime.now(dt.timezone.utc)
    by_label = {f.label: f for f in report.findings}
    groups = [_group(obs, by_label.get(obs.label), i, job_key=sop_instance_uid, model=model, read_image=read_image)
              for i, obs in enumerate(_observations(report), start=1)]

    device = device_observer(model)
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=PROCEDURE,
        imaging_measurements=groups or None,
        language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(C.ENGLISH),
    )
    # The Image Library goes before Imaging Measurements (TID 1500 row order).
    items = content[0].ContentSequence
    at = next(i for i, item in enumerate(items) if item.ConceptNameCodeSequence[0].CodeValue == "126010")
    items.insert(at, _image_library(sources))
    equipment = model_equipment(model, when, f"AI model {model.label} assessed these findings")
    sr = hd.sr.ComprehensiveSR(
        evidence=list(sources),
        content=content,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=model.manufacturer[:64],
        is_complete=False,
        is_final=False,
        is_verified=False,
        performed_procedure_codes=[PROCEDURE],
        contributing_equipment=[equipment],
    )
    sr.SeriesDescription = SERIES_DESCRIPTION
    sr.PreliminaryFlag = "PRELIMINARY"
    declare_local_scheme(sr)
    return sr
