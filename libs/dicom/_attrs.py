"""Defensive reads of header attributes.

pydicom converts element values lazily, so a malformed value (a DS that is not a number, a
broken sequence) only fails when it is first touched. Every read goes through here so that
such a file is rejected with a named attribute instead of escaping as a bare ValueError,
which the pipeline would treat as transient and retry.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from libs.core.errors import InputRejected


def value(ds: Dataset, keyword: str) -> Any:
    """The element's value, None when absent or empty; InputRejected when it cannot be parsed."""
    try:
        elem = ds.get(keyword)
    except Exception as exc:  # any parse failure of this one element
        raise InputRejected(f"invalid {keyword} value in the header ({type(exc).__name__})") from None
    if elem is None or elem == "" or (isinstance(elem, (list, MultiValue)) and len(elem) == 0):
        return None
    return elem


def text(ds: Dataset, keyword: str) -> str:
    """A string attribute, stripped; multi-valued ones joined with a backslash; '' when absent."""
    v = value(ds, keyword)
    if v is None:
        return ""
    if isinstance(v, Sequence):
        # A text attribute written with VR SQ (found by fuzzing): str() would parse its items,
        # which fails in as many ways as the items are broken.
        raise InputRejected(f"invalid {keyword} value in the header: a sequence, not text")
    if isinstance(v, (list, MultiValue)):
        return "\\".join(str(x).strip() for x in v)
    return str(v).strip()


def first_number(ds: Dataset, keyword: str) -> float | None:
    """First value of a numeric (DS/IS/US) attribute, which may be multi-valued (windows)."""
    v = value(ds, keyword)
    if v is None:
        return None
    if isinstance(v, (list, MultiValue)):
        v = v[0]
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputRejected(f"invalid {keyword} value in the header: not a number") from None


def integer(ds: Dataset, keyword: str) -> int | None:
    number = first_number(ds, keyword)
    if number is None:
        return None
    if number != int(number):
        raise InputRejected(f"invalid {keyword} value in the header: not an integer")
    return int(number)


def shown(raw: str, limit: int = 40) -> str:
    """A header value made safe to put in a reason: printable ASCII, short, quoted.

    Only ever used for coded values (Modality, BodyPartExamined...), never for names or
    free-text descriptions, which may carry patient details.
    """
    folded = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in folded).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 3] + "..."
    return repr(cleaned)
