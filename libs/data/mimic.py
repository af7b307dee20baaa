"""MIMIC-CXR-JPG layout (PhysioNet, credentialed access): what a hospital or a credentialed user holds.

    <root>/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train/validate/test)
    <root>/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, the 14 observations (1, 0, -1, blank)
    <root>/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, ViewPosition, ... (optional)
    <root>/files/p10/p10000032/s50414267/<dicom_id>.jpg
    <reports>/files/p10/p10000032/s50414267.txt   (MIMIC-CXR free-text reports; default <reports> = <root>)

CSV files may be plain `.csv` or gzipped `.csv.gz`. One PairedRecord per study that has a frontal image
(ViewPosition PA, then AP; without metadata the first image listed) and a report with Findings or
Impression. Label policy: 1 -> positive, 0 -> negative, blank (not mentioned) -> negative for the
detection loss, -1 (uncertain) -> `uncertain` argument ("ignore" = masked out, "ones", "zeros").
The prompt statuses keep the four CheXpert states (positive/negative/uncertain/not_mentioned).
Optional `patients_csv` (MIMIC-IV hosp/patients: subject_id, gender, anchor_age) adds age and sex.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

from libs.data.iu import clean_indication, has_comparison
from libs.data.records import NAN, Context, ImageRecord, PairedRecord, ReportRecord
from libs.domain.labels import CHEXPERT_LABELS

SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}
_FRONTAL = ("PA", "AP")
_SECTION = re.compile(r"^\s*([A-Z][A-Z /&]+):", re.M)


def _open_csv(root: Path, stem: str) -> list[dict[str, str]] | None:
    for name in (f"{stem}.csv.gz", f"{stem}.csv"):
        path = root / name
        if path.is_file():
            raw = path.read_bytes()
            if name.endswith(".gz"):
                raw = gzip.decompress(raw)
            return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    return None


def parse_mimic_report(text: str) -> dict[str, str]:
    """Section name (upper case, e.g. FINDINGS, IMPRESSION, INDICATION, COMPARISON) -> text."""
    sections: dict[str, str] = {}
    matches = list(_SECTION.finditer(text))
    for m, nxt in zip(matches, [*matches[1:], None]):
        body = text[m.end(): nxt.start() if nxt else len(text)]
        name = m.group(1).strip()
        sections[name] = re.sub(r"\s+", " ", body).strip()
    return sections


def _label_value(raw: str, uncertain: str) -> float:
    raw = (raw or "").strip()
    if raw == "":
        return 0.0
    value = float(raw)
    if value == -1.0:
        return {"ignore": NAN, "ones": 1.0, "zeros": 0.0}[uncertain]
    return 1.0 if value > 0 else 0.0


def _status(raw: str) -> str:
    raw = (raw or "").strip()
    if raw == "":
        return "not_mentioned"
    return {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}.get(float(raw), "not_mentioned")


def load_mimic_cxr(
    root: Path | str, reports_root: Path | str | None = None, *, uncertain: str = "ignore",
    patients_csv: Path | str | None = None,
) -> list[PairedRecord]:
    if uncertain not in ("ignore", "ones", "zeros"):
        raise ValueError(f"uncertain must be ignore, ones or zeros, got {uncertain!r}")
    root = Path(root)
    reports_root = Path(reports_root) if reports_root is not None else root
    split_rows = _open_csv(root, "mimic-cxr-2.0.0-split")
    chexpert_rows = _open_csv(root, "mimic-cxr-2.0.0-chexpert")
    if split_rows is None or chexpert_rows is None:
        raise FileNotFoundError(f"{root} lacks mimic-cxr-2.0.0-split.csv[.gz] or mimic-cxr-2.0.0-chexpert.csv[.gz]")
    views = {r["dicom_id"]: r.get("ViewPosition", "") for r in (_open_csv(root, "mimic-cxr-2.0.0-metadata") or [])}
    chexpert = {(r["subject_id"], r["study_id"]): r for r in chexpert_rows}
    patients = {}
    if patients_csv is not None:
        with open(patients_csv, newline="", encoding="utf-8") as handle:
            patients = {r["subject_id"]: r for r in csv.DictReader(handle)}

    studies: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in split_rows:
        studies.setdefault((row["subject_id"], row["study_id"]), []).append(row)

    pairs: list[PairedRecord] = []
    for (subject, study), rows in studies.items():
        rows = sorted(rows, key=lambda r: next((i for i, v in enumerate(_FRONTAL) if views.get(r["dicom_id"]) == v),
                                                len(_FRONTAL)))
        if views and views.get(rows[0]["dicom_id"]) not in _FRONTAL:
            continue  # lateral only
        row = rows[0]
        folder = f"p{subject[:2]}/p{subject}/s{study}"
        image = root / "files" / folder / f"{row['dicom_id']}.jpg"
        report_path = reports_root / "files" / f"p{subject[:2]}/p{subject}/s{study}.txt"
        if not image.is_file() or not report_path.is_file():
            continue
        sections = parse_mimic_report(report_path.read_text(encoding="utf-8", errors="replace"))
        findings, impression = sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")
        if not (findings or impression):
            continue
        labels_row = chexpert.get((subject, study), {})
        labels = [_label_value(labels_row.get(label, ""), uncertain) for label in CHEXPERT_LABELS]
        statuses = {label: _status(labels_row.get(label, "")) for label in CHEXPERT_LABELS}
        patient = patients.get(subject, {})
        age = patient.get("anchor_age")
        ctx = Context(age=int(age) if age and age.isdigit() else None,
                      sex={"M": "M", "F": "F"}.get(patient.get("gender", "")),
                      indication=clean_indication(sections.get("INDICATION", "") or sections.get("HISTORY", "")),
                      has_prior=has_comparison(sections.get("COMPARISON", "")))
        split = SPLIT_NAMES.get(row["split"], "train")
        report = ReportRecord(report_id=f"s{study}", findings=findings, impression=impression, context=ctx,
                              statuses=statuses, split=split)
        pairs.append(PairedRecord(
            image=ImageRecord(path=str(image), labels=labels, group=f"p{subject}", split=split,
                              view=views.get(row["dicom_id"]) or None),
            report=report))
    return pairs
