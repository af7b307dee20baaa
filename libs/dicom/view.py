"""Which projection an instance shows: PA, AP, lateral, or UNKNOWN when the header does not say.

Sources, most trusted first:
1. ViewPosition (0018,5101), the coded field (AP, PA, LL, RL...).
2. ViewCodeSequence (0054,0220): its CodeMeaning ("postero-anterior", "left lateral"...).
3. Free-text descriptions written by technologists and protocols: SeriesDescription,
   ProtocolName, AcquisitionDeviceProcessingDescription (CR plates: "CHEST PA").

A text source counts only when it names exactly one view: "CHEST PA LAT" or "PA + LAT" is
ambiguous and we move on. ImageLaterality (L/R/B) is deliberately not used: it says which side
of a paired organ is imaged, not the projection. StudyDescription is not used either: it
describes the whole study ("CHEST 2 VIEWS PA AND LAT"), not this image.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from libs.dicom import _attrs
from libs.dicom.rules import words
from libs.domain.study import View

_PA_WORDS = frozenset({"PA", "POSTEROANTERIOR", "POSTERO", "PAPROJECTION"})
_AP_WORDS = frozenset({"AP", "ANTEROPOSTERIOR", "ANTERO", "APPROJECTION"})
_LATERAL_WORDS = frozenset(
    {"LAT", "LATERAL", "LATERALE", "LL", "RL", "LLAT", "RLAT", "LEFTLATERAL", "RIGHTLATERAL",
     "SEITLICH", "PROFIL", "PROFILE"}
)
# ViewPosition values that are valid but none of PA/AP/lateral: decubitus (a horizontal-beam
# frontal taken lying on one side) and obliques. They stay UNKNOWN, and the free text is not
# asked, because a "CHEST PA" series description would wrongly upgrade an oblique to PA.
_OTHER_POSITIONS = frozenset({"RLD", "LLD", "RLO", "LLO", "RAO", "LAO", "RPO", "LPO", "OBL", "OBLIQUE"})

_TEXT_SOURCES = ("SeriesDescription", "ProtocolName", "AcquisitionDeviceProcessingDescription")


def view_of(ds: Dataset) -> View:
    position = _attrs.text(ds, "ViewPosition")
    if position:
        if position.upper().replace(" ", "") in _OTHER_POSITIONS:
            return View.UNKNOWN
        found = _view_in(position)
        if found is not None:
            return found

    for meaning in _view_code_meanings(ds):
        found = _view_in(meaning.replace("-", ""))  # "postero-anterior" -> POSTEROANTERIOR
        if found is not None:
            return found

    for keyword in _TEXT_SOURCES:
        found = _view_in(_attrs.text(ds, keyword))
        if found is not None:
            return found
    return View.UNKNOWN


def _view_in(raw: str) -> View | None:
    """The one view named in `raw`, None if it names none or several."""
    ws = set(words(raw))
    named = {
        view
        for view, vocabulary in ((View.PA, _PA_WORDS), (View.AP, _AP_WORDS), (View.LATERAL, _LATERAL_WORDS))
        if ws & vocabulary
    }
    return named.pop() if len(named) == 1 else None


def _view_code_meanings(ds: Dataset) -> list[str]:
    try:
        seq = ds.get("ViewCodeSequence") or []
        return [str(item.get("CodeMeaning", "")) for item in seq]
    except Exception:  # a malformed optional sequence must not reject an otherwise good image
        return []
