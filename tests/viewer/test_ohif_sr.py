"""Our TID 1500 AI-results SR (libs/sr/measurement_report.py) in the real OHIF viewer (@ohif/app,
`make ohif`), headless in Debian's chromium, against a real Orthanc.

The chest study and its SR go into Orthanc, the SR by the platform's own STOW-RS store-back
(`libs.dicomweb.results.stow_sr`); OHIF is served from a local HTTP server that also proxies
`/dicom-web/` to Orthanc (tests/viewer/ohif.py), and opened on the SR series. What is checked is what
a radiologist would see: the image drawn, our box drawn on it as a rectangle of the right shape, the
probability label beside it, and no loading error.

OHIF 3.13.2 draws a TID 1500 SR only when every measurement group has a region (a SCOORD): a group
without one, as ours are for observations the model gave no box (TID 1501, image-level), makes it
throw and show nothing (`test_stock_ohif_aborts_on_groups_without_a_region` pins that). With the
`onBeforeSRAddMeasurement` customization of tests/viewer/ohif.py it draws the groups that have one.

CXR_WRITE_SCREENSHOT=1 also writes the screenshot to docs/images/ohif-tid1500.png.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from libs.core.config import PacsServer
from libs.dicomweb.results import stow_sr
from libs.domain.report import AssessedObservation
from libs.sr import build_measurement_report_sr, measurement_report_uids
from tests.pacs.conftest import make_chest_study
from tests.pacs.orthanc import Orthanc, start_orthanc
from tests.pacs.test_sr import MODEL, _report
from tests.viewer.ohif import CHROMIUM, CHROMIUM_ARGS, REPO, SKIP_GROUPS_WITHOUT_REGION, ViewerServer, require_viewer

pytestmark = [pytest.mark.integration, pytest.mark.pacs, pytest.mark.viewer, pytest.mark.slow,
              pytest.mark.timeout(240)]

DOCS_SCREENSHOT = REPO / "docs" / "images" / "ohif-tid1500.png"
BOX = [250, 1150, 850, 1650]  # [x0, y0, x1, y1] in source pixels: the right lower zone of the PA film
WAIT_MS = 60_000              # the most any one step in the browser may take
VIEWPORT = {"width": 1280, "height": 800}
PROBABILITY_LABEL = "Probability: 91.00 %"


def _observations(*, with_unboxed: bool) -> list[AssessedObservation]:
    boxed = AssessedObservation(label="Pleural Effusion", probability=0.91, threshold=0.4, present=True,
                                is_critical=True, bounding_box=BOX)
    if not with_unboxed:
        return [boxed]
    # What the model gives for most observations: no box (a positive one without a focal
    # activation, and every negative one).
    return [boxed,
            AssessedObservation(label="Cardiomegaly", probability=0.72, threshold=0.5, present=True),
            AssessedObservation(label="Pneumothorax", probability=0.031, threshold=0.3, present=False,
                                is_critical=True)]


@dataclass
class StoredStudy:
    study_uid: str
    sr_series_uid: str
    read_sop_uid: str  # the image the model read, which the region is on


def _store(orthanc: Orthanc, observations: list[AssessedObservation], job_id: str) -> StoredStudy:
    """A fresh chest study into Orthanc, then its TID 1500 SR through the platform's STOW-RS store-back;
    a patient of its own (OHIF's study browser lists the patient's other studies too)."""
    study = make_chest_study()
    files = []
    for data in study.files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.PatientID = f"{ds.PatientID}-{job_id}"
        # pydicom-data's RG1 says Pixel Spacing 0\0 (invalid: it must be > 0); with it cornerstone's
        # image plane has no size, draws nothing and puts every SCOORD at NaN. Not ours to show.
        if "PixelSpacing" in ds and not all(float(v) > 0 for v in ds.PixelSpacing):
            del ds.PixelSpacing
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append(buf.getvalue())
    for data in files:
        orthanc.upload(data)
    sources = [pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True) for b in files]
    read = str(sources[0].SOPInstanceUID)
    report = _report(study.study_uid).model_copy(update={"observations": observations})
    series_uid, sop_uid = measurement_report_uids(job_id)
    sr = build_measurement_report_sr(report, sources, model=MODEL, series_instance_uid=series_uid,
                                     sop_instance_uid=sop_uid, read_instance_uid=read)
    pacs = PacsServer(**orthanc.pacs_entry(store_results=True))
    assert stow_sr(pacs, sr).startswith("stored"), orthanc.log_tail()
    return StoredStudy(study.study_uid, series_uid, read)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, dict[str, StoredStudy]]]:
    require_viewer()  # before anything starts: says what is missing and how to get it
    orthanc = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        studies = {"platform": _store(orthanc, _observations(with_unboxed=True), "viewer-platform"),
                   "boxed": _store(orthanc, _observations(with_unboxed=False), "viewer-boxed")}
        yield orthanc, studies
    finally:
        orthanc.stop()


@pytest.fixture(scope="module")
def browser(pacs):  # noqa: ANN001, ANN201 - a playwright Browser
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=WAIT_MS)
        try:
            yield b
        finally:
            b.close()


class Viewer:
    """One OHIF page on one study's SR series, with what the browser said while loading it."""

    def __init__(self, browser, server: ViewerServer, study: StoredStudy) -> None:  # noqa: ANN001
        self.server = server
        self.console: list[str] = []
        self.context = browser.new_context(viewport=VIEWPORT, service_workers="block")
        self.context.set_default_timeout(WAIT_MS)
        # OHIF's first-visit tour would cover the viewport.
        self.context.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.url = (f"{server.url}/viewer?StudyInstanceUIDs={study.study_uid}"
                    f"&initialSeriesInstanceUID={study.sr_series_uid}")
        try:
            self.page.goto(self.url, wait_until="load", timeout=WAIT_MS)
        except Exception as exc:  # noqa: BLE001 - playwright's errors, with what the browser said
            pytest.fail(f"OHIF did not load: {exc}\n{self.report()}", pytrace=False)

    def annotations(self) -> dict:
        """Text and polylines of cornerstone's SVG annotation layer (where the SR viewport draws)."""
        return self.page.evaluate("""() => {
            const layer = document.querySelector('svg.svg-layer');
            if (!layer) return {texts: [], polylines: []};
            return {
                texts: [...layer.querySelectorAll('text')].flatMap(t => [...t.querySelectorAll('tspan')].map(s => s.textContent)),
                polylines: [...layer.querySelectorAll(':scope > polyline')].map(p => p.getAttribute('points')),
            };
        }""")

    def wait_for_label(self, label: str) -> dict:
        try:
            self.page.wait_for_function(
                """label => [...document.querySelectorAll('svg.svg-layer tspan')].some(s => s.textContent === label)""",
                arg=label, timeout=WAIT_MS)
        except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError, with what OHIF said
            pytest.fail(f"OHIF did not draw {label!r} within {WAIT_MS // 1000} s ({type(exc).__name__}).\n"
                        f"{self.report()}", pytrace=False)
        return self.annotations()

    def wait_for_console(self, fragment: str) -> str | None:
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            found = next((m for m in self.console if fragment in m), None)
            if found:
                return found
            self.page.wait_for_timeout(250)
        return None

    def errors(self) -> list[str]:
        return [m for m in self.console if m.startswith(("error:", "pageerror:")) or "Error Boundary" in m
                or "Something went wrong" in m]

    def report(self) -> str:
        failed = [r for r in self.server.requests if r[2] >= 400]
        return (f"URL {self.url}\nconsole (last 40):\n  " + "\n  ".join(m[:500] for m in self.console[-40:])
                + f"\nfailed DICOMweb requests: {failed[:10]}")

    def screenshot(self, path: Path) -> bytes:
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.page.screenshot(path=str(path), timeout=WAIT_MS)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_viewer(pacs, browser):  # noqa: ANN001, ANN201
    orthanc, _ = pacs
    opened: list[tuple[Viewer, ViewerServer]] = []

    def open_(study: StoredStudy, customizations: str = "{}") -> Viewer:
        server = ViewerServer(require_viewer(), orthanc, customizations=customizations).start()
        viewer = Viewer(browser, server, study)
        opened.append((viewer, server))
        return viewer

    try:
        yield open_
    finally:
        for viewer, server in opened:
            viewer.close()
            server.stop()


