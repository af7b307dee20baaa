"""Every crash `make fuzz` found, as a regression test (docs/fuzzing.md lists them).

Two kinds of input: single-byte edits of a seed, rebuilt in code (fuzz_cases.BUILT), and inputs
the fuzzer made that are not one edit, stored under cases/ (CASES below). Half of the crashes were
native (a segfault or abort in gdcm, memory until the kernel killed the process, a decoder that
never returned), which no `except` catches: the inputs therefore run in a child process with a
memory and time limit, so a regression fails its test instead of killing the test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000, JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, RLELossless

import fuzz_cases
from libs.core.errors import InputRejected
from libs.dicom import _attrs, codestream, decode_pixels, read_dataset, validate_dataset
from libs.dicom.validate import decoding_plugins

CASES_DIR = Path(__file__).parent / "cases"
REPO_ROOT = Path(__file__).resolve().parents[2]

# stored file -> (expected outcome of fuzz.intake_check.check, substring of the reason or None);
# what each one broke before its fix is in the comment.
CASES: dict[str, tuple[str, str | None]] = {
    # Pixel Data with a VR the fuzzer garbled: pydicom's NotImplementedError escaped from
    # len(ds.PixelData) in check_pixel_module (the pipeline would have retried the job)
    "pixel_data_unknown_vr.dcm": ("rejected", "invalid PixelData value"),
    # Pixel Data present with an empty value: TypeError, len(None)
    "pixel_data_without_value.dcm": ("rejected", "has no pixel data"),
    # BodyPartExamined written as a sequence with broken items: str() of it raised NotImplementedError
    "body_part_as_sequence.dcm": ("rejected", "a sequence, not text"),
    # a transfer syntax UID with control characters went verbatim into the reason (two lines)
    "transfer_syntax_control_chars.dcm": ("rejected", "is not supported"),
    # WindowCenter 1e308: low == high in float64, ZeroDivisionError in the display pipeline
    "window_center_1e308.dcm": ("accepted", None),
    # RescaleIntercept NaN / 1e400 (inf) and RescaleSlope 1e308: a NaN model input, accepted
    "rescale_intercept_nan.dcm": ("rejected-at-display", "invalid RescaleIntercept nan"),
    "rescale_intercept_1e400.dcm": ("rejected-at-display", "invalid RescaleIntercept inf"),
    "rescale_slope_1e308.dcm": ("rejected-at-display", "out of range"),
}

_CHILD = r"""
import json, os, resource, sys
sys.path.insert(0, sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a memory blow-up fails fast, not the machine
from fuzz import intake_check
from libs.core.errors import InputRejected
from libs.dicom import read_dataset, validate_dataset
intake_check.quiet()
for path in sys.argv[2:]:
    name = os.path.basename(path)
    print(json.dumps({"start": name}), flush=True)
    data = open(path, "rb").read()
    try:
        outcome = intake_check.check(data)
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    reason = None
    try:
        from libs.dicom import decode_pixels
        ds = read_dataset(data)
        validate_dataset(ds, decode=True)
        decode_pixels(ds)
    except InputRejected as exc:
        reason = exc.reason
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"name": name, "outcome": outcome, "reason": reason}), flush=True)
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    """Runs every case through the intake in one child process; name -> {outcome, reason} or {crash}."""
    folder = tmp_path_factory.mktemp("fuzz_cases")
    paths = []
    for name, (build, _, _) in fuzz_cases.BUILT.items():
        path = folder / name
        path.write_bytes(build())
        paths.append(path)
    paths += [CASES_DIR / name for name in CASES]
    results: dict[str, dict] = {}
    remaining = [str(p) for p in paths]
    # A case that kills the child is recorded and the child restarted on the ones after it.
    while remaining:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(REPO_ROOT), *remaining],
            capture_output=True, text=True, timeout=120, env=dict(os.environ, RUST_BACKTRACE="0"),
        )
        started = None
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record.pop("name")] = record
                started = None
        if started is None:
            assert proc.returncode == 0, proc.stderr[-2000:]
            break
        results[started] = {"crash": f"child died with status {proc.returncode}: {proc.stderr[-500:]}"}
        names = [Path(p).name for p in remaining]
        remaining = remaining[names.index(started) + 1 :]
    return results


@pytest.mark.parametrize("name", list(fuzz_cases.BUILT))
def test_built_case(outcomes, name):
    _, expected, reason_part = fuzz_cases.BUILT[name]
    result = outcomes[name]
    assert "crash" not in result, result["crash"]
    assert result["outcome"] == expected
    if reason_part is not None:
        assert reason_part in (result["reason"] or "")


@pytest.mark.parametrize("name", list(CASES))
def test_stored_case(outcomes, name):
    expected, reason_part = CASES[name]
    result = outcomes[name]
    assert "crash" not in result, result["crash"]
    assert result["outcome"] == expected
    if reason_part is not None:
        assert reason_part in (result["reason"] or "")


def test_stored_cases_stay_small():
    sizes = {p.name: p.stat().st_size for p in CASES_DIR.iterdir()}
    assert set(sizes) == set(CASES), "every stored case is listed in CASES, and only those exist"
    assert sum(sizes.values()) < 200_000


