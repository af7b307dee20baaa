"""Execution-provider choice: TensorRT -> CUDA -> CPU, filtered by what onnxruntime has installed."""

from __future__ import annotations

import pytest

from libs.bundle.providers import PREFERRED_PROVIDERS, choose_providers
from libs.core.errors import BundleUnavailable

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def test_preference_order_is_trt_cuda_cpu():
    assert PREFERRED_PROVIDERS == (TRT, CUDA, CPU)


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ([CPU, CUDA, TRT], [TRT, CUDA, CPU]),  # order follows preference, not what onnxruntime lists
        ([CUDA, CPU], [CUDA, CPU]),  # GPU build without TensorRT
        (["AzureExecutionProvider", CPU], [CPU]),  # CPU wheel; unrelated providers are never picked
        ([TRT, CPU], [TRT, CPU]),
    ],
)
def test_default_choice_follows_what_is_installed(available, expected):
    assert choose_providers(available) == expected


def test_requested_providers_keep_their_order_and_drop_missing():
    assert choose_providers([CPU, CUDA], requested=[CPU, CUDA]) == [CPU, CUDA]
    assert choose_providers([CPU], requested=[TRT, CUDA, CPU]) == [CPU]


def test_requested_duplicates_are_removed():
    assert choose_providers([CPU], requested=[CPU, CPU]) == [CPU]


def test_nothing_installed_is_a_clear_error():
    with pytest.raises(BundleUnavailable, match="none of the execution providers .*CUDAExecutionProvider.* is installed"):
        choose_providers([CPU], requested=[CUDA])
    with pytest.raises(BundleUnavailable, match="available: none"):
        choose_providers([])