def _points(polyline: str) -> list[tuple[float, float]]:
    """SVG points ("x1, y1 x2, y2 ..." as cornerstone writes them) as (x, y) pairs; NaN stays NaN."""
    values = [float(v) for v in re.split(r"[\s,]+", polyline.strip()) if v]
    return list(zip(values[0::2], values[1::2], strict=True))


def _check_region_drawn(viewer: Viewer, drawn: dict, study: StoredStudy) -> None:
    """Our box, drawn as a closed rectangle of the box's shape (x along columns, y along rows), the
    probability beside it, the image under it, and nothing that went wrong on the way."""
    assert PROBABILITY_LABEL in drawn["texts"], drawn
    rectangles = [p for p in map(_points, drawn["polylines"]) if len(p) == 5]
    assert len(rectangles) == 1, (drawn, viewer.report())
    (rect,) = rectangles
    assert rect[0] == rect[-1], rect  # closed
    xs, ys = [p[0] for p in rect], [p[1] for p in rect]
    width, height = max(xs) - min(xs), max(ys) - min(ys)
    box_w, box_h = BOX[2] - BOX[0], BOX[3] - BOX[1]
    assert width > 50 and height > 50, rect
    assert width / height == pytest.approx(box_w / box_h, rel=0.03), (rect, BOX)
    # The image the region is on was fetched (WADO-RS frames through the proxy), and nothing failed.
    assert any(study.read_sop_uid in path and "/frames/" in path and status == 200
               for _, path, status in viewer.server.requests), viewer.report()
    assert [r for r in viewer.server.requests if r[2] >= 400] == [], viewer.report()
    assert viewer.errors() == [], viewer.report()
    # The SR series is listed by its description (it says AI generated).
    assert viewer.page.get_by_text("AI generated measurement report (unverified)").count() >= 1


