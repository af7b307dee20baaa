"""Dataset loaders and splits: the committed split files, MIMIC-CXR-JPG and IU X-ray layouts on fixtures."""

from __future__ import annotations

import json

import pytest
from model_helpers import KERMANY_ROOT

from libs.data.iu import DEFAULT_SPLIT_FILE as IU_SPLIT, load_iu_xray, make_report_split, sex_from_text
from libs.data.kermany import DEFAULT_SPLIT_FILE as KERMANY_SPLIT, load_kermany, make_split
from libs.data.mimic import load_mimic_cxr, parse_mimic_report
from libs.data.splits import split_groups, split_ids
from libs.domain.labels import CHEXPERT_LABELS
from libs.model.fixtures import write_iu_xray_fixture, write_mimic_fixture


def test_split_ids_is_deterministic_and_complete():
    ids = [f"r{i}" for i in range(101)]
    a, b = split_ids(ids, (0.7, 0.1, 0.2), seed=0), split_ids(ids, (0.7, 0.1, 0.2), seed=0)
    assert a == b
    assert sorted(sum(a.values(), [])) == sorted(ids)
    assert [len(a[k]) for k in ("train", "val", "test")] == [71, 10, 20]
    assert split_ids(ids, (0.7, 0.1, 0.2), seed=1) != a


def test_split_groups_never_separates_a_group():
    items = [(f"img{i}", f"p{i // 3}", "pos" if i % 2 else "neg") for i in range(300)]
    parts = split_groups(items, (0.8, 0.2), seed=0)
    where = {i: name for name, ids in parts.items() for i in ids}
    by_group = {}
    for item, group, _ in items:
        by_group.setdefault(group, set()).add(where[item])
    assert all(len(s) == 1 for s in by_group.values())
    assert 50 <= len(parts["val"]) <= 70


def test_committed_iu_split_is_70_10_20_by_report_id():
    doc = json.loads(IU_SPLIT.read_text())
    assert doc["seed"] == 0 and doc["unit"] == "report id"
    sizes = {k: len(doc[k]) for k in ("train", "val", "test")}
    assert sum(sizes.values()) == 3955
    assert sizes == {"train": 2768, "val": 396, "test": 791}
    ids = doc["train"] + doc["val"] + doc["test"]
    assert len(set(ids)) == 3955 and all(i.startswith("CXR") for i in ids)
    # The committed file is what the function makes from the same ids (no drift).
    assert make_report_split(sorted(ids, key=lambda i: int(i[3:]))) == {k: doc[k] for k in ("train", "val", "test")}


@pytest.mark.skipif(not KERMANY_ROOT.is_dir(), reason=f"{KERMANY_ROOT} not on this machine")
def test_kermany_split_is_patient_grouped_and_committed():
    records = load_kermany(KERMANY_ROOT, KERMANY_SPLIT)
    assert len(records) == 5216 - 26  # one copy of each byte-identical duplicate group kept
    train = {r.group for r in records if r.split == "train"}
    val = {r.group for r in records if r.split == "val"}
    assert not train & val
    n_val = sum(r.split == "val" for r in records)
    assert 0.18 < n_val / len(records) < 0.22
    pneu = CHEXPERT_LABELS.index("Pneumonia")
    assert {r.labels[pneu] for r in records} == {0.0, 1.0}
    assert all(v != v for r in records[:50] for i, v in enumerate(r.labels) if i != pneu)  # others unknown (NaN)
    doc = json.loads(KERMANY_SPLIT.read_text())
    assert make_split(KERMANY_ROOT) == {k: doc[k] for k in ("train", "val")}


def test_mimic_layout_loader(tmp_path):
    root = write_mimic_fixture(tmp_path / "mimic", n=20, size=32)
    pairs = load_mimic_cxr(root)
    assert len(pairs) == 20
    first = pairs[0]
    assert first.image.view == "PA" and first.image.path.endswith("-front.jpg")  # frontal chosen over lateral
    assert first.report.findings and first.report.impression
    assert first.report.context.indication in ("Cough and fever.", "Chest pain.")
    assert {p.split for p in pairs} == {"train", "val", "test"}
    assert len(first.image.labels) == 14
    assert set(first.report.statuses.values()) <= {"positive", "negative", "uncertain", "not_mentioned"}


def test_mimic_uncertain_policy(tmp_path):
    import csv
    import gzip
    import io

    root = write_mimic_fixture(tmp_path / "mimic", n=4, size=32)
    path = root / "mimic-cxr-2.0.0-chexpert.csv.gz"
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode())))
    rows[0]["Edema"] = "-1.0"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path.write_bytes(gzip.compress(buf.getvalue().encode()))
    edema = CHEXPERT_LABELS.index("Edema")
    ignore = load_mimic_cxr(root, uncertain="ignore")[0]
    assert ignore.image.labels[edema] != ignore.image.labels[edema]  # NaN: masked out of the loss
    assert ignore.report.statuses["Edema"] == "uncertain"
    assert load_mimic_cxr(root, uncertain="ones")[0].image.labels[edema] == 1.0


def test_parse_mimic_report_sections():
    text = "FINAL REPORT\n INDICATION:  Fever.\n\n FINDINGS:\n The lungs\n are clear.\n IMPRESSION:\n Normal."
    s = parse_mimic_report(text)
    assert s["FINDINGS"] == "The lungs are clear." and s["IMPRESSION"] == "Normal." and s["INDICATION"] == "Fever."


def test_iu_xray_layout_loader(tmp_path):
    root = write_iu_xray_fixture(tmp_path / "iu", n=10, size=32)
    pairs = load_iu_xray(root / "png", root / "xml", split_file=None)
    assert len(pairs) == 10
    p = pairs[0]
    assert p.report.report_id == "CXR1" and p.image.path.endswith("CXR1_1_IM-0001-1001.png")
    assert p.report.statuses and p.image.labels == [
        1.0 if p.report.statuses[label] in ("positive", "uncertain") else 0.0 for label in CHEXPERT_LABELS]


def test_sex_from_indication_text():
    assert sex_from_text("XXXX-year-old female, chest pain") == "F"
    assert sex_from_text("58 year old man") == "M"
    assert sex_from_text("Chest pain") is None
