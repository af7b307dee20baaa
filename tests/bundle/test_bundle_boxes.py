"""Heatmap -> bounding box: largest activated region, in model-input pixel edges, x = column, y = row."""

from __future__ import annotations

import numpy as np
import pytest

from libs.bundle.boxes import heatmap_box


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
