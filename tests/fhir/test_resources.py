"""FHIR resources of a report: every one validates and round-trips through fhir.resources (R4B models),
and the codes are pinned (golden tests)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
from fhir.resources.R4B import get_fhir_model_class

from libs.domain.labels import CHEXPERT_LABELS, CRITICAL_LABELS
from libs.domain.request import ReportRequest
from libs.domain.study import View
from libs.fhir import codes, to_json
from libs.fhir.builder import (
    ReportSource,
    build_resources,
    device_id,
    parse_observation_id,
    parse_provenance_id,
    searchset,
    study_code,
    study_pseudonym,
    transaction_bundle,
)
from libs.fhir.capability import capability_statement
from libs.fhir.outcome import operation_outcome
from libs.qa.laterality import ImageInfo
from libs.qa.review import review_report
from libs.reporting.render import document_text, render_report
from tests.reporting.helpers import model_output

STUDY = "1.2.826.0.1.3680043.8.498.12345"
INSTANCE = "1.2.826.0.1.3680043.8.498.12345.1.1"
T0 = dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.timezone.utc)


def source(output=None, views=(View.PA, View.LATERAL), template: str = "standard"):  # noqa: ANN001, ANN201
    output = output or model_output({"Pleural Effusion": 0.91, "Cardiomegaly": 0.72, "Pneumonia": 0.4},
                                    not_assessed={"Fracture"}, boxes={"Pleural Effusion": [80, 500, 420, 900]},
                                    name="cxr-reference", version="2.1.3")
    job_id = str(uuid.uuid4())
    image = ImageInfo(width=1000, view=View.PA)
    request = ReportRequest(report_template=template, confidence_threshold=0.85)
    report = render_report(job_id, STUDY, output, request, image=image)
    verdict = review_report(report, output, request, image=image)
    report = report.model_copy(update={"requires_radiologist_review": verdict.requires_review,
                                       "review_reasons": verdict.reasons, "qa": verdict.summary()})
    return ReportSource(job_id=job_id, study_uid=STUDY, report=report, output=output, views=tuple(views),
                        instance_uid=INSTANCE, effective=T0, issued=T0 + dt.timedelta(seconds=4))


def roundtrip(resource) -> dict:  # noqa: ANN001
    """JSON -> fhir.resources model -> JSON gives the same document, and the model re-validates."""
    data = to_json(resource)
    model = get_fhir_model_class(data["resourceType"])
    again = model.model_validate(data)
    assert to_json(again) == data
    assert to_json(model.model_validate_json(json.dumps(data))) == data
    return data


def test_every_emitted_resource_round_trips() -> None:
    res = build_resources(source())
    for resource in res.all():
        roundtrip(resource)
    roundtrip(transaction_bundle(res, "http://fhir.example.org/r4"))
    roundtrip(searchset([res.diagnostic_report], res.observations, "http://h/fhir", "http://h/fhir/DiagnosticReport"))
    for data in (capability_statement("http://h/fhir"), operation_outcome(404, "no such report")):
        model = get_fhir_model_class(data["resourceType"])
        assert to_json(model.model_validate(data)) == data


def test_diagnostic_report() -> None:
    src = source()
    res = build_resources(src)
    dr = roundtrip(res.diagnostic_report)
    assert dr["id"] == f"rpt-{src.job_id}" == src.report.report_id
    assert dr["status"] == "preliminary"
    assert dr["identifier"] == [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{src.job_id}"}]
    assert dr["category"] == [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                           "code": "RAD", "display": "Radiology"}]}]
    assert dr["code"]["coding"] == [{"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2 Views"}]
    assert dr["effectiveDateTime"].startswith("2025-03-01T08:30:00") and dr["issued"].startswith("2025-03-01T08:30:04")
    assert dr["imagingStudy"] == [{"type": "ImagingStudy",
                                   "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY}"}}]
    assert dr["conclusion"] == src.report.impression == "Right pleural effusion; cardiomegaly."
    # Positive findings only (the head's), with SNOMED CT where verified and always the CheXpert code.
    assert [[c["code"] for c in cc["coding"]] for cc in dr["conclusionCode"]] == [
        ["60046008", "pleural-effusion"], ["8186001", "cardiomegaly"]]
    # the positives first, then each assessed negative in CheXpert order (Fracture, o12, is not assessed)
    assert [r["reference"] for r in dr["result"]] == [f"Observation/{dr['id']}-o{i:02d}" for i in
                                                      (10, 2, 1, 3, 4, 5, 6, 7, 8, 9, 11, 13)]
    form = dr["presentedForm"][0]
    assert form["contentType"] == "text/plain; charset=utf-8" and form["language"] == "en"
    text = base64.b64decode(form["data"]).decode("utf-8")
    assert text == document_text(src.report, "XR Chest 2 Views")
    assert "Not assessed by this model (neither present nor absent): fracture." in text
    ext = {}
    for e in dr["extension"]:
        ext.setdefault(e["url"].rsplit("/", 1)[1], []).append(e)
    assert ext["requires-radiologist-review"] == [{"url": codes.EXT_REQUIRES_REVIEW, "valueBoolean": True}]
    assert [e["valueString"] for e in ext["review-reason"]] == src.report.review_reasons
    assert "critical finding: Pleural Effusion (detection head and report text)" in src.report.review_reasons
    assert [e["valueCodeableConcept"]["coding"][0]["code"] for e in ext["not-assessed"]] == ["fracture"]
    assert dr["text"]["status"] == "generated" and "Preliminary AI-generated draft" in dr["text"]["div"]


def test_subject_is_pseudonymous_and_carries_no_identifier_of_a_person() -> None:
    dr = roundtrip(build_resources(source()).diagnostic_report)
    subject = dr["subject"]
    assert set(subject) == {"type", "identifier", "display"}  # logical reference: no Patient/<id> to resolve
    assert subject["identifier"] == {"system": codes.SUBJECT_SYSTEM, "value": study_pseudonym(STUDY)}
    assert STUDY not in json.dumps(subject)
    assert study_pseudonym(STUDY) == study_pseudonym(STUDY) != study_pseudonym(STUDY + "1")


def test_observation_per_assessed_observation() -> None:
    res = build_resources(source())
    # positives first (critical first), then every assessed negative; Fracture is not assessed: none
    assert len(res.observations) == 12
    ids = [parse_observation_id(o.id)[1] for o in res.observations]
    assert ids[:2] == ["Pleural Effusion", "Cardiomegaly"] and "Fracture" not in ids and "No Finding" not in ids
    effusion = roundtrip(res.observations[0])
    assert effusion["id"].endswith("-o10") and parse_observation_id(effusion["id"])[1] == "Pleural Effusion"
    assert effusion["status"] == "preliminary"
    assert effusion["category"][0]["coding"][0]["code"] == "imaging"
    assert effusion["code"]["text"] == "Right pleural effusion"
    # value[x] is a choice: it is the probability (what monitoring reads), so the head's call "present" is
    # carried by interpretation POS; no valueCodeableConcept Present beside it (that was the value before
    # negatives got Observations and needed their probability as the value too)
    assert effusion["valueQuantity"] == {"value": 0.91, "unit": "probability",
                                         "system": "http://unitsofmeasure.org", "code": "1"}
    assert "valueCodeableConcept" not in effusion
    assert [i["coding"][0]["code"] for i in effusion["interpretation"]] == ["POS", "AA"]  # critical: AA
    assert effusion["bodySite"]["coding"] == [{"system": codes.SNOMED, "code": "24028007", "display": "Right"}]
    components = {c["code"]["coding"][0]["code"]: c for c in effusion["component"]}
    assert components["model-confidence"]["valueQuantity"] == {"value": 0.91, "unit": "probability",
                                                                "system": "http://unitsofmeasure.org", "code": "1"}
    assert components["decision-threshold"]["valueQuantity"]["value"] == 0.5
    box = {e["url"]: e for e in effusion["extension"][0]["extension"]}
    assert effusion["extension"][0]["url"] == codes.EXT_BOUNDING_BOX
    assert [box[k]["valueInteger"] for k in ("x0", "y0", "x1", "y1")] == [80, 500, 420, 900]
    assert box["instance"]["valueOid"] == f"urn:oid:{INSTANCE}"
    assert effusion["device"] == {"reference": f"Device/{res.device.id}"}
    cardiomegaly = roundtrip(res.observations[1])
    assert [i["coding"][0]["code"] for i in cardiomegaly["interpretation"]] == ["POS", "A"]
    assert "bodySite" not in cardiomegaly and "extension" not in cardiomegaly


def test_severity_from_model_text_becomes_a_component() -> None:
    # severity is taken from the text only when the decoder read the image (image tokens)
    # (no lobe or zone: a box gives a side only, so "apical" would drop the sentence)
    out = model_output({"Pneumothorax": 0.97}, text="Large left pneumothorax.",
                       boxes={"Pneumothorax": [600, 50, 900, 400]}, text_sees_image=True)
    obs = roundtrip(build_resources(source(out)).observations[0])
    severity = next(c for c in obs["component"] if c["code"]["coding"][0]["code"] == "246112005")
    assert severity["valueCodeableConcept"]["coding"] == [{"system": codes.SNOMED, "code": "24484000",
                                                          "display": "Severe"}]
    assert obs["bodySite"]["coding"][0]["code"] == "7771000"


def test_severity_is_not_taken_from_text_that_never_saw_the_image() -> None:
    out = model_output({"Pneumothorax": 0.97}, text="Large left pneumothorax.",
                       boxes={"Pneumothorax": [600, 50, 900, 400]})
    obs = roundtrip(build_resources(source(out)).observations[0])
    assert all(c["code"]["coding"][0]["code"] != "246112005" for c in obs.get("component", []))


def test_device_and_provenance_record_ai_authorship() -> None:
    res = build_resources(source())
    device = roundtrip(res.device)
    assert device["id"] == "model-cxr-reference-2.1.3"
    assert device["deviceName"] == [{"name": "cxr-reference", "type": "model-name"}]
    assert device["version"] == [{"value": "2.1.3"}]
    prov = roundtrip(res.provenance)
    assert parse_provenance_id(prov["id"]) == res.diagnostic_report.id
    assert [t["reference"] for t in prov["target"]] == [
        f"DiagnosticReport/{res.diagnostic_report.id}", *(f"Observation/{o.id}" for o in res.observations)]
    [agent] = prov["agent"]
    assert agent["type"]["coding"][0]["code"] == "author"
    assert agent["who"]["reference"] == "Device/model-cxr-reference-2.1.3"
    assert prov["activity"]["coding"][0]["code"] == "CREATE"
    assert prov["entity"][0]["role"] == "source"


def test_a_negative_observation_carries_its_probability_and_threshold() -> None:
    res = build_resources(source())
    pneumonia = roundtrip(next(o for o in res.observations if parse_observation_id(o.id)[1] == "Pneumonia"))
    assert pneumonia["valueQuantity"] == {"value": 0.4, "unit": "probability",
                                          "system": "http://unitsofmeasure.org", "code": "1"}
    assert "valueCodeableConcept" not in pneumonia  # the call "absent" is the interpretation, not a second value
    assert pneumonia["interpretation"] == [{"coding": [{"system": codes.V3_INTERPRETATION, "code": "NEG",
                                                        "display": "Negative"}]}]
    components = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in pneumonia["component"]}
    assert components == {"model-confidence": 0.4, "decision-threshold": 0.5}
    assert "bodySite" not in pneumonia and "extension" not in pneumonia and pneumonia["code"]["text"] == "pneumonia"


def test_every_assessed_observation_has_a_probability_value_threshold_and_a_call() -> None:
    src = source()
    res = build_resources(src)
    assessed = {o.label: o for o in src.report.observations}
    assert len(res.observations) == len(assessed) == 12  # 13 abnormal labels less Fracture (not assessed)
    for resource in res.observations:
        obs = roundtrip(resource)
        expected = assessed[parse_observation_id(obs["id"])[1]]
        components = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in obs["component"]
                      if "valueQuantity" in c}
        assert obs["valueQuantity"]["value"] == expected.probability
        assert components["decision-threshold"] == expected.threshold
        assert obs["interpretation"][0]["coding"][0]["code"] == ("POS" if expected.present else "NEG")


def test_no_findings_means_negative_observations_only_and_no_conclusion_codes() -> None:
    res = build_resources(source(model_output({})))
    dr = roundtrip(res.diagnostic_report)
    assert len(res.observations) == 13 and len(dr["result"]) == 13 and "conclusionCode" not in dr
    assert all(roundtrip(o)["interpretation"][0]["coding"][0]["code"] == "NEG" for o in res.observations)
    assert dr["conclusion"] == "No acute cardiopulmonary abnormality among the observations this model assesses."


def test_transaction_bundle_puts_every_resource_under_its_id() -> None:
    res = build_resources(source())
    bundle = roundtrip(transaction_bundle(res, "http://fhir.example.org/r4/"))
    assert bundle["type"] == "transaction"
    requests = [(e["request"]["method"], e["request"]["url"]) for e in bundle["entry"]]
    assert requests[0] == ("PUT", f"Device/{res.device.id}")
    assert ("PUT", f"DiagnosticReport/{res.diagnostic_report.id}") in requests
    assert all(e["fullUrl"] == f"http://fhir.example.org/r4/{e['request']['url']}" for e in bundle["entry"])


# ---------------------------------------------------------------- golden codes

def test_golden_study_codes() -> None:
    assert study_code([View.PA, View.LATERAL]) == codes.Code("http://loinc.org", "36643-5", "XR Chest 2 Views")
    assert study_code([View.AP, View.LATERAL, View.UNKNOWN]).code == "36643-5"
    assert study_code([View.PA]) == codes.Code("http://loinc.org", "36554-4", "XR Chest Single view")
    assert study_code([View.PA, View.AP]).code == "36554-4"  # two frontals are not "2 views" (PA + lateral)
    assert study_code([View.UNKNOWN, View.LATERAL]).code == "36554-4"


def test_golden_finding_codes() -> None:
    table = {label: (s.code, s.display, s.confidence) if s else None for label, s in codes.FINDING_SNOMED.items()}
    assert table == {
        "No Finding": None,
        "Enlarged Cardiomediastinum": None,
        "Cardiomegaly": ("8186001", "Cardiomegaly", "exact"),
        "Lung Opacity": ("28328005", "Abnormal radiologic density", "approximate"),
        "Lung Lesion": ("309529002", "Lung mass", "approximate"),
        "Edema": ("19242006", "Pulmonary edema", "exact"),
        "Consolidation": ("95436008", "Lung consolidation", "exact"),
        "Pneumonia": ("233604007", "Pneumonia", "exact"),
        "Atelectasis": ("46621007", "Atelectasis", "exact"),
        "Pneumothorax": ("36118008", "Pneumothorax", "exact"),
        "Pleural Effusion": ("60046008", "Pleural effusion", "exact"),
        "Pleural Other": ("301256004", "Pleura finding", "approximate"),
        "Fracture": ("125605004", "Fracture of bone", "exact"),
        "Support Devices": None,
    }
    # Every critical finding has an exactly matching SNOMED CT code except the lesion/mass (a broader one).
    assert {l for l in CRITICAL_LABELS if table[l] and table[l][2] == "exact"} == CRITICAL_LABELS - {"Lung Lesion"}
    assert [codes.chexpert_code(l).code for l in CHEXPERT_LABELS][:3] == [
        "no-finding", "enlarged-cardiomediastinum", "cardiomegaly"]
    concept = codes.finding_concept("Support Devices")
    assert concept == {"coding": [{"system": codes.CHEXPERT_SYSTEM, "code": "support-devices",
                                   "display": "Support Devices"}], "text": "Support Devices"}


def test_golden_qualifier_codes() -> None:
    assert {k: v.code for k, v in codes.LATERALITY.items()} == {"right": "24028007", "left": "7771000",
                                                              "bilateral": "51440002"}
    assert {k: v.code for k, v in codes.SEVERITY.items()} == {"mild": "255604002", "moderate": "6736007",
                                                            "severe": "24484000"}
    assert codes.SEVERITY_ATTRIBUTE.code == "246112005"
    assert (codes.POSITIVE.code, codes.NEGATIVE.code, codes.ABNORMAL.code, codes.CRITICAL_ABNORMAL.code) == \
        ("POS", "NEG", "A", "AA")


def test_ids() -> None:
    assert device_id("cxr ref/β", "1.0+cu") == "model-cxr-ref-1.0-cu"
    long = device_id("m" * 80, "1")
    assert len(long) <= 64 and long.startswith("model-m")
    assert parse_observation_id("rpt-abc-o99") is None and parse_observation_id("rpt-abc-o13")[1] == "Support Devices"


@pytest.mark.parametrize("template", ["standard", "concise", "structured"])
def test_every_template_builds(template: str) -> None:
    res = build_resources(source(template=template))
    text = res.diagnostic_report.presentedForm[0].data.decode()  # the model holds the decoded bytes
    assert "FINDINGS" in text
    roundtrip(res.diagnostic_report)
