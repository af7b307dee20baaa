"""The grayscale pipeline of decode_pixels on small generated images with known values."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_helpers import make_dataset, phantom, to_bytes
from libs.core.errors import InputRejected
from libs.dicom import decode_pixels, read_dataset

# A 1x5 ramp is enough to read the transfer function off the output.
RAMP = np.array([[0, 1000, 2000, 3000, 4000]], dtype=np.uint16)


def test_output_is_float32_2d_in_unit_range():
    out = decode_pixels(make_dataset(phantom()))
    assert out.dtype == np.float32 and out.ndim == 2 and out.flags.c_contiguous
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_linear_window_follows_the_dicom_formula():
    # Window 2000 / 2001: the standard's LINEAR maps [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2] = [999.5, 2999.5] to [0, 1].
    out = decode_pixels(make_dataset(RAMP, WindowCenter=2000, WindowWidth=2001))
    np.testing.assert_allclose(out[0], [0.0, 0.00025, 0.50025, 1.0, 1.0], atol=1e-4)


def test_first_of_several_windows_is_used():
    out = decode_pixels(make_dataset(RAMP, WindowCenter=[2000, 500], WindowWidth=[4001, 100]))
    np.testing.assert_allclose(out[0], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-3)


def test_linear_exact_and_sigmoid_functions():
    exact = decode_pixels(make_dataset(RAMP, WindowCenter=2000, WindowWidth=4000, VOILUTFunction="LINEAR_EXACT"))
    np.testing.assert_allclose(exact[0], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)
    sigmoid = decode_pixels(make_dataset(RAMP, WindowCenter=2000, WindowWidth=4000, VOILUTFunction="SIGMOID"))
    assert sigmoid[0, 2] == pytest.approx(0.5)
    assert np.all(np.diff(sigmoid[0]) > 0) and 0 < sigmoid.min() and sigmoid.max() < 1


def test_rescale_slope_and_intercept_are_applied_before_the_window():
    # Stored 0..4000 with slope 2, intercept -1000 -> -1000..7000; a window on the *rescaled*
    # values [-1000, 7000] gives the plain ramp. Ignoring the rescale would give another curve.
    ds = make_dataset(
        RAMP, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=3000, WindowWidth=8000,
        VOILUTFunction="LINEAR_EXACT",
    )
    np.testing.assert_allclose(decode_pixels(ds)[0], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)


def _voi_lut_item(table: list[int], first: int, bits: int = 16) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(table), first, bits]
    item.LUTData = table
    return item


def test_voi_lut_sequence_is_applied_instead_of_the_window():
    # An inverting 5-entry LUT starting at 1000: inputs below 1000 take entry 0, above 1004 the last.
    ds = make_dataset(
        np.array([[0, 1000, 1002, 1004, 4000]], dtype=np.uint16),
        WindowCenter=2000, WindowWidth=4000,  # present, but the LUT takes precedence
    )
    ds.VOILUTSequence = Sequence([_voi_lut_item([400, 300, 200, 100, 0], first=1000)])
    np.testing.assert_allclose(decode_pixels(ds)[0], [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-6)


def test_voi_lut_with_a_wrong_bit_depth_still_spans_the_range():
    # Descriptor says 16 bits but the table only reaches 4095: a common vendor error.
    ds = make_dataset(RAMP)
    table = list(np.linspace(0, 4095, 4001).astype(int))
    ds.VOILUTSequence = Sequence([_voi_lut_item(table, first=0, bits=16)])
    out = decode_pixels(ds)
    assert out[0, 0] == 0.0 and out[0, -1] == pytest.approx(1.0)


def test_modality_lut_sequence_is_applied():
    ds = make_dataset(np.array([[0, 1, 2, 3]], dtype=np.uint16), WindowCenter=50, WindowWidth=100,
                      VOILUTFunction="LINEAR_EXACT")
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = [0, 25, 50, 100]
    ds.ModalityLUTSequence = Sequence([item])
    np.testing.assert_allclose(decode_pixels(ds)[0], [0.0, 0.25, 0.5, 1.0], atol=1e-6)


def test_monochrome1_is_the_inverse_of_monochrome2():
    pixels = phantom()
    mono2 = decode_pixels(make_dataset(pixels, WindowCenter=2048, WindowWidth=4096))
    mono1 = decode_pixels(make_dataset(pixels, WindowCenter=2048, WindowWidth=4096, PhotometricInterpretation="MONOCHROME1"))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    # Brightest stored value is white in MONOCHROME2 and black in MONOCHROME1.
    brightest = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert mono2[brightest] > 0.9 and mono1[brightest] < 0.1


def test_without_a_window_a_robust_percentile_window_ignores_outliers():
    pixels = phantom()
    pixels[0, 0], pixels[0, 1] = 0, 4095  # a dead and a hot pixel
    out = decode_pixels(make_dataset(pixels))
    # The outliers are clipped rather than stretching the window: the anatomy keeps its contrast.
    assert out[0, 0] == 0.0 and out[0, 1] == 1.0
    body = out[10:-10, 10:-10]
    assert np.percentile(body, 99) - np.percentile(body, 1) > 0.8


def test_a_window_that_saturates_the_image_is_replaced():
    # Centre far above every stored value: the header window would give an all-black image.
    out = decode_pixels(make_dataset(phantom(), WindowCenter=60000, WindowWidth=100))
    assert 0.3 < float(out.mean()) < 0.7


def test_signed_pixels_with_rescale():
    pixels = (phantom().astype(np.int16) - 2048)
    ds = make_dataset(pixels, RescaleSlope=1, RescaleIntercept=100, WindowCenter=100, WindowWidth=4096)
    assert ds.PixelRepresentation == 1
    out = decode_pixels(ds)
    np.testing.assert_allclose(out, decode_pixels(make_dataset(phantom(), WindowCenter=2048, WindowWidth=4096)), atol=1e-6)


def test_blank_image_is_rejected():
    with pytest.raises(InputRejected, match="image is blank"):
        decode_pixels(make_dataset(np.full((32, 32), 700, dtype=np.uint16)))


def test_voi_lut_data_stored_as_ow_bytes_in_a_file():
    ds = make_dataset(np.array([[0, 1000, 1002, 1004, 4000]], dtype=np.uint16))
    item = Dataset()
    item.LUTDescriptor = [5, 1000, 16]
    item.add_new(0x00283006, "OW", np.array([400, 300, 200, 100, 0], dtype="<u2").tobytes())  # LUTData
    ds.VOILUTSequence = Sequence([item])
    parsed = read_dataset(to_bytes(ds))
    np.testing.assert_allclose(decode_pixels(parsed)[0], [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-6)


def test_a_sigmoid_window_far_from_the_data_is_replaced_too():
    out = decode_pixels(make_dataset(phantom(), WindowCenter=60000, WindowWidth=100, VOILUTFunction="SIGMOID"))
    assert 0.3 < float(out.mean()) < 0.7
