"""The report as a TID 1500 Measurement Report (libs/sr/measurement_report.py), read back with
highdicom and with dcmtk's dsrdump (Debian's dcmtk, installed by `make orthanc`)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import highdicom as hd
import pytest
from pydicom.dataset import Dataset

from libs.domain.report import AssessedObservation, Report
from libs.sr import build_measurement_report_sr, measurement_report_uids, sr_uids
from libs.sr.codes import OBSERVATION_CODES
from tests.pacs.test_sr import MODEL, _report, _sources


def _observations() -> list[AssessedObservation]:
    return [
        AssessedObservation(label="Pleural Effusion", probability=0.91, threshold=0.4, present=True, is_critical=True,
                            bounding_box=[100, 200, 400, 600]),
        AssessedObservation(label="Cardiomegaly", probability=0.72, threshold=0.5, present=True),
        AssessedObservation(label="Pneumothorax", probability=0.031, threshold=0.3, present=False, is_critical=True),
    ]


def _build(report: Report, sources: list[Dataset], read: str | None) -> hd.sr.ComprehensiveSR:
    series, sop = measurement_report_uids("job-1")
    return build_measurement_report_sr(report, sources, model=MODEL, series_instance_uid=series,
                                       sop_instance_uid=sop, read_instance_uid=read)


def _roundtrip(sr: Dataset, tmp_path: Path) -> tuple[hd.sr.ComprehensiveSR, Path]:
    path = tmp_path / "tid1500.dcm"
    sr.save_as(path, enforce_file_format=True)
    parsed = hd.sr.srread(path)
    assert isinstance(parsed, hd.sr.ComprehensiveSR)
    return parsed, path


def _dsrdump(path: Path) -> str:
    dump = subprocess.run(["dsrdump", "+Pt", str(path)], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0 and not dump.stderr.strip(), dump.stderr
    return dump.stdout


def test_each_assessed_observation_is_a_coded_evaluation_with_probability_region_and_algorithm(tmp_path: Path) -> None:
    sources = _sources()
    read = str(sources[0].SOPInstanceUID)
    report = _report(str(sources[0].StudyInstanceUID)).model_copy(update={"observations": _observations()})
    sr = _build(report, sources, read)
    parsed, path = _roundtrip(sr, tmp_path)

    assert (parsed.CompletionFlag, parsed.VerificationFlag, parsed.PreliminaryFlag) == (
        "PARTIAL", "UNVERIFIED", "PRELIMINARY")
    assert "AI generated" in parsed.SeriesDescription and parsed.StudyInstanceUID == sources[0].StudyInstanceUID
    content = hd.sr.MeasurementReport.from_sequence([parsed])
    (observer,) = content.get_observer_contexts()
    assert observer[0].ConceptCodeSequence[0].CodeMeaning == "Device"

    # The effusion had a box: a planar ROI on the image the model read, its corners in source pixels.
    (roi,) = content.get_planar_roi_measurement_groups()
    assert roi.tracking_identifier == "Pleural Effusion (1)" and roi.finding_type.value == "60046008"
    assert roi.reference_type.meaning == "Image Region"
    assert roi.roi.GraphicType == "POLYLINE"
    assert [round(v) for v in roi.roi.GraphicData] == [100, 200, 400, 200, 400, 600, 100, 600, 100, 200]
    assert roi.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == read
    (probability,) = roi.get_measurements()
    assert probability.name.value == "122157" and probability.value == pytest.approx(91.0)
    assert probability.unit.value == "%"
    evaluations = {e.name.meaning: e.value.meaning for e in roi.get_qualitative_evaluations()}
    assert evaluations == {"Pleural effusion": "Present", "Critical finding": "Yes", "Severity (attribute)": "Mild"}
    assert roi.finding_sites[0].laterality.meaning == "Right"

    # The others had none: groups on the read image, the negative one Absent with its probability.
    groups = {g.tracking_identifier: g for g in content.get_image_measurement_groups()}
    assert set(groups) == {"Cardiomegaly (2)", "Pneumothorax (3)"}
    pneumothorax = groups["Pneumothorax (3)"]
    assert pneumothorax.finding_type.value == OBSERVATION_CODES["Pneumothorax"].value
    assert pneumothorax.get_measurements()[0].value == pytest.approx(3.1)
    calls = {e.name.meaning: e.value.meaning for e in pneumothorax.get_qualitative_evaluations()}
    assert calls == {"Pneumothorax": "Absent", "Critical finding": "No"}

    # TID 4019: the algorithm (name, version, its operating threshold) on each group and measurement.
    dump = _dsrdump(path)
    assert "# TID 1500 (DCMR)" in dump and "# TID 1410 (DCMR)" in dump and dump.count("# TID 1501 (DCMR)") == 2
    assert dump.count('"Algorithm Name")="cxr-test-model"') == 6
    assert dump.count('"Algorithm Version")="1.2.3"') == 6
    assert '"Algorithm Parameters")="operating threshold 0.3000"' in dump
    # Every source image is in the Image Library.
    assert dump.count('<contains IMAGE:(,,"Source")') == len(sources)


def test_a_report_without_observations_reports_its_findings_and_uids_are_the_jobs(tmp_path: Path) -> None:
    sources = _sources()
    report = _report(str(sources[0].StudyInstanceUID))
    assert report.observations == []
    sr = _build(report, sources, None)  # and the read image unknown: no region, no source image
    parsed, path = _roundtrip(sr, tmp_path)
    content = hd.sr.MeasurementReport.from_sequence([parsed])
    assert content.get_planar_roi_measurement_groups() == []
    labels = [g.finding_type.meaning for g in content.get_image_measurement_groups()]
    assert labels == ["Pleural effusion", "Cardiomegaly"]
    assert measurement_report_uids("job-1") == measurement_report_uids("job-1") != measurement_report_uids("job-2")
    assert set(measurement_report_uids("job-1")).isdisjoint(sr_uids("job-1"))
    _dsrdump(path)


def test_image_library_descriptors_only_from_attributes_the_images_have(tmp_path: Path) -> None:
    sources = _sources()
    described = []
    for ds in sources:
        ds = copy.deepcopy(ds)
        ds.PatientOrientation = ["L", "F"]
        ds.ImagerPixelSpacing = [0.1, 0.1]
        described.append(ds)
    report = _report(str(sources[0].StudyInstanceUID))
    _, path = _roundtrip(_build(report, described, None), tmp_path)
    assert '"Horizontal Pixel Spacing")="0.1"' in _dsrdump(path)
    _, path = _roundtrip(_build(report, sources, None), tmp_path)
    assert "Pixel Spacing" not in _dsrdump(path)


def test_sources_of_two_studies_or_none_are_refused() -> None:
    sources = _sources()
    report = _report(str(sources[0].StudyInstanceUID))
    with pytest.raises(ValueError, match="at least one source image"):
        _build(report, [], None)
    other = copy.deepcopy(sources[0])
    other.StudyInstanceUID = "1.2.3.4"
    with pytest.raises(ValueError, match="more than one study"):
        _build(report, [sources[0], other], None)
