"""The inputs fuzzing found, rebuilt from the seeds (imported by the tests here; unique module name on purpose).

Each builder makes one byte-level edit of a seed (fuzz/seeds.py) that, before the fix named in
its docstring, crashed the process or broke the intake contract. The inputs the fuzzer found
that are not a single edit are stored under cases/ (see CASES in test_fuzz_regressions.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from fuzz import seeds


@cache
def seed(name: str) -> bytes:
    return seeds.build()[name]


def _codestream_start(data: bytes, signature: bytes) -> int:
    at = data.find(signature)
    assert at > 0, f"no {signature!r} in the seed"
    return at


def _poke(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def jpeg_sof_field(name: str, marker: bytes, field: str, value: int) -> bytes:
    """A JPEG / JPEG-LS seed with one SOF field changed (P precision, Y height, X width, Nf components)."""
    data = seed(name)
    at = data.find(marker)
    assert at > 0
    offset, size = {"P": (4, 1), "Y": (5, 2), "X": (7, 2), "Nf": (9, 1)}[field]
    return _poke(data, at + offset, value.to_bytes(size, "big"))


def j2k_precision_byte(value: int) -> bytes:
    data = seed("jpeg2000_lossless.dcm")
    at = _codestream_start(data, b"\xff\x4f\xff\x51")
    return _poke(data, at + 2 + 40, bytes([value]))  # Ssiz of the first component


def jpeg_byte(offset: int, value: int) -> bytes:
    data = seed("jpeg_baseline_8bit.dcm")
    return _poke(data, _codestream_start(data, b"\xff\xd8\xff") + offset, bytes([value]))


def rle_header_byte(offset: int, value: int) -> bytes:
    data = seed("rle_lossless.dcm")
    # The RLE header: number of segments (2 for 16-bit samples), then 15 segment offsets.
    at = _codestream_start(data, b"\x02\x00\x00\x00\x40\x00\x00\x00")
    return _poke(data, at + offset, bytes([value]))


def header_us(data: bytes, tag: tuple[int, int], value: int) -> bytes:
    """`data` with its first explicit-VR little-endian US element `tag` (Rows, Columns...) set to `value`."""
    needle = tag[0].to_bytes(2, "little") + tag[1].to_bytes(2, "little") + b"US\x02\x00"
    at = data.find(needle)
    assert at > 0
    return _poke(data, at + len(needle), value.to_bytes(2, "little"))


def rows_columns(name: str, rows: int, columns: int) -> bytes:
    return header_us(header_us(seed(name), (0x0028, 0x0010), rows), (0x0028, 0x0011), columns)


# name -> (builder, expected outcome of fuzz.intake_check.check, a substring of the reason or None)
BUILT: dict[str, tuple[Callable[[], bytes], str, str | None]] = {
    # gdcm segfaulted: 24-bit samples in a JPEG Lossless frame (the fuzzer's first crash, after 883 runs)
    "jpeg_lossless_precision_24": (lambda: jpeg_sof_field("jpeg_lossless_sv1.dcm", b"\xff\xc3", "P", 24),
                                   "rejected", "24-bit samples"),
    # gdcm segfaulted (JPEG baseline) / aborted (JPEG-LS) on more than 16 bits per sample
    "jpeg_baseline_precision_17": (lambda: jpeg_sof_field("jpeg_baseline_8bit.dcm", b"\xff\xc0", "P", 17),
                                   "rejected", "17-bit samples"),
    "jpegls_precision_17": (lambda: jpeg_sof_field("jpegls_lossless.dcm", b"\xff\xf7", "P", 17),
                            "rejected", "17-bit samples"),
    # gdcm's CharLS segfaulted on a JPEG-LS frame 0 pixels wide
    "jpegls_width_0": (lambda: jpeg_sof_field("jpegls_lossless.dcm", b"\xff\xf7", "X", 0),
                       "rejected", "compressed frame is 48x0 pixels"),
    # height 0 (DNL): gdcm allocated until the kernel killed the process; pylibjpeg-libjpeg never returned (JPEG-LS)
    "jpeg_baseline_height_0": (lambda: jpeg_sof_field("jpeg_baseline_8bit.dcm", b"\xff\xc0", "Y", 0),
                               "rejected", "compressed frame is 0x40 pixels"),
    "jpegls_near_lossless_height_0": (lambda: jpeg_sof_field("jpegls_near_lossless.dcm", b"\xff\xf7", "Y", 0),
                                      "rejected", "compressed frame is 0x40 pixels"),
    # gdcm aborted on a JPEG 2000 precision byte of 0xFF (128-bit signed samples)
    "j2k_precision_byte_ff": (lambda: j2k_precision_byte(0xFF), "rejected", "128-bit samples"),
    # gdcm aborted (an uncaught C++ exception, "unknown JFIF revision number 33.01") on a JPEG whose
    # JFIF version byte is changed; a valid image otherwise. Fixed by not letting gdcm decode received data.
    "jpeg_baseline_jfif_revision_33": (lambda: jpeg_byte(11, 0x21), "accepted", None),
    # gdcm aborted the same way on a broken APP0 marker; now the marker walk rejects it first
    "jpeg_baseline_broken_app0_marker": (lambda: jpeg_byte(2, 0x00), "rejected", "malformed JPEG marker"),
    # pylibjpeg-rle panicked (pyo3 PanicException, a BaseException) on a wrong segment offset. The
    # offset is still in order and inside the frame, so intake's RLE header check (no decode) passes
    # it; the decode at ingestion rejects it.
    "rle_segment_offset_0": (lambda: rle_header_byte(8, 0x00), "rejected-at-display", "cannot be decoded"),
    # 65535 x 65535 claimed by a 4 kB RLE upload: the decoder allocated the 8.6 GB frame
    "rle_rows_columns_65535": (lambda: rows_columns("rle_lossless.dcm", 65535, 65535), "rejected", "image is too large"),
}
