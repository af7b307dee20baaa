"""How a source image was fitted into the square model input, and the way back for boxes.

Coordinates are pixel *edges*: pixel i covers [i, i + 1), so a box [x0, y0, x1, y1] with
x1 = columns reaches the right border. x is the column axis, y the row axis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


@dataclass(frozen=True)
class ResizeGeometry:
    source_rows: int
    source_cols: int
    scale: float  # model pixels per source pixel (size / long side)
    pad_top: int
    pad_left: int
    size: int

    @classmethod
    def fit(cls, source_rows: int, source_cols: int, size: int) -> ResizeGeometry:
        """Long side -> `size`, aspect kept, the short side centred (extra padding pixel at the bottom/right)."""
        if source_rows < 1 or source_cols < 1 or size < 1:
            raise ValueError(f"cannot fit a {source_rows}x{source_cols} image into {size}x{size}")
        scale = size / max(source_rows, source_cols)
        geometry = cls(source_rows, source_cols, scale, 0, 0, size)
        return cls(
            source_rows,
            source_cols,
            scale,
            pad_top=(size - geometry.resized_rows) // 2,
            pad_left=(size - geometry.resized_cols) // 2,
            size=size,
        )

    @property
    def resized_rows(self) -> int:
        return min(self.size, max(1, _round_half_up(self.source_rows * self.scale)))

    @property
    def resized_cols(self) -> int:
        return min(self.size, max(1, _round_half_up(self.source_cols * self.scale)))

    def to_source_box(self, box: Sequence[float]) -> list[int]:
        """[x0, y0, x1, y1] in model-input pixels -> the enclosing box in source pixels, clipped to the image.

        The per-axis ratio of source to resized size is used rather than 1/scale, so that the
        resized image's edges map exactly onto the source image's edges despite rounding.
        """
        x0, y0, x1, y1 = _box(box)
        sx = self.source_cols / self.resized_cols
        sy = self.source_rows / self.resized_rows
        return [
            _clip(math.floor((x0 - self.pad_left) * sx + 1e-6), self.source_cols),
            _clip(math.floor((y0 - self.pad_top) * sy + 1e-6), self.source_rows),
            _clip(math.ceil((x1 - self.pad_left) * sx - 1e-6), self.source_cols),
            _clip(math.ceil((y1 - self.pad_top) * sy - 1e-6), self.source_rows),
        ]

    def to_model_box(self, box: Sequence[float]) -> list[float]:
        """[x0, y0, x1, y1] in source pixels -> model-input pixels (the inverse of to_source_box, unrounded)."""
        x0, y0, x1, y1 = _box(box)
        fx = self.resized_cols / self.source_cols
        fy = self.resized_rows / self.source_rows
        return [x0 * fx + self.pad_left, y0 * fy + self.pad_top, x1 * fx + self.pad_left, y1 * fy + self.pad_top]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResizeGeometry:
        try:
            geometry = cls(
                source_rows=int(data["source_rows"]),
                source_cols=int(data["source_cols"]),
                scale=float(data["scale"]),
                pad_top=int(data["pad_top"]),
                pad_left=int(data["pad_left"]),
                size=int(data["size"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a ResizeGeometry: {exc!r}") from None
        if min(geometry.source_rows, geometry.source_cols, geometry.size) < 1 or not geometry.scale > 0:
            raise ValueError("not a ResizeGeometry: sizes and scale must be positive")
        return geometry


def _box(box: Sequence[float]) -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise ValueError(f"a box is [x0, y0, x1, y1], got {len(box)} values")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise ValueError("a box needs x0 <= x1 and y0 <= y1")
    return x0, y0, x1, y1


def _clip(v: int, upper: int) -> int:
    return max(0, min(upper, v))
