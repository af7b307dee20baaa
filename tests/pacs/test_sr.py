"""The report as a DICOM Comprehensive SR (libs/sr), checked by parsing it back with highdicom."""

from __future__ import annotations

import io

import highdicom as hd
import pydicom
import pytest
from pydicom.dataset import Dataset

from libs.domain.report import Finding, Report
from libs.sr import AI_NOTICE, SERIES_DESCRIPTION, ModelIdentity, build_report_sr, sr_uids
from libs.sr.codes import OBSERVATION_CODES
from tests.pacs.conftest import make_chest_study

MODEL = ModelIdentity("cxr-test-model", "1.2.3")


def _report(study_uid: str) -> Report:
    return Report(
        report_id="rpt-test",
        study_id=study_uid,
        findings=[
            Finding(finding="Small right pleural effusion.", label="Pleural Effusion", confidence=0.91,
                    severity="mild", laterality="right", bounding_box=[100, 200, 400, 600], is_critical=True),
            Finding(finding="Enlarged cardiac silhouette.", label="Cardiomegaly", confidence=0.72),
        ],
        findings_text="Small right pleural effusion. Enlarged cardiac silhouette.",
        impression="Right pleural effusion. Cardiomegaly.",
        recommendations="Clinical correlation recommended.",
        not_assessed=["Fracture"],
        model_version="1.2.3",
        requires_radiologist_review=True,
        review_reasons=["critical finding reported: Pleural Effusion"],
    )


def _sources() -> list[Dataset]:
    study = make_chest_study()
    return [pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True) for b in study.files]


def _roundtrip(sr: Dataset) -> hd.sr.ComprehensiveSR:
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    parsed = hd.sr.srread(io.BytesIO(buf.getvalue()))
    assert isinstance(parsed, hd.sr.ComprehensiveSR)
    return parsed


def _items(seq, found=None):  # noqa: ANN001, ANN202 - flatten the content tree
    found = [] if found is None else found
    for item in seq:
        found.append(item)
        if "ContentSequence" in item:
            _items(item.ContentSequence, found)
    return found


def _name(item) -> str:  # noqa: ANN001
    return item.ConceptNameCodeSequence[0].CodeMeaning


