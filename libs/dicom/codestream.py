"""The image header inside a compressed frame, checked against the DICOM header before any decoder runs.

Why: the native decoders trust the code stream's own header, and pydicom hands them buffers
sized from the DICOM one. Fuzzing the intake (fuzz/, docs/fuzzing.md) found that a single
edited byte there takes the whole process down, which no `except` can catch:

* a JPEG / JPEG-LS sample precision above 16 bits: gdcm segfaults (JPEG) or aborts (JPEG-LS);
* a JPEG 2000 precision byte of 0xFF (128-bit signed samples): gdcm aborts;
* a JPEG-LS frame width of 0: gdcm's CharLS segfaults;
* a JPEG / JPEG-LS frame height of 0 (height given later by a DNL marker): gdcm allocates
  memory until the kernel kills the process, and pylibjpeg-libjpeg never returns (JPEG-LS).

A frame whose size, component count or precision disagrees with Rows, Columns,
SamplesPerPixel and BitsAllocated cannot decode into the frame DICOM describes anyway, so
rejecting it loses no valid image. Only the marker segments before the image data are read;
the entropy-coded data is left to the decoders.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import UID, JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from libs.core.errors import InputRejected

# SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC), plus SOF55 (F7, JPEG-LS).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
# Markers without a length field: TEM, RST0-RST7, SOI (EOI and SOS end the search).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
# JPEG and JPEG-LS samples have at most 16 bits (ISO 10918-1 B.2.2, ISO 14495-1 C.2.2); JPEG 2000 38.
_MAX_PRECISION_JPEG = 16
_MAX_PRECISION_J2K = 38


@dataclass(frozen=True)
class FrameHeader:
    rows: int
    columns: int
    components: int
    precision: int


def check_frame_header(frame: bytes, ts: UID, *, rows: int, columns: int, samples: int, bits_allocated: int) -> None:
    """InputRejected unless the frame's own header matches the DICOM header; no-op for other syntaxes."""
    if ts in JPEGTransferSyntaxes or ts in JPEGLSTransferSyntaxes:
        header, limit = jpeg_frame_header(frame), _MAX_PRECISION_JPEG
    elif ts in JPEG2000TransferSyntaxes:
        header, limit = j2k_frame_header(frame), _MAX_PRECISION_J2K
    else:
        return
    if (header.rows, header.columns) != (rows, columns):
        raise InputRejected(
            f"compressed frame is {header.rows}x{header.columns} pixels but the header says {rows}x{columns}"
        )
    if header.components != samples:
        raise InputRejected(
            f"compressed frame has {header.components} component(s) but the header says {samples} sample(s) per pixel"
        )
    if not 1 <= header.precision <= min(limit, bits_allocated):
        raise InputRejected(
            f"compressed frame has {header.precision}-bit samples, which do not fit BitsAllocated {bits_allocated}"
        )


def jpeg_frame_header(frame: bytes) -> FrameHeader:
    """The SOF segment of a JPEG or JPEG-LS code stream."""
    if frame[:2] != b"\xff\xd8":
        raise InputRejected("compressed frame is not a JPEG code stream (no SOI marker)")
    at = 2
    try:
        while True:
            if frame[at] != 0xFF:
                raise InputRejected("compressed frame has a malformed JPEG marker before the frame header")
            marker = frame[at + 1]
            if marker == 0xFF:  # fill byte
                at += 1
                continue
            if marker in _STANDALONE:
                at += 2
                continue
            if marker in (0xD9, 0xDA):  # EOI or SOS before any SOF
                raise InputRejected("compressed frame has no JPEG frame header (SOF marker)")
            length = int.from_bytes(frame[at + 2 : at + 4], "big")
            if marker in _SOF_MARKERS:
                # Lf(2) P(1) Y(2) X(2) Nf(1)
                seg = frame[at + 4 : at + 10]
                if len(seg) < 6 or length < 8:
                    break
                return FrameHeader(
                    rows=int.from_bytes(seg[1:3], "big"),
                    columns=int.from_bytes(seg[3:5], "big"),
                    components=seg[5],
                    precision=seg[0],
                )
            if length < 2:
                raise InputRejected("compressed frame has a malformed JPEG marker segment")
            at += 2 + length
    except IndexError:
        pass
    raise InputRejected("compressed frame ends inside its JPEG frame header")


def j2k_frame_header(frame: bytes) -> FrameHeader:
    """The SIZ segment of a JPEG 2000 code stream (inside a JP2 file's jp2c box if it is one)."""
    at = _jp2_codestream_offset(frame) if frame.startswith(_JP2_SIGNATURE) else 0
    if frame[at : at + 4] != b"\xff\x4f\xff\x51":
        raise InputRejected("compressed frame is not a JPEG 2000 code stream (no SOC and SIZ markers)")
    # SIZ: marker(2) Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4) XTsiz YTsiz XTOsiz YTOsiz(16) Csiz(2) Ssiz(1)...
    seg = frame[at + 4 : at + 43]
    if len(seg) < 39:
        raise InputRejected("compressed frame ends inside its JPEG 2000 image header")

    def u32(offset: int) -> int:
        return int.from_bytes(seg[offset : offset + 4], "big")

    xsiz, ysiz, xosiz, yosiz = u32(4), u32(8), u32(12), u32(16)
    return FrameHeader(
        rows=max(0, ysiz - yosiz),
        columns=max(0, xsiz - xosiz),
        components=int.from_bytes(seg[36:38], "big"),
        precision=(seg[38] & 0x7F) + 1,
    )


