"""What counts as a usable chest radiograph, as data: modalities, body-part words, pixel formats.

Kept apart from the checks themselves so that the policy can be read (and argued about) in one place.
"""

from __future__ import annotations

import re
import unicodedata

# Projection radiography. CR and DX are the DICOM terms; DR and RG are not standard Modality
# values but several vendors and film digitisers write them for the same kind of image.
ACCEPTED_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})

# BodyPartExamined is free-ish text in practice (CHEST, THORAX, CHEST_LAT, "Thorax p.a.",
# TORAX, BRUST...). It is split into words and a word must be one of these exactly, or start
# with CHEST/THORAX (CHESTPA, THORAXAP). Exact words rather than substrings, because
# "THORACIC SPINE" or "BRUSTWIRBELSAEULE" (thoracic spine) contain chest-like stems but are not
# chest radiographs.
_CHEST_WORDS = frozenset(
    {
        "CHEST", "THORAX", "THX", "CXR", "LUNG", "LUNGS", "HEART",  # English / DICOM terms
        "TORAX",  # Spanish, Portuguese, Swedish... (accents removed before matching)
        "TORACE",  # Italian
        "THORAKS", "TORAKS",  # Norwegian / Danish, Turkish
        "BRUST", "BRUSTKORB", "LUNGE", "LUNGEN",  # German
        "PECHO", "PULMON", "PULMONES",  # Spanish
        "POITRINE", "POUMON", "POUMONS",  # French
        "BORST", "LONGEN",  # Dutch
    }
)
_CHEST_PREFIXES = ("CHEST", "THORAX")

GRAYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})

# Bits per stored sample that the decode path handles (all become float32).
ACCEPTED_BITS_ALLOCATED = frozenset({8, 16, 32})


def words(raw: str) -> list[str]:
    """Upper-case words of a header string, accents removed, dotted abbreviations joined ('p.a.' -> 'PA')."""
    folded = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii").upper()
    folded = re.sub(r"\b([A-Z])\.\s?(?=[A-Z]\b)", r"\1", folded)  # "P. A." / "P.A." -> "PA"
    return [w for w in re.split(r"[^A-Z0-9]+", folded) if w]


def is_chest_body_part(raw: str) -> bool:
    return any(w in _CHEST_WORDS or w.startswith(_CHEST_PREFIXES) for w in words(raw))


# pydicom decoding plugins used on received pixel data, in the order they are tried (pydicom's
# own order, less gdcm). gdcm stays installed (tests use it to encode JPEG Lossless) but never
# decodes an upload: fuzzing the intake (docs/fuzzing.md) made it segfault, abort on an uncaught
# C++ exception and allocate memory until the process was killed, on single edited bytes that
# the other plugins reject with an ordinary exception. Every compressed syntax we accept keeps at
# least one decoder: JPEG (pylibjpeg-libjpeg, Pillow), JPEG Lossless (pylibjpeg-libjpeg), JPEG-LS
# (pylibjpeg-libjpeg, pyjpegls), JPEG 2000 (pylibjpeg-openjpeg, Pillow), HTJ2K (pylibjpeg-openjpeg),
# RLE (pylibjpeg-rle, pydicom).
DECODING_PLUGINS = ("pylibjpeg", "pyjpegls", "pillow", "pydicom")
