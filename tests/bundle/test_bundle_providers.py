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


def test_tensorrt_gets_engine_and_timing_caches_and_the_bundles_calibration_table(tmp_path) -> None:
    from libs.bundle.providers import CALIBRATION_TABLE, provider_options

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / CALIBRATION_TABLE).write_bytes(b"table")
    opts = dict(provider_options([TRT, CUDA, CPU], tmp_path / "cache", bundle, device_id=1))
    trt = opts[TRT]
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_timing_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "cache" / "tensorrt")
    assert trt["trt_int8_enable"] == "True" and trt["trt_fp16_enable"] == "True" and trt["device_id"] == "1"
    assert trt["trt_int8_calibration_table_name"] == CALIBRATION_TABLE
    assert (tmp_path / "cache" / "tensorrt" / CALIBRATION_TABLE).read_bytes() == b"table"
    assert opts[CUDA] == {"device_id": "1"} and opts[CPU] == {}
    # A QDQ bundle (no table) gets no table; no cache folder, no cache options.
    plain = dict(provider_options([TRT], None, tmp_path / "nowhere"))[TRT]
    assert "trt_engine_cache_path" not in plain and "trt_int8_calibration_table_name" not in plain


def test_a_gpu_provider_that_cannot_start_falls_back_to_the_cpu(tmp_path, monkeypatch, caplog) -> None:
    import onnxruntime as ort

    from libs.bundle import providers

    made = []

    class FakeSession:
        def __init__(self, path, sess_options=None, providers=None):  # noqa: ANN001
            names = [p[0] if isinstance(p, tuple) else p for p in providers]
            made.append(names)
            if names[0] == TRT:
                raise RuntimeError("libnvinfer.so.10: cannot open shared object file")
            if names[0] == CUDA:
                raise RuntimeError("libcudnn.so.9: cannot open shared object file\nmore detail")

    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    with caplog.at_level("ERROR"):
        providers.create_session(tmp_path / "m.onnx", [TRT, CUDA, CPU])
    assert made == [[TRT, CUDA, CPU], [CUDA, CPU], [CPU]]
    assert "TensorrtExecutionProvider failed to start" in caplog.text and "libnvinfer.so.10" in caplog.text
    assert "CUDAExecutionProvider failed to start" in caplog.text and "more detail" not in caplog.text
    # CPU alone failing is a real error, not something to retry.
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bad graph")))
    with pytest.raises(RuntimeError, match="bad graph"):
        providers.create_session(tmp_path / "m.onnx", [CPU])


def test_configured_providers_are_used_and_a_missing_one_is_a_clear_error(random_bundle, tmp_path) -> None:
    from libs.core.config import Settings
    from libs.pipeline.context import PipelineContext

    def ctx(providers: str) -> PipelineContext:
        return PipelineContext.from_settings(Settings(data_dir=tmp_path / providers, bundle_path=random_bundle,
                                                      image_size=64, execution_providers=providers))

    assert ctx("CPUExecutionProvider").runner.providers == [CPU]
    with pytest.raises(BundleUnavailable, match="none of the execution providers TensorrtExecutionProvider is installed"):
        ctx("TensorrtExecutionProvider").runner  # noqa: B018