def _jp2_codestream_offset(frame: bytes) -> int:
    """Where the contiguous code stream box (jp2c) starts its content; a JP2 file is a list of boxes."""
    at = 0
    while at + 8 <= len(frame):
        length = int.from_bytes(frame[at : at + 4], "big")
        kind = frame[at + 4 : at + 8]
        header = 8
        if length == 1:  # a 64-bit length follows the type
            length = int.from_bytes(frame[at + 8 : at + 16], "big")
            header = 16
        if kind == b"jp2c":
            return at + header
        if length == 0 or length < header:  # 0: the box runs to the end, and it is not jp2c
            break
        at += length
    raise InputRejected("compressed frame is a JP2 file without a code stream box")


# ------------------------------------------------------------------ JPEG 2000 layout (reduced decode)

_SOT, _SOD, _EOC, _COD, _COC = 0x90, 0x93, 0xD9, 0x52, 0x53
# A tile-part walk ends here whatever the stream says (65535 tiles x a few tile-parts is the most
# a code stream can have; a forged one gets no further).
_MAX_TILE_PARTS = 1 << 17


@dataclass(frozen=True)
class J2KLayout:
    """What a reduced-resolution decode needs from a JPEG 2000 code stream's headers (SIZ, COD/COC)."""

    xsiz: int
    ysiz: int
    xosiz: int
    yosiz: int
    components: int
    precision: int
    signed: bool
    # Wavelet decomposition levels: the fewest any component of any tile has (COD, COC, in the main
    # header and in the tile-part headers). Discarding r levels divides each side by 2**r.
    levels: int

    def reduced_shape(self, r: int) -> tuple[int, int]:
        """(rows, columns) of the image decoded with r resolution levels discarded (ISO 15444-1 B.5)."""
        f = 1 << r
        return -(-self.ysiz // f) - -(-self.yosiz // f), -(-self.xsiz // f) - -(-self.xosiz // f)


def j2k_layout(frame: bytes) -> J2KLayout | None:
    """The layout of a JPEG 2000 code stream (raw or in a JP2 file), None when its headers cannot be walked.

    Only marker segments are read (main header, then each tile-part header, jumping over the tile
    data by the tile-part lengths); None means "do not decode at a reduced resolution", never a rejection.
    """
    try:
        at = _jp2_codestream_offset(frame) if frame.startswith(_JP2_SIGNATURE) else 0
        if frame[at : at + 4] != b"\xff\x4f\xff\x51":
            return None
        siz = frame[at + 4 : at + 43]
        if len(siz) < 39:
            return None

        def u16(o: int) -> int:
            return int.from_bytes(frame[o : o + 2], "big")

        def u32(o: int) -> int:
            return int.from_bytes(frame[o : o + 4], "big")

        components = int.from_bytes(siz[36:38], "big")
        levels: list[int] = []
        pos = at + 4 + u16(at + 4)  # the marker after SIZ
        in_main, tile_parts = True, 0
        while pos + 4 <= len(frame):
            if frame[pos] != 0xFF:
                return None
            marker = frame[pos + 1]
            if marker == _EOC:
                break
            length = u16(pos + 2)
            if marker == _SOT:
                in_main = False
                tile_parts += 1
                psot = u32(pos + 6)
                if tile_parts > _MAX_TILE_PARTS or length != 10:
                    return None
                header_end = _tile_part_header(frame, pos + 12, levels, components)
                if header_end is None:
                    return None
                if psot == 0:  # the last tile-part: it runs to the EOC marker
                    break
                if psot < 14:
                    return None
                pos += psot
                continue
            if length < 2:
                return None
            if in_main:
                _collect_levels(marker, frame[pos + 4 : pos + 2 + length], levels, components)
            pos += 2 + length
        if not levels:
            return None
        return J2KLayout(
            xsiz=int.from_bytes(siz[4:8], "big"),
            ysiz=int.from_bytes(siz[8:12], "big"),
            xosiz=int.from_bytes(siz[12:16], "big"),
            yosiz=int.from_bytes(siz[16:20], "big"),
            components=components,
            precision=(siz[38] & 0x7F) + 1,
            signed=bool(siz[38] & 0x80),
            levels=min(levels),
        )
    except (IndexError, InputRejected):
        return None


def _tile_part_header(frame: bytes, pos: int, levels: list[int], components: int) -> int | None:
    """Collects the COD/COC levels of one tile-part header starting at `pos`; where SOD is, or None."""
    while pos + 2 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == _SOD:
            return pos
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        _collect_levels(marker, frame[pos + 4 : pos + 2 + length], levels, components)
        pos += 2 + length
    return None


def _collect_levels(marker: int, seg: bytes, levels: list[int], components: int) -> None:
    if marker == _COD and len(seg) >= 6:  # Scod, SGcod (progression, layers(2), MCT), SPcod: levels first
        levels.append(seg[5])
    elif marker == _COC:  # Ccoc (1 byte, 2 with more than 256 components), Scoc, SPcoc: levels first
        at = 2 if components > 256 else 1
        if len(seg) >= at + 2:
            levels.append(seg[at + 1])
