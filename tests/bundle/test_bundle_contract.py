"""The runner refuses encoders that do not fit the I/O contract, saying what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from libs.bundle.runner import BundleRunner
from libs.core.errors import BundleUnavailable

from bundle_helpers import SIZE, bundle_with_encoder, make_encoder


def test_minimal_encoder_without_optional_outputs_is_accepted(tmp_path: Path):
    runner = BundleRunner(bundle_with_encoder(tmp_path, make_encoder()))
    assert not runner.has_heatmaps and not runner.has_embedding
    assert len(runner.predict(np.zeros((2, SIZE, SIZE), np.float32))) == 2


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"input_name": "x"}, "exactly one input named 'image', got 'x'"),
        ({"extra_input": True}, "exactly one input named 'image', got 'image', 'mask'"),
        ({"input_shape": [1, 1, SIZE, SIZE]}, "fixed batch dimension (1); it must be dynamic"),
        ({"input_shape": ["N", 3, SIZE, SIZE]}, "must be float32 [N, 1, 64, 64], got shape ['N', 3, 64, 64]"),
        ({"input_shape": ["N", 1, 32, 32]}, "(dim 2 should be 64)"),
        ({"input_shape": ["N", SIZE, SIZE]}, "must be float32 [N, 1, 64, 64], got shape ['N', 64, 64]"),
        ({"input_type": TensorProto.DOUBLE}, "input 'image' must be float32, got tensor(double)"),
        ({"prob_name": "logits_out"}, "no output named 'probabilities' (outputs: 'logits_out')"),
        ({"n_labels": 13}, "output 'probabilities' must be float32 [N, 14]"),
        ({"heatmap_channels": 13}, "output 'heatmaps' must be float32 [N, 14, h, w]"),
        ({"hardcode_batch": True}, "encoder warm-up failed"),
        ({"sigmoid": False}, "outside [0, 1]; outputs must be calibrated probabilities with sigmoid applied"),
    ],
)
def test_contract_violations_are_refused(tmp_path: Path, knobs: dict, reason: str):
    bundle = bundle_with_encoder(tmp_path, make_encoder(**knobs))
    with pytest.raises(BundleUnavailable) as info:
        BundleRunner(bundle)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_heatmaps_with_14_channels_are_accepted(tmp_path: Path):
    runner = BundleRunner(bundle_with_encoder(tmp_path, make_encoder(heatmap_channels=14)))
    assert runner.has_heatmaps
    # 1x1 flat heatmaps carry no location: positive labels get no box rather than a made-up one.
    assert all(p.bounding_box is None for p in runner.predict(np.ones((1, SIZE, SIZE), np.float32))[0].predictions)


def test_symbolic_spatial_dims_are_accepted(tmp_path: Path):
    BundleRunner(bundle_with_encoder(tmp_path, make_encoder(input_shape=["N", 1, "H", "W"])))


def test_file_that_is_not_onnx(tmp_path: Path):
    with pytest.raises(BundleUnavailable, match="cannot load encoder .*encoder.onnx"):
        BundleRunner(bundle_with_encoder(tmp_path, b"not an onnx model"))
