"""preprocess and ResizeGeometry: shape, padding, antialiasing, and the way back for boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libs.dicom import PreprocessedImage, ResizeGeometry, preprocess


def test_landscape_image_is_fitted_and_centred_vertically():
    img = np.ones((300, 600), dtype=np.float32)
    pre = preprocess(img, size=128)
    assert isinstance(pre, PreprocessedImage)
    assert pre.array.shape == (128, 128) and pre.array.dtype == np.float32
    g = pre.geometry
    assert (g.resized_rows, g.resized_cols, g.pad_top, g.pad_left) == (64, 128, 32, 0)
    assert not pre.array[:32].any() and not pre.array[96:].any()
    np.testing.assert_allclose(pre.array[32:96], 1.0, atol=1e-6)


def test_portrait_image_is_centred_horizontally_with_the_odd_pixel_right():
    pre = preprocess(np.ones((200, 101), dtype=np.float32), size=64)
    g = pre.geometry
    assert (g.resized_rows, g.resized_cols) == (64, 32) and g.pad_left == 16
    assert not pre.array[:, :16].any() and not pre.array[:, 48:].any() and pre.array[:, 16:48].all()


def test_small_images_are_upscaled_and_stay_in_range():
    img = np.zeros((50, 40), dtype=np.float32)
    img[20:30, 15:25] = 1.0  # a sharp square: Lanczos rings around it
    pre = preprocess(img, size=100)
    assert pre.geometry.resized_rows == 100 and pre.array.min() >= 0.0 and pre.array.max() <= 1.0


def test_exact_size_is_copied_unchanged():
    img = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    pre = preprocess(img, size=64)
    np.testing.assert_array_equal(pre.array, img)
    assert pre.array is not img


def test_downscaling_is_antialiased():
    # One-pixel stripes: a plain subsample would keep full-contrast stripes (aliasing); a
    # proper low-pass filter averages them to mid-grey.
    img = np.zeros((1024, 1024), dtype=np.float32)
    img[:, ::2] = 1.0
    out = preprocess(img, size=256).array
    assert abs(float(out.mean()) - 0.5) < 0.01
    assert float(out[8:-8, 8:-8].std()) < 0.02


def test_rejects_non_2d_input():
    with pytest.raises(ValueError):
        preprocess(np.zeros((4, 4, 3), dtype=np.float32))


def test_geometry_dict_round_trip_is_json_safe():
    g = preprocess(np.zeros((1955, 1841), dtype=np.float32), size=512).geometry
    data = json.loads(json.dumps(g.to_dict()))
    assert set(data) == {"source_rows", "source_cols", "scale", "pad_top", "pad_left", "size"}
    assert ResizeGeometry.from_dict(data) == g


def test_from_dict_rejects_garbage():
    with pytest.raises(ValueError):
        ResizeGeometry.from_dict({"source_rows": 10})
    with pytest.raises(ValueError):
        ResizeGeometry.from_dict({"source_rows": 0, "source_cols": 1, "scale": 1, "pad_top": 0, "pad_left": 0, "size": 1})


def test_boxes_round_trip_between_model_and_source_pixels():
    g = ResizeGeometry.fit(1955, 1841, 512)
    source_box = [400, 300, 900, 1200]
    model_box = g.to_model_box(source_box)
    back = g.to_source_box(model_box)
    # Exact up to the rounding of the enclosing box (less than one source pixel each side).
    assert all(abs(a - b) <= 1 for a, b in zip(back, source_box))
    # Rounding always encloses: the box never shrinks.
    assert back[0] <= 400 and back[1] <= 300 and back[2] >= 900 and back[3] >= 1200


def test_boxes_in_the_padding_are_clipped_to_the_image():
    g = ResizeGeometry.fit(1000, 500, 100)  # 50 columns of image, 25 columns of padding each side
    assert (g.pad_left, g.resized_cols) == (25, 50)
    assert g.to_source_box([0, 0, 100, 100]) == [0, 0, 500, 1000]
    assert g.to_source_box([0, 10, 20, 20]) == [0, 100, 0, 200]  # entirely left of the image: zero width
    assert g.to_source_box([30, 10, 40, 20]) == [50, 100, 150, 200]


def test_malformed_boxes_raise():
    g = ResizeGeometry.fit(100, 100, 10)
    with pytest.raises(ValueError):
        g.to_source_box([1, 2, 3])
    with pytest.raises(ValueError):
        g.to_source_box([5, 5, 1, 1])
