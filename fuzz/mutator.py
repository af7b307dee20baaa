"""A DICOM-aware mutation, mixed with libFuzzer's own byte mutations.

Plain byte mutation of a valid file mostly breaks the header parse early, or flips pixel
values nobody checks. The interesting inputs are well-formed files whose header *values*
disagree with each other or with the pixel data: Rows/Columns larger than the data, BitsStored
above BitsAllocated, a compressed transfer syntax over native pixels, a colour photometric
interpretation, a code stream whose own size differs from the header's. This module makes
those directly, without a full parse (so it also works on inputs already damaged by earlier
mutations): it finds an element's tag in the bytes (explicit or implicit VR, little or big
endian), replaces the value with an interesting one and fixes the element's length field; or
it edits the size fields of a JPEG (SOFn) / JPEG 2000 (SIZ) code stream header.

`mutate(data, max_size, seed, byte_mutate)` is the libFuzzer custom mutator; `byte_mutate`
is atheris.Mutate when fuzzing (tests pass a stand-in).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from pydicom.uid import AllTransferSyntaxes

# Share of mutations that are DICOM-aware; the rest are libFuzzer's (bit flips, inserts,
# crossovers with other corpus inputs, dictionary words...).
HEADER_SHARE = 0.4
# Of the DICOM-aware ones, the share followed by a libFuzzer byte mutation as well.
STACKED_SHARE = 0.25

_US_VALUES = (0, 1, 2, 3, 7, 8, 9, 11, 12, 15, 16, 17, 24, 31, 32, 33, 40, 48, 63, 64, 255, 256,
              1024, 4095, 4096, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
_IS_VALUES = ("0", "1", "2", "3", "-1", "65536", "2147483647", "99999999999999", "1.5", "", "x", "1\\2")
_DS_VALUES = ("0", "1", "-1", "0.5", "2", "4096", "65535", "-32768", "1e-45", "1e38", "1e308", "-1e308", "1e400",
              "nan", "inf", "-inf", "NaN", "", "abc", "1\\2", "0\\0", "1e", "+", "3.4028236e38")
_CS_VALUES = {
    "PhotometricInterpretation": ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT",
                                  "YBR_RCT", "PALETTE COLOR", "MONOCHROME3", "monochrome2", "", "MONOCHROME2\\RGB"),
    "Modality": ("CR", "DX", "DR", "RG", "MR", "CT", "", "cr", "DX\\CR"),
    "BodyPartExamined": ("CHEST", "THORAX", "SKULL", "", "THORACIC SPINE", "Thorax p.a.", "CHEST\\HAND"),
    "VOILUTFunction": ("LINEAR", "LINEAR_EXACT", "SIGMOID", "", "CUBIC", "SIGMOID\\LINEAR"),
    "ViewPosition": ("PA", "AP", "LL", "RLD", "", "PA\\AP"),
    "PresentationLUTShape": ("IDENTITY", "INVERSE", ""),
}
_UI_VALUES = tuple(str(uid) for uid in AllTransferSyntaxes) + (
    "1.2.840.10008.1.2.4.999", "1.2.3", "", "1.2.840.10008.1.2.1\\1.2.840.10008.1.2", "not.a.uid",
)

# keyword: (group, element, VR as it is written in explicit VR, value family)
ELEMENTS: dict[str, tuple[int, int, str, str]] = {
    "TransferSyntaxUID": (0x0002, 0x0010, "UI", "UI"),
    "Modality": (0x0008, 0x0060, "CS", "CS"),
    "BodyPartExamined": (0x0018, 0x0015, "CS", "CS"),
    "ViewPosition": (0x0018, 0x5101, "CS", "CS"),
    "StudyInstanceUID": (0x0020, 0x000D, "UI", "UID"),
    "SOPInstanceUID": (0x0008, 0x0018, "UI", "UID"),
    "SamplesPerPixel": (0x0028, 0x0002, "US", "US"),
    "PhotometricInterpretation": (0x0028, 0x0004, "CS", "CS"),
    "PlanarConfiguration": (0x0028, 0x0006, "US", "US"),
    "NumberOfFrames": (0x0028, 0x0008, "IS", "IS"),
    "Rows": (0x0028, 0x0010, "US", "US"),
    "Columns": (0x0028, 0x0011, "US", "US"),
    "BitsAllocated": (0x0028, 0x0100, "US", "US"),
    "BitsStored": (0x0028, 0x0101, "US", "US"),
    "HighBit": (0x0028, 0x0102, "US", "US"),
    "PixelRepresentation": (0x0028, 0x0103, "US", "US"),
    "WindowCenter": (0x0028, 0x1050, "DS", "DS"),
    "WindowWidth": (0x0028, 0x1051, "DS", "DS"),
    "RescaleIntercept": (0x0028, 0x1052, "DS", "DS"),
    "RescaleSlope": (0x0028, 0x1053, "DS", "DS"),
    "VOILUTFunction": (0x0028, 0x1056, "CS", "CS"),
    "PresentationLUTShape": (0x2050, 0x0020, "CS", "CS"),
    "LUTDescriptor": (0x0028, 0x3002, "US", "US3"),
}
# The header fields that decide how pixels are read are picked more often.
_WEIGHTS = {"Rows": 4, "Columns": 4, "BitsAllocated": 4, "BitsStored": 3, "PhotometricInterpretation": 3,
            "TransferSyntaxUID": 4, "PixelRepresentation": 2, "SamplesPerPixel": 2, "NumberOfFrames": 2,
            "HighBit": 2, "LUTDescriptor": 2}
_NAMES = tuple(ELEMENTS)
_NAME_WEIGHTS = tuple(_WEIGHTS.get(name, 1) for name in _NAMES)
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


def mutate(data: bytes, max_size: int, seed: int, byte_mutate: Callable[[bytes, int], bytes]) -> bytes:
    rng = random.Random(seed)
    if data and rng.random() < HEADER_SHARE:
        out = (header_mutation if rng.random() < 0.8 else codestream_mutation)(data, rng)
        if out is not None and out != data:
            if rng.random() < STACKED_SHARE:
                out = byte_mutate(out, max_size)
            return out[:max_size]
    return byte_mutate(data, max_size)


def header_mutation(data: bytes, rng: random.Random) -> bytes | None:
    """One header element given an interesting value; None when the element is not in `data`."""
    name = rng.choices(_NAMES, _NAME_WEIGHTS)[0]
    group, element, vr, family = ELEMENTS[name]
    found = find_element(data, group, element)
    if found is None:
        return None
    value_at, length, length_at, length_size, big = found
    if family == "US":
        value = _us(rng, big)
        if rng.random() < 0.1:  # a value of the wrong length: shifts the rest of the element
            value = value[: rng.choice((0, 1))] if rng.random() < 0.5 else value * 2
    elif family == "US3":
        fmt = ">HHH" if big else "<HHH"
        value = struct.pack(fmt, *(rng.choice(_US_VALUES) for _ in range(3)))
    elif family == "IS":
        value = _pad(rng.choice(_IS_VALUES), b" ")
    elif family == "DS":
        value = _pad(rng.choice(_DS_VALUES), b" ")
    elif family == "CS":
        value = _pad(rng.choice(_CS_VALUES[name]), b" ")
    elif family == "UI":
        value = _pad(rng.choice(_UI_VALUES), b"\x00")
    else:  # "UID": a study/instance UID, made invalid in one of the ways PACS get wrong
        value = _pad(rng.choice(("", "1.2.3", "1.2.3.", "1..2", "1.2.abc", "9" * 65, "1.2.3\\4.5", "../../x")), b"\x00")
    if rng.random() < 0.1:
        value = value[:-1] if value else b"\x00"  # an odd length, which DICOM forbids
    return _replace(data, value_at, length, length_at, length_size, big, value)


def codestream_mutation(data: bytes, rng: random.Random) -> bytes | None:
    """Edits the image size, precision or component count in a JPEG SOF or JPEG 2000 SIZ marker segment."""
    sites = []
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc3", b"\xff\xf7"):  # SOF0/1/3, SOF55 (JPEG-LS)
        at = data.find(marker)
        if at >= 0 and at + 10 <= len(data):
            # Lf(2) P(1) Y(2) X(2) Nf(1)
            sites += [(at + 4, 1), (at + 5, 2), (at + 7, 2), (at + 9, 1)]
    at = data.find(b"\xff\x51")  # SIZ: Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4) ... Csiz(2) Ssiz(1)
    if at >= 0 and at + 42 <= len(data):
        sites += [(at + 6, 4), (at + 10, 4), (at + 14, 4), (at + 18, 4), (at + 38, 2), (at + 40, 1)]
    if not sites:
        return None
    offset, size = rng.choice(sites)
    top = (1 << (8 * size)) - 1
    value = rng.choice((0, 1, 2, 7, 8, 12, 16, 17, 24, 33, 40, 48, 255, 256, 4096, top, top // 2 + 1, rng.randint(0, top)))
    return data[:offset] + (value & top).to_bytes(size, "big") + data[offset + size :]


def find_element(data: bytes, group: int, element: int) -> tuple[int, int, int, int, bool] | None:
    """(value offset, value length, length-field offset, length-field size, big endian) of the first such element."""
    for big in (False, True):
        tag = struct.pack(">HH" if big else "<HH", group, element)
        at = data.find(tag)
        while at >= 0:
            found = _element_at(data, at, big)
            if found is not None:
                return found
            at = data.find(tag, at + 1)
        if group == 0x0002:
            return None  # the file meta is always little endian
    return None


def _element_at(data: bytes, at: int, big: bool) -> tuple[int, int, int, int, bool] | None:
    end = "big" if big else "little"
    vr = data[at + 4 : at + 6]
    if len(vr) == 2 and vr.isalpha() and vr.isupper():
        if vr in _LONG_VRS:
            length_at, length_size = at + 8, 4
        else:
            length_at, length_size = at + 6, 2
    else:  # implicit VR: a 4-byte length right after the tag
        length_at, length_size = at + 4, 4
    value_at = length_at + length_size
    if value_at > len(data):
        return None
    length = int.from_bytes(data[length_at:value_at], end)
    if length == 0xFFFFFFFF or value_at + length > len(data):
        return None
    return value_at, length, length_at, length_size, big


def _replace(data: bytes, value_at: int, length: int, length_at: int, length_size: int, big: bool,
             value: bytes) -> bytes:
    new_length = len(value).to_bytes(length_size, "big" if big else "little")
    return data[:length_at] + new_length + value + data[value_at + length :]


def _us(rng: random.Random, big: bool) -> bytes:
    v = rng.choice(_US_VALUES) if rng.random() < 0.85 else rng.randrange(0x10000)
    return struct.pack(">H" if big else "<H", v)


def _pad(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii")
    return raw + pad if len(raw) % 2 else raw
