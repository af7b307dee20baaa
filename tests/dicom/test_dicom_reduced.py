"""JPEG 2000 decoded at a reduced resolution (libs.dicom.j2k_reduce), and intake's completeness check without a decode."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless, RLELossless

from dicom_helpers import make_dataset, phantom, to_bytes
from libs.core.errors import InputRejected
from libs.dicom import j2k_reduce, pixels, read_dataset
from libs.dicom.codestream import J2KLayout, j2k_layout
from libs.dicom.load import display_and_fit
from libs.dicom.pixels import check_pixel_data, decode_frame, stored_values


def _layout(rows: int, cols: int, levels: int = 5, yo: int = 0, xo: int = 0) -> J2KLayout:
    return J2KLayout(xsiz=cols + xo, ysiz=rows + yo, xosiz=xo, yosiz=yo, components=1, precision=15,
                     signed=False, levels=levels)


def _frame(ds) -> bytes:  # noqa: ANN001
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def _j2k(arr: np.ndarray, **attrs) -> object:
    ds = make_dataset(arr, **attrs)
    ds.compress(JPEG2000Lossless)
    return read_dataset(to_bytes(ds))


# ------------------------------------------------------------------------------ choosing the levels


def test_reduced_shape_rounds_up_like_openjpeg():
    layout = _layout(1955, 1841)
    assert layout.reduced_shape(0) == (1955, 1841)
    assert layout.reduced_shape(2) == (489, 461)  # 1841 / 4 = 460.25: Pillow's own `reduce` says 460
    assert layout.reduced_shape(3) == (245, 231)
    # With an image offset the reduced size is ceil(end / 2**r) - ceil(offset / 2**r) (ISO 15444-1 B.5).
    assert _layout(100, 100, yo=3, xo=5).reduced_shape(2) == (26 - 1, 27 - 2)


@pytest.mark.parametrize(
    ("rows", "cols", "levels", "side", "expected"),
    [
        (1955, 1841, 5, 224, 2),  # 461 >= 2 x 224; 231 is not
        (1955, 1841, 5, 512, 0),  # 921 < 1024: no reduction, the full decode
        (1955, 1841, 5, 100, 3),  # 231 >= 200
        (1955, 1841, 5, 10, 5),  # bounded by the code stream's decomposition levels
        (1955, 1841, 1, 10, 1),
        (1955, 1841, 0, 10, 0),
        (200, 4000, 5, 50, 1),  # the shorter side decides: 100 >= 100, 50 is not
        (224, 224, 5, 224, 0),
        (100, 100, 5, 224, 0),  # smaller than the model input: upscaled from the full decode
    ],
)
def test_levels_keep_the_shorter_side_at_twice_the_model_input(rows, cols, levels, side, expected):
    assert j2k_reduce.choose_levels(_layout(rows, cols, levels), side) == expected


def test_no_reduction_without_a_size_or_a_layout():
    assert j2k_reduce.choose_levels(_layout(1955, 1841), None) == 0
    assert j2k_reduce.choose_levels(_layout(1955, 1841), 0) == 0
    assert j2k_reduce.choose_levels(None, 224) == 0


def test_only_single_component_streams_whose_sign_matches_are_reduced():
    layout = _layout(1955, 1841)
    assert j2k_reduce.reducible(layout, pixel_representation=0)
    assert not j2k_reduce.reducible(layout, pixel_representation=1)
    assert not j2k_reduce.reducible(J2KLayout(100, 100, 0, 0, 3, 8, False, 5), pixel_representation=0)
    assert not j2k_reduce.reducible(J2KLayout(100, 100, 0, 0, 1, 20, False, 5), pixel_representation=0)
    assert not j2k_reduce.reducible(None, pixel_representation=0)


# ------------------------------------------------------------------------------ the code stream's levels


def test_layout_of_the_real_cr(data_dir):
    for name in ("RG1_J2KR", "RG1_J2KI"):
        layout = j2k_layout(_frame(read_dataset(data_dir / f"{name}.dcm")))
        assert layout == J2KLayout(1841, 1955, 0, 0, 1, 15, False, 5), name


def test_a_coc_marker_with_fewer_levels_bounds_the_reduction():
    frame = _frame(_j2k(phantom(120, 100)))
    layout = j2k_layout(frame)
    assert layout is not None and layout.levels >= 2
    siz_end = 4 + int.from_bytes(frame[4:6], "big")
    coc = b"\xff\x53\x00\x09" + bytes([0, 0, 1, 4, 4, 0, 1])  # component 0: 1 level
    assert j2k_layout(frame[:siz_end] + coc + frame[siz_end:]).levels == 1


@pytest.mark.parametrize("cut", [10, 30, 50])  # inside SIZ, inside SIZ, inside COD
def test_an_unwalkable_header_means_no_reduction_not_an_error(cut):
    frame = _frame(_j2k(phantom(120, 100)))
    assert j2k_layout(frame[:cut]) is None
    assert j2k_layout(b"\xff\xd8\xff\xe0") is None


# ------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize("name", ["RG1_J2KR", "RG1_J2KI"])
def test_pillow_decode_at_full_resolution_gives_pydicoms_stored_values(data_dir, name):
    ds = read_dataset(data_dir / f"{name}.dcm")
    frame = _frame(ds)
    ours = j2k_reduce.decode_reduced(frame, j2k_layout(frame), 0, bits_allocated=16)
    ref = stored_values(ds)
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_stored_values_are_recovered_for_signed_and_unsigned_samples(signed):
    arr = phantom(120, 100).astype(np.int32) - (2048 if signed else 0)
    ds = _j2k(arr.astype(np.int16 if signed else np.uint16))
    frame = _frame(ds)
    layout = j2k_layout(frame)
    assert layout.signed is signed and j2k_reduce.reducible(layout, pixel_representation=int(signed))
    np.testing.assert_array_equal(j2k_reduce.decode_reduced(frame, layout, 0, bits_allocated=16), stored_values(ds))
    low = j2k_reduce.decode_reduced(frame, layout, 1, bits_allocated=16)
    assert low.shape == (60, 50) and low.dtype == stored_values(ds).dtype
    # The LL band is a smoothed subsample: close to the full image's values at the even positions.
    assert np.abs(low.astype(np.int32) - arr[::2, ::2]).mean() < 0.02 * 4095


def test_decode_frame_reduces_only_when_asked_and_worth_it(data_dir):
    ds = read_dataset(data_dir / "RG1_J2KI.dcm")
    arr, levels = decode_frame(ds, min_side=224)
    assert (levels, arr.shape) == (2, (489, 461))  # if this fails, the reduced path is no longer taken
    assert decode_frame(ds, min_side=512)[1] == 0
    full, levels = decode_frame(ds)
    assert (levels, full.shape) == (0, (1955, 1841))


def test_other_syntaxes_are_decoded_in_full(data_dir):
    arr, levels = decode_frame(read_dataset(data_dir / "RG1_UNCR.dcm"), min_side=64)
    assert (levels, arr.shape) == (0, (1955, 1841))


def test_a_failing_reduced_decode_falls_back_to_the_full_decode(data_dir, monkeypatch, caplog):
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("broken data stream when reading image file")

    monkeypatch.setattr(j2k_reduce, "_pillow_decode", broken)
    ds = read_dataset(data_dir / "RG1_J2KI.dcm")
    arr, levels = decode_frame(ds, min_side=224)
    assert (levels, arr.shape) == (0, (1955, 1841))
    assert "decoding at full resolution" in caplog.text


@pytest.mark.parametrize("name", ["RG1_J2KR", "RG1_J2KI"])
def test_reduced_model_input_is_close_to_the_full_resolution_one(data_dir, name):
    ds = read_dataset(data_dir / f"{name}.dcm")
    full = display_and_fit(ds, 224, reduced=False)
    reduced = display_and_fit(ds, 224)
    assert reduced.geometry == full.geometry
    diff = np.abs(reduced.array - full.array)
    assert float(diff.mean()) < 0.002
    assert float(np.percentile(diff, 99)) < 0.01
    assert float(diff.max()) < 0.05


def test_boxes_map_to_full_resolution_source_pixels(data_dir):
    ds = read_dataset(data_dir / "RG1_J2KR.dcm")
    g = display_and_fit(ds, 224).geometry
    assert (g.source_rows, g.source_cols, g.size) == (1955, 1841, 224)
    assert g.to_source_box([g.pad_left, 0, g.pad_left + g.resized_cols, 224]) == [0, 0, 1841, 1955]


def test_a_feature_lands_where_the_full_decode_puts_it():
    # A bright square at a known source position: with 1 or 2 levels discarded, it must appear at
    # the same model-input position as from the full decode, and its box must map back onto it.
    arr = np.full((800, 720), 400, dtype=np.uint16)
    arr[300:340, 500:540] = 3500
    ds = _j2k(arr, WindowCenter=2048, WindowWidth=4096)
    for size, levels in ((64, 2), (160, 1)):
        assert decode_frame(ds, min_side=size)[1] == levels
        full, reduced = display_and_fit(ds, size, reduced=False), display_and_fit(ds, size)

        def centroid(img: np.ndarray) -> np.ndarray:
            w = np.clip(img - 0.2, 0, None)
            ys, xs = np.indices(img.shape)
            return np.array([(w * ys).sum(), (w * xs).sum()]) / w.sum()

        np.testing.assert_allclose(centroid(reduced.array), centroid(full.array), atol=0.1)
        ys, xs = np.nonzero(reduced.array > 0.5)
        box = reduced.geometry.to_source_box([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert abs(box[0] - 500) <= 2 / reduced.geometry.scale and abs(box[1] - 300) <= 2 / reduced.geometry.scale
        assert abs(box[2] - 540) <= 2 / reduced.geometry.scale and abs(box[3] - 340) <= 2 / reduced.geometry.scale


def test_monochrome1_is_inverted_on_the_reduced_path_too(data_dir):
    ds = read_dataset(data_dir / "RG1_J2KI.dcm")  # MONOCHROME1
    img = display_and_fit(ds, 224).array
    g = display_and_fit(ds, 224).geometry
    body = img[:, g.pad_left : g.pad_left + g.resized_cols]
    band = slice(int(224 * 0.25), int(224 * 0.55))
    cols = body.shape[1]
    lung = body[band, int(cols * 0.20) : int(cols * 0.35)].mean()
    mediastinum = body[band, int(cols * 0.45) : int(cols * 0.55)].mean()
    assert lung < mediastinum - 0.05


# ------------------------------------------------------------------------------ intake: complete, not decoded


def _no_decoding(monkeypatch):  # noqa: ANN001, ANN202
    def must_not_run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("check_pixel_data decoded the pixel data")

    monkeypatch.setattr(pixels, "_decode_first_frame", must_not_run)
    monkeypatch.setattr(j2k_reduce, "_pillow_decode", must_not_run)


def test_check_pixel_data_accepts_complete_files_without_decoding(data_dir, monkeypatch):
    _no_decoding(monkeypatch)
    for name in ("RG1_UNCR", "RG1_J2KR", "RG1_J2KI"):
        check_pixel_data(read_dataset(data_dir / f"{name}.dcm"))
    ds = make_dataset(phantom(120, 100))
    ds.compress(RLELossless)
    check_pixel_data(read_dataset(to_bytes(ds)))


def _reason(ds) -> str:  # noqa: ANN001
    with pytest.raises(InputRejected) as info:
        check_pixel_data(ds)
    return info.value.reason


def test_check_pixel_data_rejects_a_cut_code_stream(monkeypatch):
    _no_decoding(monkeypatch)
    ds = make_dataset(phantom(120, 100))
    ds.compress(JPEG2000Lossless)
    frame = _frame(ds)
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    assert "has no end-of-image marker" in _reason(read_dataset(to_bytes(ds)))


def test_check_pixel_data_rejects_a_code_stream_whose_header_disagrees(monkeypatch):
    _no_decoding(monkeypatch)
    ds = _j2k(phantom(120, 100))
    ds.Rows = 121
    assert _reason(ds) == "compressed frame is 120x100 pixels but the header says 121x100"


def test_check_pixel_data_rejects_a_missing_or_empty_fragment(monkeypatch):
    _no_decoding(monkeypatch)
    ds = _j2k(phantom(120, 100))
    item = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"  # an item of length 0
    ds.PixelData = item + item  # an empty basic offset table, then an empty fragment
    assert _reason(ds) == "pixel data is truncated: the compressed frame is empty"
    ds.PixelData = item  # the basic offset table and no fragment
    assert _reason(ds) == "pixel data is truncated: the compressed frame is empty"
    ds.PixelData = b"\x00\x00\x00\x00"  # not even an item
    assert _reason(ds).startswith("pixel data cannot be decoded: no readable compressed frame")


def test_check_pixel_data_rejects_wrong_uncompressed_length(monkeypatch):
    _no_decoding(monkeypatch)
    ds = make_dataset(phantom(120, 100))
    ds.PixelData = ds.PixelData[:-200]
    assert _reason(ds) == f"pixel data is truncated: expected {120 * 100 * 2} bytes, found {120 * 100 * 2 - 200}"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda f: b"\x03" + f[1:], "the RLE frame has 3 segment(s), 2 expected"),
        (lambda f: f[:4] + (60).to_bytes(4, "little") + f[8:], "segment offsets are out of order or past its end"),
        (lambda f: f[:8] + (1 << 30).to_bytes(4, "little") + f[12:], "segment offsets are out of order or past its end"),
        (lambda f: f[:64], "has no data after its header"),
    ],
    ids=["count", "first-offset", "offset-past-end", "header-only"],
)
def test_check_pixel_data_rejects_an_inconsistent_rle_header(monkeypatch, edit, reason):
    _no_decoding(monkeypatch)
    ds = make_dataset(phantom(120, 100))
    ds.compress(RLELossless)
    ds.PixelData = encapsulate([edit(_frame(ds))])
    assert reason in _reason(read_dataset(to_bytes(ds)))


def test_corrupt_coded_data_passes_the_check_and_fails_the_decode_clearly():
    ds = make_dataset(phantom(120, 100))
    ds.compress(JPEG2000Lossless)
    frame = bytearray(_frame(ds))
    frame[200:-2] = b"\xff" * (len(frame) - 202)  # header and end marker intact, coded data destroyed
    ds.PixelData = encapsulate([bytes(frame)])
    parsed = read_dataset(to_bytes(ds))
    check_pixel_data(parsed)
    for size in (20, 224):  # the reduced decode (falls back) and the full one
        with pytest.raises(InputRejected, match="^pixel data cannot be decoded: "):
            display_and_fit(parsed, size)


def test_preprocess_refuses_a_source_shape_that_the_image_cannot_be():
    from libs.dicom import preprocess

    img = np.zeros((245, 231), dtype=np.float32)
    with pytest.raises(ValueError):
        preprocess(img, 224, source_shape=(1955, 1841))  # reduced, but no levels given
    with pytest.raises(ValueError):
        preprocess(img, 224, source_shape=(1955, 1841), discarded_levels=1)  # 1955 / 2 does not fit in 245 rows
    pre = preprocess(img + 0.5, 224, source_shape=(1955, 1841), discarded_levels=3)
    assert pre.geometry == preprocess(np.zeros((1955, 1841), dtype=np.float32), 224).geometry