def test_sr_carries_report_text_coded_findings_and_ai_preliminary_marking() -> None:
    sources = _sources()
    report = _report(sources[0].StudyInstanceUID)
    series_uid, sop_uid = sr_uids("job-1")
    sr = _roundtrip(build_report_sr(report, sources, model=MODEL, series_instance_uid=series_uid,
                                    sop_instance_uid=sop_uid, read_instance_uid=sources[0].SOPInstanceUID))

    # Filed in the source study, as a preliminary, unverified, partial document.
    assert sr.StudyInstanceUID == sources[0].StudyInstanceUID
    assert sr.PatientID == sources[0].PatientID
    assert (sr.SOPInstanceUID, sr.SeriesInstanceUID) == (sop_uid, series_uid)
    assert sr.Modality == "SR"
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == ("PARTIAL", "UNVERIFIED", "PRELIMINARY")
    assert sr.SeriesDescription == SERIES_DESCRIPTION and "AI generated" in sr.SeriesDescription
    assert sr.ConceptNameCodeSequence[0].CodeValue == "18748-4"  # Diagnostic Imaging Report

    items = _items(sr.ContentSequence)
    texts = {(_name(i), i.TextValue) for i in items if i.ValueType == "TEXT"}
    assert ("Finding", report.findings_text) in texts
    assert ("Impression", report.impression) in texts
    assert ("Recommendation", report.recommendations) in texts
    notice = next(v for n, v in texts if n == "Comment" and v.startswith("AI-GENERATED PRELIMINARY"))
    assert notice.startswith(AI_NOTICE.format(model=MODEL.label)[:40]) and "Radiologist review required" in notice
    assert any(n == "Comment" and "Fracture" in v for n, v in texts)  # not assessed, never negative
    codes = {(_name(i), i.ConceptCodeSequence[0].CodeMeaning) for i in items if i.ValueType == "CODE"}
    assert ("Preliminary report", "Yes") in codes

    # One coded finding per reported observation, with its certainty, severity, side and box.
    findings = [i for i in items if i.ValueType == "CODE" and _name(i) == "Finding"]
    assert [f.ConceptCodeSequence[0].CodeValue for f in findings] == [
        OBSERVATION_CODES["Pleural Effusion"].value, OBSERVATION_CODES["Cardiomegaly"].value]
    assert findings[0].ConceptCodeSequence[0].CodingSchemeDesignator == "SCT"  # 60046008 Pleural effusion
    children = {_name(c): c for c in findings[0].ContentSequence}
    assert float(children["Certainty of Finding"].MeasuredValueSequence[0].NumericValue) == pytest.approx(91.0)
    assert children["Laterality"].ConceptCodeSequence[0].CodeMeaning == "Right"
    assert children["Severity (attribute)"].ConceptCodeSequence[0].CodeMeaning == "Mild"
    assert children["Critical finding"].ConceptCodeSequence[0].CodeMeaning == "Yes"
    region = children["Image Region"]
    assert region.GraphicType == "POLYLINE"
    assert [float(v) for v in region.GraphicData] == [100, 200, 400, 200, 400, 600, 100, 600, 100, 200]
    assert region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sources[0].SOPInstanceUID

    # References to every source image: as content and as evidence.
    referenced = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items if i.ValueType == "IMAGE"}
    assert referenced == {ds.SOPInstanceUID for ds in sources}
    evidence = {ref.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
    assert evidence == {ds.SOPInstanceUID for ds in sources}

    # The model is the observer device and contributing (processing) equipment.
    obs = {_name(i): i for i in sr.ContentSequence if i.RelationshipType == "HAS OBS CONTEXT"}
    assert obs["Observer Type"].ConceptCodeSequence[0].CodeMeaning == "Device"
    assert obs["Device Observer Name"].TextValue == MODEL.name
    assert obs["Device Observer UID"].UID == MODEL.device_uid
    ours = [e for e in sr.ContributingEquipmentSequence if e.Manufacturer == MODEL.manufacturer]
    assert ours[0].PurposeOfReferenceCodeSequence[0].CodeValue == "109102"  # Processing Equipment
    assert len(ours) == 1 and ours[0].ManufacturerModelName == MODEL.name and ours[0].SoftwareVersions == "1.2.3"
    # The local coding scheme is declared.
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99CXR"


def test_sr_uids_are_stable_per_job_and_sources_must_share_a_study() -> None:
    assert sr_uids("job-a") == sr_uids("job-a") != sr_uids("job-b")
    sources = _sources()
    other = _sources()[0]
    series_uid, sop_uid = sr_uids("job-c")
    with pytest.raises(ValueError, match="2 studies"):
        build_report_sr(_report(sources[0].StudyInstanceUID), [sources[0], other], model=MODEL,
                        series_instance_uid=series_uid, sop_instance_uid=sop_uid)
    with pytest.raises(ValueError, match="at least one"):
        build_report_sr(_report("1.2.3"), [], model=MODEL, series_instance_uid=series_uid, sop_instance_uid=sop_uid)


def test_every_chexpert_observation_has_a_code_and_no_box_without_the_read_image() -> None:
    sources = _sources()
    labels = list(OBSERVATION_CODES)
    report = _report(sources[0].StudyInstanceUID).model_copy(update={"findings": [
        Finding(finding=label, label=label, confidence=0.6, bounding_box=[1, 2, 3, 4]) for label in labels]})
    series_uid, sop_uid = sr_uids("job-d")
    sr = _roundtrip(build_report_sr(report, sources, model=MODEL, series_instance_uid=series_uid,
                                    sop_instance_uid=sop_uid, read_instance_uid=None))
    items = _items(sr.ContentSequence)
    assert len([i for i in items if i.ValueType == "CODE" and _name(i) == "Finding"]) == len(labels)
    assert not [i for i in items if i.ValueType == "SCOORD"]


def test_sources_without_type2_patient_and_study_attributes_give_an_sr_with_them_empty() -> None:
    # Found by tests/reliability: anonymised images without PatientBirthDate made every store-back fail.
    sources = _sources()
    dropped = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName")
    for ds in sources:
        for keyword in dropped:
            if keyword in ds:
                delattr(ds, keyword)
    series_uid, sop_uid = sr_uids("job-type2")
    sr = _roundtrip(build_report_sr(_report(sources[0].StudyInstanceUID), sources, model=MODEL,
                                    series_instance_uid=series_uid, sop_instance_uid=sop_uid))
    for keyword in dropped:
        assert keyword in sr and not sr.data_element(keyword).value, keyword
    assert sr.PatientID == sources[0].PatientID  # what the images had is kept
    assert all("PatientBirthDate" not in ds for ds in sources)  # the callers' datasets are untouched


def test_a_signed_verdict_makes_a_verified_final_sr_that_replaces_the_draft() -> None:
    import datetime as dt

    from libs.domain.feedback import FeedbackOut, FindingCorrection

    sources = _sources()
    report = _report(str(sources[0].StudyInstanceUID))
    verdict = FeedbackOut(report_id="rpt-x", version=1, decision="edited", final_text="Right effusion.\n\nEffusion.",
                          corrections=[FindingCorrection(observation="Cardiomegaly", present=False)], edit_distance=3,
                          reviewer="apikey:abc", reviewer_name="Dr Who", created_at=dt.datetime.now(dt.timezone.utc))
    series, sop = sr_uids("job-1", 2)
    assert (series, sop) != sr_uids("job-1")
    sr = _roundtrip(build_report_sr(report, sources, model=MODEL, series_instance_uid=series, sop_instance_uid=sop,
                                    verdict=verdict, predecessor_uids=sr_uids("job-1")))
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == ("COMPLETE", "VERIFIED", "FINAL")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Dr Who^"
    previous = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert previous.ReferencedSOPInstanceUID == sr_uids("job-1")[1]
    items = _items(sr.ContentSequence)
    texts = [i.TextValue for i in items if i.ValueType == "TEXT"]
    assert "Right effusion." in texts and "Effusion." in texts and any(t.startswith("SIGNED REPORT") for t in texts)
    coded = [i.ConceptCodeSequence[0].CodeMeaning for i in items
             if i.ValueType == "CODE" and _name(i) == "Finding"]
    assert coded == ["Pleural effusion"]  # the radiologist called cardiomegaly absent
