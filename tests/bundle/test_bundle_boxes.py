"""Heatmap -> bounding box: largest activated region, in model-input pixel edges, x = column, y = row."""

from __future__ import annotations

import numpy as np
import pytest

from libs.bundle.boxes import MAX_AREA_FRACTION, box_area_fraction, box_statistics, heatmap_box


def test_flat_or_broken_maps_give_no_box():
    assert heatmap_box(np.zeros((8, 8)), 64) is None
    assert heatmap_box(np.full((8, 8), 3.0), 64) is None
    nan = np.zeros((8, 8))
    nan[0, 0] = np.nan
    assert heatmap_box(nan, 64) is None
    assert heatmap_box(np.zeros((8,)), 64) is None


def test_single_cell_maps_to_its_pixels():
    m = np.zeros((8, 8))
    m[2, 5] = 1.0  # row 2 (y), column 5 (x); each cell is 8x8 pixels of a 64 input
    x0, y0, x1, y1 = heatmap_box(m, 64)
    assert 5 * 8 - 8 <= x0 < x1 <= 6 * 8 + 8 and 2 * 8 - 8 <= y0 < y1 <= 3 * 8 + 8
    assert (x0 + x1) / 2 == pytest.approx(5.5 * 8, abs=1) and (y0 + y1) / 2 == pytest.approx(2.5 * 8, abs=1)


def test_block_edges_are_refined_between_cells():
    m = np.zeros((16, 16))
    m[4:8, 2:10] = 1.0  # cells of 4 px: rows 16..31, columns 8..39, edges [8, 16, 40, 32]
    x0, y0, x1, y1 = heatmap_box(m, 64)
    assert abs(x0 - 8) <= 2 and abs(x1 - 40) <= 2 and abs(y0 - 16) <= 2 and abs(y1 - 32) <= 2


def test_largest_region_wins_over_a_stronger_small_one():
    m = np.zeros((16, 16))
    m[1, 1] = 1.0  # strongest but one cell
    m[8:14, 8:14] = 0.9  # weaker, large
    x0, y0, x1, y1 = heatmap_box(m, 64)
    assert x0 >= 28 and y0 >= 28  # the small top-left peak is not in the box


def test_diagonal_cells_are_one_region():
    m = np.zeros((8, 8))
    m[2, 2] = m[3, 3] = m[4, 4] = 1.0
    m[7, 0] = m[7, 1] = 1.0  # two cells elsewhere: smaller than the 3-cell diagonal
    x0, y0, x1, y1 = heatmap_box(m, 64)
    assert x0 < 24 and x1 >= 32 and y1 < 48


def test_box_stays_inside_the_image():
    m = np.zeros((4, 4))
    m[0, 0] = m[3, 3] = 1.0
    m[0, 1] = m[1, 0] = 1.0
    for heatmap, size in ((m, 64), (np.rot90(m, 2), 50)):
        x0, y0, x1, y1 = heatmap_box(heatmap, size)
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size


def test_non_square_heatmap():
    m = np.zeros((4, 8))  # rows cover 16 px each, columns 8 px each, for a 64 input
    m[3, 7] = 1.0
    x0, y0, x1, y1 = heatmap_box(m, 64)
    assert x1 == 64 and y1 == 64 and x0 >= 48 and y0 >= 40


# ---------------------------------------------------------------- focal boxes only (manifest `boxes`)


def test_focal_activation_gives_a_box_under_the_policy():
    m = np.zeros((16, 16))
    m[4:8, 2:6] = 1.0  # 4x4 of 16x16 cells: about 6 % of the input
    box = heatmap_box(m, 64, max_area_fraction=MAX_AREA_FRACTION)
    assert box is not None
    assert 0.04 <= box_area_fraction(box, 64) <= 0.1


def test_diffuse_plateau_gives_no_box_under_the_policy():
    # A plateau over most of the lungs with a little noise: min-max normalisation still finds a
    # "region", one that covers most of the image and localises nothing.
    rng = np.random.default_rng(0)
    m = rng.random((16, 16)) * 0.1
    m[1:15, 1:15] += 1.0
    unlimited = heatmap_box(m, 64)
    assert unlimited is not None and box_area_fraction(unlimited, 64) > 0.6  # what was drawn before
    assert heatmap_box(m, 64, max_area_fraction=MAX_AREA_FRACTION) is None
    assert heatmap_box(m, 64, max_area_fraction=1.0) == unlimited


def test_area_limit_is_inclusive():
    m = np.zeros((16, 16))
    m[0:8, 0:8] = 1.0  # a quarter of the map
    box = heatmap_box(m, 64)
    fraction = box_area_fraction(box, 64)
    assert heatmap_box(m, 64, max_area_fraction=fraction) == box
    assert heatmap_box(m, 64, max_area_fraction=fraction - 1e-3) is None


def test_threshold_sets_how_much_of_the_range_belongs_to_the_region():
    m = np.zeros((16, 16))
    m[6:10, 6:10] = 1.0  # core
    m[2:14, 2:14] = np.maximum(m[2:14, 2:14], 0.4)  # weaker halo around it
    core = heatmap_box(m, 64, threshold=0.5)
    halo = heatmap_box(m, 64, threshold=0.3)
    assert box_area_fraction(core, 64) < 0.1 < box_area_fraction(halo, 64)


def test_box_area_fraction():
    assert box_area_fraction([0, 0, 64, 64], 64) == 1.0
    assert box_area_fraction([0, 0, 32, 16], 64) == pytest.approx(0.125)


def test_box_statistics_for_the_model_card():
    s = box_statistics([0.1, 0.2, 0.3, 0.5, 0.96, 1.0], limit=0.25)
    assert s["n"] == 6
    assert s["median"] == pytest.approx(0.4)
    assert s["p10"] < s["median"] < s["p90"]
    assert s["share_over_limit"] == pytest.approx(4 / 6)
    assert s["share_whole_image"] == pytest.approx(2 / 6)
    assert s["limit"] == 0.25
    empty = box_statistics([])
    assert empty["n"] == 0 and empty["median"] is None and empty["share_over_limit"] is None
