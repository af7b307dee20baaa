"""IU/Open-i reports: the XML parser, and the end-to-end agreement with the MeSH labels.

The corpus is on PyPI (inside the torchxrayvision wheel), so it is always obtainable: the test fetches
it with ensure_iu_wheel() and fails, not skips, when that does not work.
"""

from __future__ import annotations

import pytest

from libs.labeler.evaluation import evaluate_against_mesh, format_table
from libs.labeler.iu_reports import IUReport, ensure_iu_wheel, load_iu_reports, parse_iu_xml
from libs.labeler.mesh import mesh_observations, mesh_term_observations

XML = b"""<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <uId id="CXR42"/>
  <MedlineCitation><Article><Abstract>
    <AbstractText Label="COMPARISON">None.</AbstractText>
    <AbstractText Label="INDICATION">Cough</AbstractText>
    <AbstractText Label="FINDINGS">Small left pleural effusion.</AbstractText>
    <AbstractText Label="IMPRESSION"/>
  </Abstract></Article></MedlineCitation>
  <MeSH>
    <major>Pleural Effusion/left/small</major>
    <automatic>effusion</automatic>
  </MeSH>
  <parentImage id="CXR42_1_IM-0001-1001"><figureId>F1</figureId></parentImage>
</eCitation>"""


def test_parse_xml():
    report = parse_iu_xml(XML, "ecgen-radiology/42.xml")
    assert report == IUReport(
        report_id="CXR42", filename="ecgen-radiology/42.xml", findings="Small left pleural effusion.",
        impression="", indication="Cough", comparison="None.", mesh_major=("Pleural Effusion/left/small",),
        mesh_automatic=("effusion",), image_ids=("CXR42_1_IM-0001-1001",),
    )
    assert report.text == "Small left pleural effusion."
    assert report.is_indexed


@pytest.mark.parametrize(
    "term, observations",
    [
        ("normal", set()),
        ("Cardiomegaly/mild", {"Cardiomegaly"}),
        ("Cardiac Shadow/enlarged", {"Cardiomegaly"}),
        ("Opacity/lung/base/left", {"Lung Opacity"}),
        ("Density/lung/middle lobe/right/round", {"Lung Opacity", "Lung Lesion"}),
        ("Opacity/right/paratracheal/prominent", set()),
        ("Cicatrix/lung/apex/bilateral", {"Lung Opacity"}),
        ("Cicatrix/pleura/apex/bilateral", {"Pleural Other"}),
        ("Costophrenic Angle/left/blunted", {"Pleural Effusion"}),
        ("Hydropneumothorax/left/large", {"Pneumothorax", "Pleural Effusion"}),
        ("Pulmonary Congestion/mild", {"Edema"}),
        ("Markings/bronchovascular", set()),
        ("Markings/lung/interstitial/prominent", {"Lung Opacity"}),
        ("Mediastinum/prominent", {"Enlarged Cardiomediastinum"}),
        ("Mediastinum/lymph nodes/enlarged", set()),
        ("Catheters, Indwelling/right", {"Support Devices"}),
        ("Calcified Granuloma/lung/upper lobe/left", set()),
    ],
)
def test_mesh_mapping(term, observations):
    assert mesh_term_observations(term) == observations


def test_mesh_no_finding_is_derived():
    assert mesh_observations(["normal"]) == {"No Finding"}
    assert mesh_observations(["Calcified Granuloma", "Catheters, Indwelling"]) == {"No Finding", "Support Devices"}
    assert mesh_observations(["Pleural Effusion/left"]) == {"Pleural Effusion"}


@pytest.fixture(scope="module")
def iu_reports() -> list[IUReport]:
    wheel = ensure_iu_wheel()  # raises IUDataUnavailable (test error, not skip) when pip cannot fetch it
    return load_iu_reports(wheel)


def test_corpus_is_complete(iu_reports):
    assert len(iu_reports) == 3955
    assert len({r.report_id for r in iu_reports}) == 3955
    assert sum(r.is_indexed and bool(r.text) for r in iu_reports) > 3800


def test_end_to_end_agreement_with_mesh(iu_reports):
    evaluation = evaluate_against_mesh(iu_reports)
    table = format_table(evaluation)
    print(table)
    assert evaluation.scores["n"] > 3800
    assert evaluation.scores["micro"]["f1"] >= 0.90, table
    assert evaluation.strict_scores["micro"]["f1"] >= 0.90, table
