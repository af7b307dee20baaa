"""Train/serve parity: a training image and the same image served by the platform reach the encoder
as the same numbers.

Bundle 1.2.1 was trained on PNG / 255 and served through the DICOM display pipeline's estimated window;
its validation sensitivity at the shipped threshold fell from 0.948 to 0.882 on the deployed path. Now
training wraps each image as a DX instance and reads it with ingestion's own functions, and the bundle's
per-image percentile stretch makes the input independent of the linear window a converter chose.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import KERMANY_ROOT

from libs.bundle.normalize import normalize_images, stretch_images
from libs.dicom import load_for_model
from libs.dicom.wrap import read_grayscale, write_wrapped
from libs.model.images import load_images_cached, normalize_torch, stretch_torch, to_unit

NORM = {"mean": 0.48, "std": 0.24, "stretch": {"low": 1.0, "high": 99.0}}


def _images(n: int = 6) -> list[str]:
    files = sorted((KERMANY_ROOT / "images").glob("*.png"))
    if not files:
        pytest.fail(f"no Kermany images under {KERMANY_ROOT}")
    step = max(1, len(files) // n)
    return [str(p) for p in files[::step][:n]]


def _training_input(paths: list[str], tmp_path) -> np.ndarray:
    """What the trainer feeds the encoder (libs.model.train.Trainer._image_batch, no augmentation)."""
    arr = load_images_cached(paths, 224, tmp_path / "cache", progress=False)
    x = torch.from_numpy(to_unit(arr))[:, None]
    return normalize_torch(x, NORM).numpy()


def _served_input(paths: list[str], tmp_path, folder: str = "dicom", **wrap) -> np.ndarray:
    """What the runner feeds the encoder for the same files pushed as DICOM (ingest's load_for_model)."""
    arrays = []
    for i, path in enumerate(paths):
        dcm = write_wrapped(path, tmp_path / folder / f"{i}.dcm", **wrap)
        _, pre = load_for_model(dcm, size=224)
        arrays.append(pre.array)
    return normalize_images(np.stack(arrays), NORM)[:, None]


def test_training_and_serving_feed_the_encoder_the_same_numbers(tmp_path) -> None:
    paths = _images()
    train, served = _training_input(paths, tmp_path), _served_input(paths, tmp_path)
    assert train.shape == served.shape == (len(paths), 1, 224, 224)
    # The cache keeps display values in 16 bits: the only difference is that rounding.
    assert np.abs(train - served).max() < 1e-3


def test_the_input_does_not_depend_on_the_window_a_converter_wrote(tmp_path) -> None:
    paths = _images(3)
    no_window = _served_input(paths, tmp_path)
    full_range = _served_input(paths, tmp_path, "windowed", window=(127.5, 256.0))
    assert np.abs(no_window - full_range).max() < 1e-3
    # ... and equals the plain PNG / 255 reading that bundle 1.2.1 was trained on, once stretched.
    png = np.stack([read_grayscale(p).astype(np.float32) / 255.0 for p in paths])
    assert np.abs(normalize_images(png, NORM)[:, None] - no_window).max() < 1e-3
    # Without the stretch the two readings differ: the skew bundle 1.2.1 was served with.
    plain = {"mean": 0.48, "std": 0.24}
    raw_served = np.stack([load_for_model(tmp_path / "dicom" / f"{i}.dcm", size=224)[1].array for i in range(3)])
    assert np.abs(normalize_images(png, plain) - normalize_images(raw_served, plain)).max() > 0.05


def test_numpy_and_torch_stretch_agree() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 32, 32), dtype=np.float32) ** 2
    x[1] = 0.5  # a flat image is left as it is
    a = stretch_images(x, 1.0, 99.0)
    b = stretch_torch(torch.from_numpy(x), 1.0, 99.0).numpy()
    assert np.abs(a - b).max() < 1e-5
    assert np.all(a[1] == 0.5)
    assert a[0].min() == 0.0 and a[0].max() == 1.0