def _dismiss_hydrate_prompt(viewer: Viewer) -> None:
    """OHIF asks whether to track (hydrate) the SR's measurements; answer No: the SR stays on view as
    it is (hydrating would need Cornerstone's own tool encoding in each group)."""
    no = viewer.page.locator('[data-cy="no-hydrate-btn"]')
    try:
        no.wait_for(state="visible", timeout=15_000)
    except Exception:  # noqa: BLE001 - no prompt: nothing to dismiss
        return
    no.click(timeout=WAIT_MS)
    viewer.page.wait_for_timeout(500)


def _viewport_brightness(viewer: Viewer, png: bytes) -> float:
    box = viewer.page.locator('[data-cy="viewport-grid"]').bounding_box(timeout=WAIT_MS)
    assert box, viewer.report()
    image = Image.open(io.BytesIO(png)).convert("L")
    crop = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(box["y"] + box["height"])))
    return float(np.asarray(crop).mean())


def _write_docs_screenshot(png: bytes) -> None:
    """A palette PNG (the radiograph is grey, the overlay a few colours): small enough for docs/."""
    DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    image.save(DOCS_SCREENSHOT, format="PNG", optimize=True)
    assert DOCS_SCREENSHOT.stat().st_size < 500_000, DOCS_SCREENSHOT.stat().st_size


def test_ohif_draws_the_platform_sr_region_and_probability(pacs, open_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    """The SR as the platform stores it (a boxed finding and two without a box), in OHIF with the
    customization that lets it skip the groups without a region."""
    _, studies = pacs
    study = studies["platform"]
    viewer = open_viewer(study, SKIP_GROUPS_WITHOUT_REGION)
    drawn = viewer.wait_for_label(PROBABILITY_LABEL)
    _dismiss_hydrate_prompt(viewer)
    drawn = viewer.annotations()  # still there after the prompt
    _check_region_drawn(viewer, drawn, study)
    # Only the effusion had a box: its one probability is the only one drawn.
    assert [t for t in drawn["texts"] if t.startswith("Probability")] == [PROBABILITY_LABEL]

    png = viewer.screenshot(tmp_path / "ohif-tid1500.png")
    brightness = _viewport_brightness(viewer, png)
    assert brightness > 40, f"the viewport is dark (mean {brightness:.0f}/255): no image drawn\n{viewer.report()}"
    if os.environ.get("CXR_WRITE_SCREENSHOT") == "1":
        _write_docs_screenshot(png)


def test_stock_ohif_draws_an_sr_whose_groups_all_have_a_region(pacs, open_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    """OHIF as shipped (no customization) draws our SR when every group has a region."""
    _, studies = pacs
    study = studies["boxed"]
    viewer = open_viewer(study)
    drawn = viewer.wait_for_label(PROBABILITY_LABEL)
    _check_region_drawn(viewer, drawn, study)
    viewer.screenshot(tmp_path / "ohif-tid1500-stock.png")


def test_stock_ohif_aborts_on_groups_without_a_region(pacs, open_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    """Pins an OHIF 3.13.2 limitation, so that an upgrade that lifts it is noticed (then drop the
    customization): a measurement group without a SCOORD (image-level, TID 1501) gets no coordinates,
    `_checkIfCanAddMeasurementsToDisplaySet` reads `coords[0].ReferencedSOPSequence` and throws, and
    the SR viewport stays empty: not even the groups that have a region are drawn."""
    _, studies = pacs
    viewer = open_viewer(studies["platform"])
    crash = viewer.wait_for_console("reading 'ReferencedSOPSequence'")
    viewer.screenshot(tmp_path / "ohif-tid1500-stock-abort.png")
    assert crash is not None, ("OHIF no longer throws on groups without a region: drop "
                               "SKIP_GROUPS_WITHOUT_REGION from the viewer config\n" + viewer.report())
    assert "_checkIfCanAddMeasurementsToDisplaySet" in crash, crash
    assert PROBABILITY_LABEL not in viewer.annotations()["texts"]
