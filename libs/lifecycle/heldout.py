"""Held-out studies for the validation gate, the drift reference and the bias audit: images with the
observations a reader labelled and, where known, who and how (age, sex, view, manufacturer).

Two sources:
- a CSV (`labels.csv` in the folder, or the file itself): a `file` column (DICOM, PNG or JPEG, relative
  to the CSV), any CheXpert observation as a column (1 present, 0 absent, empty not labelled; names as in
  libs/domain/labels.py, case and spaces ignored), and optional `age`, `sex` (M/F/O/U), `view`,
  `manufacturer`, `split` (only rows whose split is `test` or `val`/`validation` are used when present);
- `kermany-val`: the validation split of the Kermany pediatric set the reference bundle held out
  (configs/splits/kermany_val.json; pneumonia labelled, everything else unknown; all AP, ages 1-5).

Images go the platform's one way: DICOM through ingestion's loader, other files wrapped as DICOM first
(libs/model/images.py), so the gate sees what serving sees.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from libs.domain.labels import CHEXPERT_LABELS

KERMANY = "kermany-val"
_KEY = {label.lower().replace(" ", "").replace("_", ""): label for label in CHEXPERT_LABELS}
_EVAL_SPLITS = {"test", "val", "validation", "holdout", "held-out"}


class HeldOutError(ValueError):
    pass


@dataclass(frozen=True)
class HeldOutItem:
    path: Path
    labels: dict[str, int]  # observation -> 1 / 0 (unlabelled observations are absent from the dict)
    meta: dict[str, str | float | None] = field(default_factory=dict)  # age, sex, view, manufacturer

    @property
    def age(self) -> float | None:
        value = self.meta.get("age")
        return float(value) if value not in (None, "") else None


def load_heldout(source: str | Path, limit: int | None = None, seed: int = 0) -> list[HeldOutItem]:
    """The items of `source` (a CSV, a folder with labels.csv, or `kermany-val`); `limit` draws that many
    at random (seeded), stratified by nothing: a gate run on a sample says so in its report."""
    items = _kermany() if str(source) == KERMANY else _csv(Path(source))
    if not items:
        raise HeldOutError(f"{source}: no held-out studies")
    if limit is not None and limit < len(items):
        items = random.Random(seed).sample(items, limit)
    return items


def _csv(path: Path) -> list[HeldOutItem]:
    if path.is_dir():
        path = path / "labels.csv"
    if not path.is_file():
        raise HeldOutError(f"{path}: no such file (a held-out set is a labels.csv beside its images)")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "file" not in rows[0]:
        raise HeldOutError(f"{path}: needs a 'file' column")
    columns = {c: _KEY[k] for c in rows[0] if (k := c.lower().replace(" ", "").replace("_", "")) in _KEY}
    if not columns:
        raise HeldOutError(f"{path}: no CheXpert observation column (e.g. 'Pleural Effusion')")
    has_split = "split" in rows[0]
    items = []
    for n, row in enumerate(rows, start=2):
        if has_split and row["split"].strip().lower() not in _EVAL_SPLITS:
            continue
        labels = {}
        for column, label in columns.items():
            value = (row.get(column) or "").strip()
            if value in ("", "-1", "u", "U"):
                continue  # unlabelled or uncertain: not evidence either way
            if value not in ("0", "1", "0.0", "1.0"):
                raise HeldOutError(f"{path}:{n}: {column} must be 1, 0 or empty, not {value!r}")
            labels[label] = int(float(value))
        meta = {k: (row.get(k) or "").strip() or None for k in ("age", "sex", "view", "manufacturer")}
        items.append(HeldOutItem(path=(path.parent / row["file"]).resolve(), labels=labels, meta=meta))
    return items


def _kermany() -> list[HeldOutItem]:
    from libs.data.kermany import DEFAULT_ROOT, PNEUMONIA, load_kermany

    if not (DEFAULT_ROOT / "labels.csv").is_file():
        raise HeldOutError(f"the Kermany set is not at {DEFAULT_ROOT} (CXR_KERMANY_ROOT)")
    records = [r for r in load_kermany(DEFAULT_ROOT) if r.split == "val"]
    return [HeldOutItem(path=Path(r.path), labels={"Pneumonia": int(r.labels[PNEUMONIA])},
                        meta={"view": "AP", "manufacturer": None, "age": None, "sex": None}) for r in records]


def load_images(items: list[HeldOutItem], size: int) -> np.ndarray:
    """float32 [N, size, size] in [0, 1], each image through the platform's own path."""
    from libs.dicom import load_for_model
    from libs.model.images import load_image

    out = np.empty((len(items), size, size), dtype=np.float32)
    for i, item in enumerate(items):
        if item.path.suffix.lower() in (".dcm", ".dicom", "") and _is_dicom(item.path):
            out[i] = load_for_model(item.path, size=size)[1].array
        else:
            out[i] = load_image(item.path, size)
    return out


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"
