"""The encoder's ONNX input/output contract (docs/bundle.md), checked against a loaded model.

Checking names, dtypes and the fixed dimensions at load time turns an export mistake into a
precise BundleUnavailable reason instead of a wrong report or a cryptic onnxruntime error later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from libs.core.errors import BundleUnavailable
from libs.domain.labels import CHEXPERT_LABELS

INPUT_IMAGE = "image"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_HEATMAPS = "heatmaps"
OUTPUT_EMBEDDING = "embedding"

N_LABELS = len(CHEXPERT_LABELS)
_FLOAT32 = "tensor(float)"


@dataclass(frozen=True)
class EncoderIO:
    """What the checked encoder provides beyond the required `probabilities`."""

    has_heatmaps: bool
    has_embedding: bool

    @property
    def output_names(self) -> list[str]:
        names = [OUTPUT_PROBABILITIES]
        if self.has_heatmaps:
            names.append(OUTPUT_HEATMAPS)
        if self.has_embedding:
            names.append(OUTPUT_EMBEDDING)
        return names


def _fixed(dim: Any) -> int | None:
    """A dimension's fixed size, or None when it is symbolic/unknown (onnxruntime gives str or None)."""
    return dim if isinstance(dim, int) and dim >= 0 else None


def _check_tensor(kind: str, arg: Any, rank: int, fixed: dict[int, int], layout: str) -> None:
    if arg.type != _FLOAT32:
        raise BundleUnavailable(f"encoder {kind} {arg.name!r} must be float32, got {arg.type}")
    shape = arg.shape
    # An empty/absent shape means the exporter recorded no shape; the runtime check covers it.
    if not shape:
        return
    if len(shape) != rank:
        raise BundleUnavailable(f"encoder {kind} {arg.name!r} must be {layout}, got shape {list(shape)}")
    for axis, want in fixed.items():
        got = _fixed(shape[axis])
        if got is not None and got != want:
            raise BundleUnavailable(
                f"encoder {kind} {arg.name!r} must be {layout}, got shape {list(shape)} (dim {axis} should be {want})"
            )


def check_encoder_io(inputs: Sequence[Any], outputs: Sequence[Any], image_size: int) -> EncoderIO:
    """Validate onnxruntime NodeArgs (session.get_inputs()/get_outputs()) against the contract."""
    layout = f"float32 [N, 1, {image_size}, {image_size}]"
    if len(inputs) != 1 or inputs[0].name != INPUT_IMAGE:
        got = ", ".join(repr(i.name) for i in inputs) or "none"
        raise BundleUnavailable(f"encoder must have exactly one input named {INPUT_IMAGE!r}, got {got}")
    image = inputs[0]
    _check_tensor("input", image, 4, {1: 1, 2: image_size, 3: image_size}, layout)
    if image.shape and _fixed(image.shape[0]) is not None:
        raise BundleUnavailable(
            f"encoder input {INPUT_IMAGE!r} has a fixed batch dimension ({image.shape[0]}); it must be dynamic"
        )

    by_name = {o.name: o for o in outputs}
    if OUTPUT_PROBABILITIES not in by_name:
        got = ", ".join(repr(n) for n in by_name) or "none"
        raise BundleUnavailable(f"encoder has no output named {OUTPUT_PROBABILITIES!r} (outputs: {got})")
    _check_tensor("output", by_name[OUTPUT_PROBABILITIES], 2, {1: N_LABELS}, f"float32 [N, {N_LABELS}]")
    if OUTPUT_HEATMAPS in by_name:
        _check_tensor("output", by_name[OUTPUT_HEATMAPS], 4, {1: N_LABELS}, f"float32 [N, {N_LABELS}, h, w]")
    if OUTPUT_EMBEDDING in by_name:
        _check_tensor("output", by_name[OUTPUT_EMBEDDING], 2, {}, "float32 [N, D]")
    return EncoderIO(has_heatmaps=OUTPUT_HEATMAPS in by_name, has_embedding=OUTPUT_EMBEDDING in by_name)


def check_encoder_outputs(result: dict[str, np.ndarray], n: int, assessed: Sequence[int]) -> None:
    """Validate the arrays actually returned for a batch of n images (shapes the graph did not declare).

    `assessed` are the label indices whose probabilities are used; the others may hold anything.
    """
    probs = result.get(OUTPUT_PROBABILITIES)
    if probs is not None:
        _check_probabilities(probs, n, list(assessed))
    heat = result.get(OUTPUT_HEATMAPS)
    if heat is not None and (heat.ndim != 4 or heat.shape[:2] != (n, N_LABELS) or min(heat.shape[2:]) < 1):
        raise BundleUnavailable(
            f"encoder returned {OUTPUT_HEATMAPS!r} {list(heat.shape)}, expected [{n}, {N_LABELS}, h, w]"
        )
    emb = result.get(OUTPUT_EMBEDDING)
    if emb is not None and (emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] < 1):
        raise BundleUnavailable(f"encoder returned {OUTPUT_EMBEDDING!r} {list(emb.shape)}, expected [{n}, D]")


def _check_probabilities(probs: np.ndarray, n: int, assessed: list[int]) -> None:
    if probs.dtype != np.float32 or probs.shape != (n, N_LABELS):
        raise BundleUnavailable(
            f"encoder returned {OUTPUT_PROBABILITIES!r} {probs.dtype} {list(probs.shape)} for {n} image(s), "
            f"expected float32 [{n}, {N_LABELS}] (is the batch dimension really dynamic?)"
        )
    used = probs[:, assessed]
    if not used.size:
        return
    if not np.all(np.isfinite(used)):
        raise BundleUnavailable(f"encoder returned NaN or infinite {OUTPUT_PROBABILITIES!r} for an assessed label")
    # Tolerate float rounding just outside [0, 1]; anything more means sigmoid was not applied.
    if used.min() < -1e-6 or used.max() > 1 + 1e-6:
        raise BundleUnavailable(
            f"encoder returned {OUTPUT_PROBABILITIES!r} in [{used.min():.4g}, {used.max():.4g}], outside [0, 1]; "
            "outputs must be calibrated probabilities with sigmoid applied"
        )
