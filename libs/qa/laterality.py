"""Which side of the patient a bounding box is on.

Radiological display convention for frontal chest radiographs (PA and AP): the image is displayed as if
the reader faces the patient, so the **patient's right is on the image's left** (low column numbers)
and the patient's left on the image's right. A box in the left half of the image is therefore on the
patient's right side. PA and AP radiographs are both displayed this way, and chest radiographs are
stored for display in that orientation, which is also what a detection head trained on them sees.

Boxes are [x0, y0, x1, y1] in source-image pixels (pixel edges, x1 exclusive: see libs.dicom.geometry);
the image width is the source image's number of columns.

Limits, stated so nobody relies on more:
- Only PA and AP views are judged. A lateral view has no left/right in the image plane, and a view
  the header did not name (UNKNOWN) might be anything: no side is derived for either.
- A box centred within `MIDLINE_BAND` of the middle is "indeterminate" (heart, mediastinum, trachea);
  a box that reaches far into both halves is "bilateral". Neither ever contradicts a side in the text.
- A DICOM image whose PatientOrientation says the rows run towards the patient's right (a flipped
  image, PatientOrientation "R\\F") would invert the convention. That attribute is not stored with
  the instance, so such images are read with the standard convention; the check may then raise a
  false laterality flag (it never hides one: a flag only sends the study to a radiologist).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from libs.domain.study import View

Side = Literal["left", "right", "bilateral"]

# Fraction of the image width around the midline where a box centre gives no side.
MIDLINE_BAND = 0.05
# A box reaching this far past the midline on both sides covers both hemithoraces.
BILATERAL_REACH = 0.15


@dataclass(frozen=True)
class ImageInfo:
    """What the laterality check needs to know about the image the model read."""

    width: int  # source-image columns
    view: View

    @property
    def frontal(self) -> bool:
        return self.view.is_frontal


def box_side(box: Sequence[float] | None, image: ImageInfo | None) -> Side | None:
    """The patient's side a box is on ("right", "left", "bilateral"), or None when it cannot be told."""
    if box is None or image is None or not image.frontal or image.width < 2 or len(box) != 4:
        return None
    x0, _, x1, _ = (float(v) for v in box)
    if x1 < x0:
        return None
    mid = image.width / 2.0
    reach = BILATERAL_REACH * image.width
    if x0 <= mid - reach and x1 >= mid + reach:
        return "bilateral"
    centre = (x0 + x1) / 2.0
    if abs(centre - mid) <= MIDLINE_BAND * image.width:
        return None
    # Image left half (small x) = patient's right.
    return "right" if centre < mid else "left"


def contradicts(text_side: str | None, box: Side | None) -> bool:
    """True only for a plain left/right contradiction; "bilateral" on either side never contradicts."""
    return text_side in ("left", "right") and box in ("left", "right") and text_side != box


def image_info_for_job(session, job) -> ImageInfo | None:  # noqa: ANN001 - SQLAlchemy session, JobRow
    """The chosen frontal image's width (from the preprocessing geometry) and view (the request's
    view for that instance wins over the stored one, as in ingestion)."""
    from libs.domain.request import ReportRequest
    from libs.storage import crud

    geometry = job.geometry or {}
    try:
        width = int(geometry["source_cols"])
    except (KeyError, TypeError, ValueError):
        return None
    if not job.instance_uid:
        return None
    view: View | None = None
    try:
        request = ReportRequest.model_validate(job.request)
    except ValueError:
        request = None
    if request is not None:
        for ref in request.images:
            if ref.instance_uid == job.instance_uid and ref.view is not None:
                view = ref.view
    if view is None:
        instance = crud.get_instance(session, job.instance_uid)
        view = instance.view if instance is not None else View.UNKNOWN
    return ImageInfo(width=width, view=view)
