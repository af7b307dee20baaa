"""Reader for the Indiana University / Open-i chest X-ray reports (3,955 XML reports).

The reports ship inside the torchxrayvision wheel on PyPI as `torchxrayvision/data/NLMCXR_reports.tgz`.
Their licence (CC BY-NC-ND 4.0) forbids redistributing derived copies, so nothing here writes the
reports anywhere: they are read straight out of the wheel (or the tgz) every time they are needed.

Where the data comes from, first match wins:
  1. `CXR_IU_REPORTS`: path to `NLMCXR_reports.tgz` (or to a wheel that contains it),
  2. `CXR_IU_WHEEL`: path to the torchxrayvision wheel,
  3. the cache folder `<repo>/var/cache/iu/`, filled by `ensure_iu_wheel()` with `pip download`.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from libs.core.config import REPO_ROOT

IU_WHEEL_PACKAGE = "torchxrayvision==1.5.7"
IU_WHEEL_GLOB = "torchxrayvision-1.5.7-*.whl"
IU_TGZ_MEMBER = "torchxrayvision/data/NLMCXR_reports.tgz"
DEFAULT_CACHE_DIR = REPO_ROOT / "var" / "cache" / "iu"
# MeSH term the indexers used when they could not index a report; such reports carry no reference labels.
NO_INDEXING = "No Indexing"


class IUDataUnavailable(RuntimeError):
    """The IU reports could not be found or downloaded; the message says what was tried."""


@dataclass(frozen=True, slots=True)
class IUReport:
    """One IU report. Empty sections are "" (the XML has them missing or literally empty)."""

    report_id: str  # "CXR<n>", the collection's uId; image ids start with it
    filename: str  # member name inside the tgz, e.g. "ecgen-radiology/1.xml"
    findings: str
    impression: str
    indication: str
    comparison: str
    mesh_major: tuple[str, ...]  # manual MeSH indexing, e.g. "Pleural Effusion/bilateral/small"
    mesh_automatic: tuple[str, ...]  # terms an automatic indexer (MTI) found in the text
    image_ids: tuple[str, ...] = field(default=())  # e.g. "CXR1_1_IM-0001-3001" (the jpg file stem)

    @property
    def text(self) -> str:
        """Findings + impression: what the labeler reads (indication and comparison are history, not findings)."""
        return "\n".join(part for part in (self.findings, self.impression) if part)

    @property
    def is_indexed(self) -> bool:
        """False when the MeSH indexers recorded nothing usable (no terms, or only "No Indexing")."""
        return any(term.strip() != NO_INDEXING for term in self.mesh_major)


def ensure_iu_wheel(cache_dir: Path | None = None) -> Path:
    """Return the torchxrayvision wheel in `cache_dir`, downloading it with pip (no dependencies) if missing."""
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    found = sorted(cache_dir.glob(IU_WHEEL_GLOB))
    if found:
        return found[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", IU_WHEEL_PACKAGE, "-d", str(cache_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IUDataUnavailable(f"could not run {' '.join(cmd)}: {exc}") from exc
    found = sorted(cache_dir.glob(IU_WHEEL_GLOB))
    if proc.returncode != 0 or not found:
        raise IUDataUnavailable(
            f"pip download of {IU_WHEEL_PACKAGE} into {cache_dir} failed (rc={proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return found[0]


def locate_iu_source(download: bool = True) -> Path:
    """Path of a wheel or tgz holding the reports (see the module docstring for the search order)."""
    for var in ("CXR_IU_REPORTS", "CXR_IU_WHEEL"):
        value = os.environ.get(var)
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise IUDataUnavailable(f"{var}={value} is not a file")
            return path
    found = sorted(DEFAULT_CACHE_DIR.glob(IU_WHEEL_GLOB))
    if found:
        return found[0]
    if not download:
        raise IUDataUnavailable(f"no {IU_WHEEL_GLOB} in {DEFAULT_CACHE_DIR}; set CXR_IU_WHEEL or CXR_IU_REPORTS")
    return ensure_iu_wheel()


def _open_tgz(source: Path) -> tarfile.TarFile:
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            try:
                blob = wheel.read(IU_TGZ_MEMBER)
            except KeyError:
                raise IUDataUnavailable(f"{source} has no {IU_TGZ_MEMBER}") from None
        return tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz")
    return tarfile.open(source, mode="r:*")


def _clean(text: str | None) -> str:
    # A section with no text (about 530 reports have no findings) parses as None.
    return (text or "").strip()


def parse_iu_xml(data: bytes, filename: str = "") -> IUReport:
    """Parse one IU report XML document."""
    root = ET.fromstring(data)
    sections = {
        (node.get("Label") or "").upper(): _clean(node.text) for node in root.iter("AbstractText")
    }
    uid = root.find("uId")
    report_id = uid.get("id", "") if uid is not None else ""
    if not report_id:
        report_id = "CXR" + Path(filename).stem
    mesh = root.find("MeSH")
    major = tuple((n.text or "").strip() for n in mesh.findall("major")) if mesh is not None else ()
    automatic = tuple((n.text or "").strip() for n in mesh.findall("automatic")) if mesh is not None else ()
    images = tuple(node.get("id", "") for node in root.findall("parentImage"))
    return IUReport(
        report_id=report_id,
        filename=filename,
        findings=sections.get("FINDINGS", ""),
        impression=sections.get("IMPRESSION", ""),
        indication=sections.get("INDICATION", ""),
        comparison=sections.get("COMPARISON", ""),
        mesh_major=tuple(t for t in major if t),
        mesh_automatic=tuple(t for t in automatic if t),
        image_ids=tuple(i for i in images if i),
    )


def iter_iu_reports(source: Path | str | None = None) -> Iterator[IUReport]:
    """Yield every report, in the numeric order of the XML file names (1.xml, 2.xml, ...)."""
    path = Path(source) if source is not None else locate_iu_source()
    with _open_tgz(path) as tgz:
        members = [m for m in tgz.getmembers() if m.isfile() and m.name.endswith(".xml")]
        members.sort(key=lambda m: (len(Path(m.name).stem), Path(m.name).stem))
        for member in members:
            handle = tgz.extractfile(member)
            if handle is None:
                continue
            yield parse_iu_xml(handle.read(), member.name)


def load_iu_reports(source: Path | str | None = None) -> list[IUReport]:
    """All reports in memory (about 4 MB of text)."""
    return list(iter_iu_reports(source))
