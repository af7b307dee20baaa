"""The real chest CR from pydicom-data (RG1: PA, 1955x1841, MONOCHROME1, 15-bit) in three encodings, and real files to refuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libs.core.errors import InputRejected
from libs.dicom import (
    PreprocessedImage,
    ResizeGeometry,
    decode_pixels,
    instance_from_dataset,
    load_for_model,
    read_dataset,
    validate_dataset,
    view_of,
)
from libs.domain.study import View


@pytest.fixture(scope="module")
def decoded(data_dir: Path) -> dict[str, np.ndarray]:
    """Each encoding decoded once for the whole module (J2K takes ~0.4 s)."""
    return {name: decode_pixels(read_dataset(data_dir / f"RG1_{name}.dcm")) for name in ("UNCR", "J2KR", "J2KI")}


def test_uncompressed_chest_decodes_to_display_range(decoded):
    img = decoded["UNCR"]
    assert img.dtype == np.float32 and img.shape == (1955, 1841)
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert img.max() - img.min() > 0.5  # a real spread of grey levels, not a flat image


def test_lossless_jpeg2000_gives_the_same_pixels(decoded):
    np.testing.assert_array_equal(decoded["J2KR"], decoded["UNCR"])


def test_lossy_jpeg2000_is_close(decoded):
    diff = np.abs(decoded["J2KI"] - decoded["UNCR"])
    assert float(diff.mean()) < 0.005
    assert float(np.percentile(diff, 99.9)) < 0.05


def test_monochrome1_is_inverted_so_lungs_are_darker_than_the_mediastinum(decoded):
    img = decoded["UNCR"]
    rows, cols = img.shape
    band = slice(int(rows * 0.25), int(rows * 0.55))  # mid-chest, above the diaphragm
    right_lung = img[band, int(cols * 0.20) : int(cols * 0.35)].mean()
    left_lung = img[band, int(cols * 0.65) : int(cols * 0.80)].mean()
    mediastinum = img[band, int(cols * 0.45) : int(cols * 0.55)].mean()
    # Without the MONOCHROME1 inversion air would be bright and this would flip.
    assert right_lung < mediastinum - 0.05
    assert left_lung < mediastinum - 0.05


def test_header_gives_a_chest_pa_instance(data_dir):
    ds = read_dataset(data_dir / "RG1_J2KI.dcm")
    validate_dataset(ds)
    assert view_of(ds) is View.PA
    instance = instance_from_dataset(ds, path=data_dir / "RG1_J2KI.dcm")
    assert instance.modality == "CR"
    assert (instance.rows, instance.columns) == (1955, 1841)
    assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.4.91"
    assert instance.path == data_dir / "RG1_J2KI.dcm"
    assert instance.study_uid and instance.series_uid and instance.sop_instance_uid


def test_load_for_model_fits_the_image_and_maps_boxes_back(data_dir):
    instance, pre = load_for_model(data_dir / "RG1_UNCR.dcm", size=512)
    assert isinstance(pre, PreprocessedImage) and instance.view is View.PA
    assert pre.array.shape == (512, 512) and pre.array.dtype == np.float32
    g = pre.geometry
    assert (g.source_rows, g.source_cols, g.size) == (1955, 1841, 512)
    assert (g.resized_rows, g.resized_cols) == (512, 482) and (g.pad_top, g.pad_left) == (0, 15)
    # The padding columns are zero, the image is not.
    assert not pre.array[:, :15].any() and not pre.array[:, 15 + 482 :].any()
    assert pre.array[:, 15 : 15 + 482].mean() > 0.2
    # The whole resized area maps back to the whole source image.
    assert g.to_source_box([15, 0, 15 + 482, 512]) == [0, 0, 1841, 1955]
    assert ResizeGeometry.from_dict(g.to_dict()) == g


def test_extremity_radiograph_is_rejected(data_dir):
    ds = read_dataset(data_dir / "RG3_UNCR.dcm")
    with pytest.raises(InputRejected, match="body part 'EXTREMITY' is not the chest"):
        validate_dataset(ds)


def test_mr_is_rejected_naming_the_modality(data_dir):
    with pytest.raises(InputRejected, match="modality 'MR' is not a projection radiograph"):
        load_for_model(data_dir / "MR2_UNCR.dcm")


def test_rgb_secondary_capture_is_rejected_as_not_grayscale(data_dir):
    ds = read_dataset(data_dir / "SC_rgb.dcm")
    # It is also Modality OT; the grayscale rule is checked on its own here.
    ds.Modality = "DX"
    with pytest.raises(InputRejected, match="not a single-channel grayscale image"):
        validate_dataset(ds)


def test_real_multiframe_is_rejected(data_dir):
    ds = read_dataset(data_dir / "OBXXXX1A_2frame.dcm")  # a 2-frame ultrasound, enough for the frame rule
    ds.Modality = "DX"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SamplesPerPixel = 1
    with pytest.raises(InputRejected, match=r"multi-frame image \(2 frames\)"):
        validate_dataset(ds)


def test_real_file_cut_inside_compressed_pixel_data_is_reported_as_truncated(data_dir):
    with pytest.raises(InputRejected, match="pixel data is truncated"):
        read_dataset(data_dir / "emri_small_jpeg_2k_lossless_too_short.dcm")


def test_big_endian_file_decodes_like_little_endian(data_dir):
    # An MR pair (validation would reject it), but decode_pixels itself is modality-agnostic.
    big = read_dataset(data_dir / "emri_small_big_endian.dcm")
    little = read_dataset(data_dir / "emri_small.dcm")
    for ds in (big, little):
        ds.NumberOfFrames = 1  # a 10-frame file; declaring one frame makes the decoder read the first
    np.testing.assert_array_equal(decode_pixels(big), decode_pixels(little))
