"""The inference benchmark's FP32 twin: found in the bundle or in the export folder, all or nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.bench_inference import fp32_twin
from libs.bundle.runner import BundleRunner
from libs.bundle.testing import build_random_bundle


def test_no_twin_means_not_measured(tmp_path: Path) -> None:
    bundle = build_random_bundle(tmp_path / "b")
    assert fp32_twin(bundle, tmp_path / "work", tmp_path / "nowhere") is None


def test_twin_from_the_export_folder_is_used_and_runs(tmp_path: Path) -> None:
    bundle = build_random_bundle(tmp_path / "b", seed=0)
    other = build_random_bundle(tmp_path / "other", seed=1)  # stands in for the FP32 export
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy2(other / "encoder.onnx", export / "encoder.fp32.onnx")
    (tmp_path / "work").mkdir()
    twin = fp32_twin(bundle, tmp_path / "work", export)
    assert twin is not None
    manifest = json.loads((twin / "manifest.json").read_text())
    assert manifest["files"]["encoder"] == "encoder.fp32.onnx"
    assert (twin / "encoder.fp32.onnx").read_bytes() == (other / "encoder.onnx").read_bytes()
    assert json.loads((bundle / "manifest.json").read_text())["files"]["encoder"] == "encoder.onnx"  # untouched
    assert BundleRunner(twin).manifest.files.encoder == "encoder.fp32.onnx"
