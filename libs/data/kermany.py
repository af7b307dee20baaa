"""Kermany et al. pediatric chest X-rays (pneumonia vs normal), 224 px PNGs, training split only.

Data: Kermany D, Zhang K, Goldbaum M. Mendeley Data V2, doi:10.17632/rscbjbr9sj.2; Kermany et al.,
Cell 172(5):1122-1131, 2018. CC BY 4.0. See /work/shared/data/kermany_pneumonia_224/PROVENANCE.md.

What the labels supervise: Pneumonia only (1 = pneumonia, 0 = normal). The other 13 observations are
unknown (NaN) for every image: "normal" here means "no pneumonia in a pediatric film", not a full
CheXpert No Finding read, so it is not used as a No Finding label.

The validation split is made here (the original test split is withheld): grouped by patient_key,
stratified by label, 80/20, seed 0, saved as file names in configs/splits/kermany_val.json.
Byte-identical duplicates (duplicates.csv) are merged into one group and only the first copy is kept.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from libs.core.config import REPO_ROOT
from libs.data.records import ImageRecord, empty_labels
from libs.data.splits import load_split, save_split, split_groups
from libs.domain.labels import CHEXPERT_LABELS

DEFAULT_ROOT = Path(os.environ.get("CXR_KERMANY_ROOT", "/work/shared/data/kermany_pneumonia_224"))
DEFAULT_SPLIT_FILE = REPO_ROOT / "configs" / "splits" / "kermany_val.json"
DEFAULT_BLOCK_SPLIT_FILE = REPO_ROOT / "configs" / "splits" / "kermany_blocks.json"
PNEUMONIA = CHEXPERT_LABELS.index("Pneumonia")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _deduplicated(root: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    """(rows without extra duplicate copies, file -> group key with duplicate groups merged)."""
    rows = _read_csv(root / "labels.csv")
    group = {r["file"]: r["patient_key"] for r in rows}
    dup_path = root / "duplicates.csv"
    dropped: set[str] = set()
    if dup_path.is_file():
        by_dup: dict[str, list[str]] = {}
        for d in _read_csv(dup_path):
            by_dup.setdefault(d["group"], []).append(d["file"])
        for files in by_dup.values():
            files = [f for f in files if f in group]
            if not files:
                continue
            keep = files[0]
            for f in files[1:]:
                dropped.add(f)
                old = group[f]
                # Every file of the duplicate's patient joins the kept copy's group.
                for other, g in group.items():
                    if g == old:
                        group[other] = group[keep]
    return [r for r in rows if r["file"] not in dropped], group


def make_split(root: Path = DEFAULT_ROOT, val_fraction: float = 0.2, seed: int = 0) -> dict[str, list[str]]:
    rows, group = _deduplicated(Path(root))
    return split_groups(((r["file"], group[r["file"]], r["label"]) for r in rows),
                        (1.0 - val_fraction, val_fraction), seed=seed)


# The file-name series of the Kermany set: each numbers its patients in acquisition order.
_SERIES = (
    ("normal2", re.compile(r"NORMAL2-IM-(\d+)")),
    ("normal", re.compile(r"(?:^|/)IM-(\d+)")),
    # Bacterial and viral films share one numbering of patients (person<n>; the same n is one patient_key).
    ("pneumonia", re.compile(r"person(\d+)_(?:bacteria|virus)")),
)


def series_and_number(src_path: str) -> tuple[str, int]:
    """('normal' | 'normal2' | 'pneumonia', patient number) from an original file path."""
    name = src_path.rsplit("/", 1)[-1]
    for series, pattern in _SERIES:
        match = pattern.search(name)
        if match:
            return series, int(match.group(1))
    raise ValueError(f"unrecognised Kermany file name {name!r}")


def series_of(records) -> list[str]:  # noqa: ANN001 - list[ImageRecord] of one Kermany folder
    """The file-name series of each record's original file (labels.csv's src_path)."""
    import csv

    if not records:
        return []
    root = Path(records[0].path).parents[1]
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        src = {row["file"]: row["src_path"] for row in csv.DictReader(fh)}
    return [series_and_number(src[str(Path(r.path).relative_to(Path(r.path).parents[1]))])[0] for r in records]


def make_block_split(root: Path = DEFAULT_ROOT, val_fraction: float = 0.2) -> dict[str, list[str]]:
    """Validation = whole acquisition blocks: within each file-name series, the patients with the
    EARLIEST numbers (about `val_fraction` of the series' images), every image of a patient (and of
    its byte-identical duplicates' patients) on one side.

    Why: a random patient split of one pool measured AUROC 0.998 for bundle 1.2.1 where the dataset's
    own test split gave 0.951. That test split is an earlier block of the same series (its normal
    films are numbered below every training film), so a block held out by acquisition order is the
    closest stand-in for it available here. Deterministic (no seed).
    """
    rows, group = _deduplicated(Path(root))
    by_series: dict[str, dict[str, int]] = {}
    images_per_group: dict[str, list[str]] = {}
    for r in rows:
        series, number = series_and_number(r["src_path"])
        g = group[r["file"]]
        images_per_group.setdefault(g, []).append(r["file"])
        first = by_series.setdefault(series, {})
        first[g] = min(first.get(g, number), number)
    parts: dict[str, list[str]] = {"train": [], "val": []}
    held: set[str] = set()
    for series in sorted(by_series):
        groups = sorted(by_series[series].items(), key=lambda kv: (kv[1], kv[0]))
        total = sum(len(images_per_group[g]) for g, _ in groups)
        taken = 0
        for g, _ in groups:
            if taken >= val_fraction * total:
                break
            if g not in held:
                held.add(g)
                taken += len(images_per_group[g])
    for r in rows:
        parts["val" if group[r["file"]] in held else "train"].append(r["file"])
    return parts


def write_block_split(path: Path = DEFAULT_BLOCK_SPLIT_FILE, root: Path = DEFAULT_ROOT) -> Path:
    parts = make_block_split(root)
    return save_split(path, parts, dataset="kermany_pneumonia_224",
                      grouped_by="patient_key (duplicates merged)",
                      held_out="earliest 20 % of patient numbers within each file-name series "
                               "(normal IM-, NORMAL2-IM-, person<n> pneumonia)", fractions={"train": 0.8, "val": 0.2})


def write_split(path: Path = DEFAULT_SPLIT_FILE, root: Path = DEFAULT_ROOT, seed: int = 0) -> Path:
    parts = make_split(root, seed=seed)
    return save_split(path, parts, dataset="kermany_pneumonia_224", grouped_by="patient_key (duplicates merged)",
                      stratified_by="label", seed=seed, fractions={"train": 0.8, "val": 0.2})


def load_kermany(root: Path | str = DEFAULT_ROOT, split_file: Path | str | None = DEFAULT_SPLIT_FILE) -> list[ImageRecord]:
    """All deduplicated images as ImageRecords (Pneumonia labelled, others NaN), split from `split_file`.

    Without a split file (None or missing) the split is computed (same function that wrote it).
    """
    root = Path(root)
    rows, group = _deduplicated(root)
    if split_file is not None and Path(split_file).is_file():
        split = load_split(Path(split_file))
    else:
        parts = make_split(root)
        split = {f: name for name, files in parts.items() for f in files}
    records = []
    for r in rows:
        labels = empty_labels()
        labels[PNEUMONIA] = float(int(r["pneumonia"]))
        records.append(ImageRecord(path=str(root / r["file"]), labels=labels, group=group[r["file"]],
                                   split=split.get(r["file"], "train"), view="AP"))
    return records
