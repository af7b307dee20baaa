"""Manifest validation: every broken bundle is refused with a reason that names the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from libs.bundle.manifest import MANIFEST_FILE, Manifest, load_manifest
from libs.bundle.schema import SCHEMA_PATH, render_schema
from libs.core.errors import BundleUnavailable
from libs.domain.labels import CHEXPERT_LABELS

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle(tmp_path: Path, random_bundle: Path) -> Path:
    """A private, editable copy of the random bundle."""
    return Path(shutil.copytree(random_bundle, tmp_path / "bundle"))


def read(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))


def write(bundle: Path, data: dict) -> None:
    (bundle / MANIFEST_FILE).write_text(json.dumps(data), encoding="utf-8")


def reason_for(bundle: Path) -> str:
    with pytest.raises(BundleUnavailable) as info:
        load_manifest(bundle)
    reason = info.value.reason
    assert "\n" not in reason
    return reason


def test_random_bundle_manifest_loads(random_bundle: Path):
    m = load_manifest(random_bundle)
    assert m.name == "random-test-bundle"
    assert m.version == "0.0.0-test"
    assert m.test_only is True
    assert m.intended_use.startswith("TEST FIXTURE ONLY")
    assert tuple(m.labels) == CHEXPERT_LABELS
    assert m.assessed_labels == list(CHEXPERT_LABELS)
    assert m.input.size == 64


def test_defaults(bundle: Path):
    data = read(bundle)
    for key in ("assessed_labels", "batching", "metrics", "test_only", "description"):
        data.pop(key)
    write(bundle, data)
    m = load_manifest(bundle)
    assert m.assessed_labels == list(CHEXPERT_LABELS)
    assert (m.batching.max_batch_size, m.batching.max_queue_delay_ms) == (8, 100)
    assert m.test_only is False
    assert m.metrics == {}


def test_manifest_without_boxes_gets_the_focal_box_defaults(bundle: Path):
    data = read(bundle)
    data.pop("boxes", None)  # bundles exported before the section existed
    write(bundle, data)
    m = load_manifest(bundle)
    assert (m.boxes.threshold, m.boxes.max_area_fraction) == (0.5, 0.25)


def test_boxes_policy_is_read_and_checked(bundle: Path):
    data = read(bundle)
    data["boxes"] = {"threshold": 0.6, "max_area_fraction": 0.4}
    write(bundle, data)
    assert (load_manifest(bundle).boxes.threshold, load_manifest(bundle).boxes.max_area_fraction) == (0.6, 0.4)
    data["boxes"] = {"max_area_fraction": 1.5}
    write(bundle, data)
    assert "boxes.max_area_fraction" in reason_for(bundle)
    data["boxes"] = {"treshold": 0.5}
    write(bundle, data)
    assert "boxes.treshold" in reason_for(bundle)


def test_missing_folder(tmp_path: Path):
    missing = tmp_path / "nowhere"
    assert reason_for(missing) == f"no model bundle installed at {missing}"


def test_missing_manifest(bundle: Path):
    (bundle / MANIFEST_FILE).unlink()
    assert "has no manifest.json" in reason_for(bundle)


def test_invalid_json(bundle: Path):
    (bundle / MANIFEST_FILE).write_text("{ not json", encoding="utf-8")
    assert "is not valid JSON" in reason_for(bundle)


def test_json_that_is_not_an_object(bundle: Path):
    (bundle / MANIFEST_FILE).write_text("[]", encoding="utf-8")
    assert "must hold a JSON object" in reason_for(bundle)


@pytest.mark.parametrize("field", ["format_version", "name", "version", "labels", "thresholds", "input", "files",
                                   "intended_use"])
def test_missing_required_field_is_named(bundle: Path, field: str):
    data = read(bundle)
    data.pop(field)
    write(bundle, data)
    assert f"{field}: Field required" in reason_for(bundle)


def test_unsupported_format_version(bundle: Path):
    data = read(bundle)
    data["format_version"] = 2
    write(bundle, data)
    assert "unsupported format_version 2" in reason_for(bundle)


def test_unknown_key_is_rejected(bundle: Path):
    data = read(bundle)
    data["treshold"] = 0.5
    write(bundle, data)
    assert "treshold: Extra inputs are not permitted" in reason_for(bundle)


def test_labels_out_of_order(bundle: Path):
    data = read(bundle)
    data["labels"][2], data["labels"][3] = data["labels"][3], data["labels"][2]
    write(bundle, data)
    reason = reason_for(bundle)
    assert "labels:" in reason and "labels[2] is 'Lung Opacity', expected 'Cardiomegaly'" in reason


def test_labels_wrong_count(bundle: Path):
    data = read(bundle)
    data["labels"] = data["labels"][:13]
    write(bundle, data)
    assert "labels: must list the 14 CheXpert observations, got 13" in reason_for(bundle)


def test_threshold_missing_for_assessed_label(bundle: Path):
    data = read(bundle)
    del data["thresholds"]["Edema"]
    write(bundle, data)
    assert "thresholds missing for assessed label(s): Edema" in reason_for(bundle)


def test_threshold_out_of_range(bundle: Path):
    data = read(bundle)
    data["thresholds"]["Edema"] = 1.5
    write(bundle, data)
    reason = reason_for(bundle)
    assert "thresholds: must be within [0, 1]: 'Edema'=1.5" in reason


def test_threshold_for_label_not_assessed(bundle: Path):
    data = read(bundle)
    data["assessed_labels"] = ["Cardiomegaly", "Edema"]
    data["thresholds"] = {"Cardiomegaly": 0.4, "Edema": 0.5, "Fracture": 0.3}
    write(bundle, data)
    assert "not assessed: 'Fracture'" in reason_for(bundle)


def test_unknown_assessed_label(bundle: Path):
    data = read(bundle)
    data["assessed_labels"] = ["Cardiomegaly", "Mass"]
    write(bundle, data)
    assert "assessed_labels: unknown CheXpert observation(s): 'Mass'" in reason_for(bundle)


def test_assessed_labels_are_put_in_canonical_order(bundle: Path):
    data = read(bundle)
    data["assessed_labels"] = ["Pneumothorax", "Cardiomegaly"]
    data["thresholds"] = {"Pneumothorax": 0.3, "Cardiomegaly": 0.6}
    write(bundle, data)
    assert load_manifest(bundle).assessed_labels == ["Cardiomegaly", "Pneumothorax"]


def test_bad_input_spec_is_named(bundle: Path):
    data = read(bundle)
    data["input"]["channels"] = 3
    data["input"]["normalization"]["std"] = 0
    write(bundle, data)
    reason = reason_for(bundle)
    assert "input.channels" in reason and "input.normalization.std" in reason


def test_listed_file_missing(bundle: Path):
    data = read(bundle)
    data["files"]["tokenizer"] = "tokenizer.json"
    write(bundle, data)
    assert "files.tokenizer 'tokenizer.json' does not exist" in reason_for(bundle)
    (bundle / "encoder.onnx").unlink()
    assert "files.encoder 'encoder.onnx' does not exist" in reason_for(bundle)


@pytest.mark.parametrize("path", ["../encoder.onnx", "/etc/passwd", "C:\\model.onnx"])
def test_files_must_stay_inside_the_bundle(bundle: Path, path: str):
    data = read(bundle)
    data["files"]["encoder"] = path
    write(bundle, data)
    assert "files.encoder: " in reason_for(bundle)
    assert "must be a relative path inside the bundle folder" in reason_for(bundle)


def test_schema_file_is_up_to_date():
    # Regenerate with: python -m libs.bundle.schema
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema()


def test_schema_declares_the_contract():
    schema = Manifest.model_json_schema()
    assert schema["properties"]["labels"]["const"] == list(CHEXPERT_LABELS)
    assert set(schema["required"]) >= {"format_version", "version", "labels", "thresholds", "input", "files"}


def test_doc_describes_the_io_names():
    doc = (REPO_ROOT / "docs" / "bundle.md").read_text(encoding="utf-8")
    for name in ("image", "probabilities", "heatmaps", "embedding", "manifest.json", "assessed_labels"):
        assert f"`{name}`" in doc