# ----------------------------------------------------------------- the fixes, one at a time


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, JPEG2000, RLELossless])
def test_gdcm_never_decodes_received_data(syntax):
    plugins = decoding_plugins(get_decoder(syntax))
    assert plugins, "every accepted compressed syntax keeps a decoder"
    assert "gdcm" not in plugins


def test_a_rust_panic_in_a_decoder_is_a_rejection(monkeypatch):
    class PanicException(BaseException):  # what pyo3 raises; deliberately not an Exception
        pass

    def panics(*args, **kwargs):
        raise PanicException("index out of bounds: the len is 3840 but the index is 3840")

    ds = read_dataset(fuzz_cases.seed("rle_lossless.dcm"))
    monkeypatch.setattr(type(get_decoder(RLELossless)), "as_array", panics)
    with pytest.raises(InputRejected, match="cannot be decoded"):
        validate_dataset(ds, decode=True)


def test_keyboard_interrupt_is_not_swallowed(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    ds = read_dataset(fuzz_cases.seed("rle_lossless.dcm"))
    monkeypatch.setattr(type(get_decoder(RLELossless)), "as_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        validate_dataset(ds, decode=True)


def test_max_image_pixels_setting_is_the_limit(monkeypatch):
    from libs.core.config import reset_settings_cache

    data = fuzz_cases.seed("explicit_le_16bit_window.dcm")  # 48 x 40 = 1920 pixels
    monkeypatch.setenv("CXR_MAX_IMAGE_PIXELS", "1919")
    reset_settings_cache()
    try:
        with pytest.raises(InputRejected, match="image is too large: 48x40 pixels, more than the 1919"):
            validate_dataset(read_dataset(data))
        monkeypatch.setenv("CXR_MAX_IMAGE_PIXELS", "1920")
        reset_settings_cache()
        validate_dataset(read_dataset(data), decode=True)
    finally:
        monkeypatch.delenv("CXR_MAX_IMAGE_PIXELS")
        reset_settings_cache()


def test_jp2_wrapped_code_stream_header_is_found():
    # Some encoders write a JP2 file (boxes around the code stream); the SIZ check looks inside.
    data = fuzz_cases.seed("jpeg2000_lossless.dcm")
    at = data.find(b"\xff\x4f\xff\x51")
    stream = data[at : data.rfind(b"\xff\xd9") + 2]
    jp2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x14ftypjp2 \x00\x00\x00\x00jp2 "
    jp2 += (8 + len(stream)).to_bytes(4, "big") + b"jp2c" + stream
    header = codestream.j2k_frame_header(jp2)
    assert (header.rows, header.columns, header.components, header.precision) == (48, 40, 1, 12)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\xff\xd8\xff\xda\x00\x08", "no JPEG frame header"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "ends inside its JPEG frame header"),
        (b"\xff\xd8\x00\xe0", "malformed JPEG marker"),
        (b"\xff\xd8\xff\xe0\x00\x01", "malformed JPEG marker segment"),
        (b"\x00\x01\x02\x03", "not a JPEG code stream"),
    ],
)
def test_jpeg_frame_header_walk_rejects_malformed_streams(frame, message):
    with pytest.raises(InputRejected, match=message):
        codestream.jpeg_frame_header(frame)


def test_j2k_frame_header_rejects_malformed_streams():
    with pytest.raises(InputRejected, match="not a JPEG 2000 code stream"):
        codestream.j2k_frame_header(b"\xff\xd8\xff\xc0")
    with pytest.raises(InputRejected, match="ends inside its JPEG 2000 image header"):
        codestream.j2k_frame_header(b"\xff\x4f\xff\x51\x00\x29")
    with pytest.raises(InputRejected, match="without a code stream box"):
        codestream.j2k_frame_header(b"\x00\x00\x00\x0cjP  \r\n\x87\n")


def test_sigmoid_window_that_float32_cannot_apply_is_replaced():
    ds = read_dataset(fuzz_cases.seed("explicit_le_32bit_sigmoid.dcm"))
    ds.WindowWidth = 1e-300  # -4 / w is -inf in float32: the image would be NaN
    out = decode_pixels(ds)
    assert np.isfinite(out).all() and 0.0 <= out.min() < out.max() <= 1.0


def test_tiny_rescale_slope_makes_a_blank_image_rejection():
    ds = read_dataset(fuzz_cases.seed("explicit_le_16bit_window.dcm"))
    ds.RescaleSlope = 1e-45  # every value becomes 0 in float32
    del ds.WindowCenter, ds.WindowWidth
    with pytest.raises(InputRejected, match="blank after the Modality LUT or rescale: its values do not differ"):
        decode_pixels(ds)


def test_text_attribute_holding_a_sequence_is_rejected():
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    ds.add_new(0x00180015, "SQ", Sequence([Dataset()]))
    with pytest.raises(InputRejected, match="BodyPartExamined value in the header: a sequence"):
        _attrs.text(ds, "BodyPartExamined")
