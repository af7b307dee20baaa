"""Synthetic fixtures in the real dataset layouts, for tests and for trying the recipe end to end.

Everything is generated (random shapes and template sentences); no real image or report is copied.

    write_mimic_fixture(root, n=..., size=...)    MIMIC-CXR-JPG layout (CSV.gz + files/p1x/... JPGs + report .txt)
    write_iu_xray_fixture(root, n=..., size=...)  IU X-ray layout (png/ + xml/ with NLMCXR-style report XML)

Findings are drawn per study (pneumonia with a side, pleural effusion with a side, cardiomegaly) and
both painted into the image (a bright blob in that lung, a bright base, a wide heart shadow) and
written into the report, so an image-conditioned model can learn the link.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from libs.domain.labels import CHEXPERT_LABELS

SIDES = ("right", "left")


def _study(rng: random.Random) -> dict:
    return {"pneumonia": rng.random() < 0.4, "effusion": rng.random() < 0.3, "cardiomegaly": rng.random() < 0.3,
            "side": rng.choice(SIDES), "eff_side": rng.choice(SIDES), "age": rng.randint(20, 90),
            "sex": rng.choice("MF")}


def _image(s: dict, size: int, rng: random.Random) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.25 + 0.05 * rng.random() + 0.02 * np.random.default_rng(rng.randrange(1 << 30)).normal(size=(size, size))
    # two darker lungs (air), a brighter mediastinum / heart
    for cx in (0.3, 0.7):
        img -= 0.12 * np.exp(-(((xx - cx) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2))
    heart_w = 0.16 if s["cardiomegaly"] else 0.09
    img += 0.25 * np.exp(-(((xx - 0.52) / heart_w) ** 2 + ((yy - 0.62) / 0.14) ** 2))
    # image left = patient right (radiographic convention)
    if s["pneumonia"]:
        cx = 0.3 if s["side"] == "right" else 0.7
        img += 0.35 * np.exp(-(((xx - cx) / 0.08) ** 2 + ((yy - 0.62) / 0.08) ** 2))
    if s["effusion"]:
        cx = 0.3 if s["eff_side"] == "right" else 0.7
        img += 0.3 * (yy > 0.78) * np.exp(-(((xx - cx) / 0.15) ** 2))
    return np.clip(img, 0, 1)


def _report(s: dict) -> tuple[str, str, str]:
    findings, impression = [], []
    findings.append("The heart is enlarged." if s["cardiomegaly"] else "The heart size is normal.")
    if s["pneumonia"]:
        findings.append(f"There is a focal opacity in the {s['side']} lower lobe.")
        impression.append(f"{s['side'].capitalize()} lower lobe pneumonia.")
    else:
        findings.append("The lungs are clear.")
    if s["effusion"]:
        findings.append(f"Small {s['eff_side']} pleural effusion.")
        impression.append(f"Small {s['eff_side']} pleural effusion.")
    else:
        findings.append("No pleural effusion or pneumothorax.")
    if s["cardiomegaly"]:
        impression.append("Cardiomegaly.")
    if not impression:
        impression.append("No acute cardiopulmonary process.")
    indication = "Cough and fever." if s["pneumonia"] else "Chest pain."
    return " ".join(findings), " ".join(impression), indication


def _chexpert_row(s: dict) -> dict[str, str]:
    row = {label: "" for label in CHEXPERT_LABELS}
    row["Pneumonia"] = "1.0" if s["pneumonia"] else "0.0"
    row["Lung Opacity"] = "1.0" if s["pneumonia"] else ""
    row["Pleural Effusion"] = "1.0" if s["effusion"] else "0.0"
    row["Cardiomegaly"] = "1.0" if s["cardiomegaly"] else "0.0"
    row["Pneumothorax"] = "" if s["effusion"] else "0.0"
    if not (s["pneumonia"] or s["effusion"] or s["cardiomegaly"]):
        row["No Finding"] = "1.0"
    return row


def _write_csv_gz(path: Path, fieldnames: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(gzip.compress(buf.getvalue().encode("utf-8"), mtime=0))


def write_mimic_fixture(root: Path | str, n: int = 48, size: int = 64, seed: int = 0) -> Path:
    """n studies (one frontal JPG + one lateral JPG each), splits ~70/15/15, in MIMIC-CXR-JPG layout."""
    root = Path(root)
    rng = random.Random(seed)
    split_rows, chexpert_rows, meta_rows = [], [], []
    for i in range(n):
        s = _study(rng)
        subject, study = f"1{i:07d}", f"5{i:07d}"
        split = "train" if i < int(n * 0.7) else "validate" if i < int(n * 0.85) else "test"
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        folder.mkdir(parents=True, exist_ok=True)
        frontal, lateral = f"{i:08x}-front", f"{i:08x}-lat"
        for dicom_id, view in ((lateral, "LATERAL"), (frontal, "PA")):  # lateral listed first on purpose
            img = _image(s, size, rng) if view == "PA" else np.full((size, size), 0.3)
            Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{dicom_id}.jpg", quality=95)
            split_rows.append({"dicom_id": dicom_id, "study_id": study, "subject_id": subject, "split": split})
            meta_rows.append({"dicom_id": dicom_id, "subject_id": subject, "study_id": study, "ViewPosition": view})
        findings, impression, indication = _report(s)
        text = (f"                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
                f" INDICATION:  {indication}\n\n COMPARISON:  None.\n\n FINDINGS:\n \n {findings}\n \n"
                f" IMPRESSION:\n \n {impression}\n")
        (folder.parent / f"s{study}.txt").write_text(text, encoding="utf-8")
        chexpert_rows.append({"subject_id": subject, "study_id": study, **_chexpert_row(s)})
    _write_csv_gz(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    _write_csv_gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *CHEXPERT_LABELS], chexpert_rows)
    _write_csv_gz(root / "mimic-cxr-2.0.0-metadata.csv.gz", ["dicom_id", "subject_id", "study_id", "ViewPosition"],
                  meta_rows)
    return root


def write_iu_xray_fixture(root: Path | str, n: int = 12, size: int = 64, seed: int = 0) -> Path:
    """IU X-ray layout: root/png/CXR<n>_1_IM-<n>-1001.png and root/xml/<n>.xml (NLMCXR report XML)."""
    root = Path(root)
    rng = random.Random(seed)
    (root / "png").mkdir(parents=True, exist_ok=True)
    (root / "xml").mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        s = _study(rng)
        image_id = f"CXR{i}_1_IM-{i:04d}-1001"
        Image.fromarray((_image(s, size, rng) * 255).astype(np.uint8)).save(root / "png" / f"{image_id}.png")
        findings, impression, indication = _report(s)
        xml = (f'<?xml version="1.0" encoding="utf-8"?>\n<eCitation>\n<uId id="CXR{i}"/>\n<MedlineCitation>\n'
               f"<Article><Abstract>\n"
               f'<AbstractText Label="COMPARISON">None.</AbstractText>\n'
               f'<AbstractText Label="INDICATION">{escape(indication)}</AbstractText>\n'
               f'<AbstractText Label="FINDINGS">{escape(findings)}</AbstractText>\n'
               f'<AbstractText Label="IMPRESSION">{escape(impression)}</AbstractText>\n'
               f"</Abstract></Article></MedlineCitation>\n<MeSH><major>normal</major></MeSH>\n"
               f'<parentImage id="{image_id}"><figureId>F1</figureId></parentImage>\n</eCitation>\n')
        (root / "xml" / f"{i}.xml").write_text(xml, encoding="utf-8")
    return root
