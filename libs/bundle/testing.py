"""A tiny random-weight bundle for tests. NOT A MODEL: it is never a default anywhere.

The encoder follows the real I/O contract (docs/bundle.md) so the runner, the API and the
pipeline can be exercised end to end without the trained reference bundle, and its outputs
depend on the image so tests can tell images apart:

    image -> Conv(k x k, stride k, positive weights) -> ReLU -> features [N, C, S/k, S/k]
    features -> GlobalAveragePool -> Flatten -> Gemm -> Sigmoid   = probabilities [N, 14]
    features -> Conv 1x1 (positive weights)                       = heatmaps [N, 14, S/k, S/k]
    pooled features -> Gemm                                       = embedding [N, 16]

Positive feature/heatmap weights make the heatmaps light up where the image is bright, so box
tests can check location (a bright patch yields boxes over that patch).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from libs.bundle.contract import INPUT_IMAGE, N_LABELS, OUTPUT_EMBEDDING, OUTPUT_HEATMAPS, OUTPUT_PROBABILITIES
from libs.bundle.manifest import MANIFEST_FILE, Manifest
from libs.domain.labels import CHEXPERT_LABELS

RANDOM_BUNDLE_NAME = "random-test-bundle"
TEST_INTENDED_USE = "TEST FIXTURE ONLY — random weights, not a model"
ENCODER_FILE = "encoder.onnx"
# Old enough for any onnxruntime >= 1.14 to load.
OPSET = 17
IR_VERSION = 8
_FEATURES = 8
_EMBEDDING_DIM = 16


def build_random_encoder(
    image_size: int, *, seed: int = 0, with_heatmaps: bool = True, with_embedding: bool = True
) -> onnx.ModelProto:
    """The random encoder described in the module docstring, checked by onnx.checker."""
    rng = np.random.default_rng(seed)
    k = max(1, image_size // 16)  # about 16x16 feature maps whatever the input size
    f = _FEATURES

    def const(name: str, array: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)

    initializers = [
        const("conv_w", np.abs(rng.normal(size=(f, 1, k, k))) / (k * k)),
        const("conv_b", rng.normal(scale=0.1, size=f)),
        const("cls_w", rng.normal(scale=1.5, size=(N_LABELS, f))),
        const("cls_b", rng.normal(scale=0.5, size=N_LABELS)),
    ]
    nodes = [
        helper.make_node("Conv", [INPUT_IMAGE, "conv_w", "conv_b"], ["conv"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("Relu", ["conv"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled4d"]),
        helper.make_node("Flatten", ["pooled4d"], ["pooled"], axis=1),
        helper.make_node("Gemm", ["pooled", "cls_w", "cls_b"], ["logits"], transB=1),
        helper.make_node("Sigmoid", ["logits"], [OUTPUT_PROBABILITIES]),
    ]
    outputs = [helper.make_tensor_value_info(OUTPUT_PROBABILITIES, TensorProto.FLOAT, ["N", N_LABELS])]
    if with_heatmaps:
        initializers += [
            const("cam_w", np.abs(rng.normal(size=(N_LABELS, f, 1, 1)))),
            const("cam_b", np.zeros(N_LABELS)),
        ]
        nodes.append(helper.make_node("Conv", ["features", "cam_w", "cam_b"], [OUTPUT_HEATMAPS], kernel_shape=[1, 1]))
        outputs.append(helper.make_tensor_value_info(OUTPUT_HEATMAPS, TensorProto.FLOAT, ["N", N_LABELS, "h", "w"]))
    if with_embedding:
        initializers += [
            const("emb_w", rng.normal(size=(_EMBEDDING_DIM, f))),
            const("emb_b", np.zeros(_EMBEDDING_DIM)),
        ]
        nodes.append(helper.make_node("Gemm", ["pooled", "emb_w", "emb_b"], [OUTPUT_EMBEDDING], transB=1))
        outputs.append(helper.make_tensor_value_info(OUTPUT_EMBEDDING, TensorProto.FLOAT, ["N", _EMBEDDING_DIM]))

    graph = helper.make_graph(
        nodes,
        "random_test_encoder",
        [helper.make_tensor_value_info(INPUT_IMAGE, TensorProto.FLOAT, ["N", 1, image_size, image_size])],
        outputs,
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="libs.bundle.testing"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def build_random_bundle(
    dest: Path,
    *,
    image_size: int = 64,
    assessed_labels: list[str] | None = None,
    seed: int = 0,
    with_heatmaps: bool = True,
    with_embedding: bool = True,
    threshold: float = 0.5,
    version: str = "0.0.0-test",
) -> Path:
    """Write a random-weight test bundle (encoder.onnx + manifest.json) into `dest`; returns `dest`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    assessed = list(CHEXPERT_LABELS) if assessed_labels is None else list(assessed_labels)
    model = build_random_encoder(image_size, seed=seed, with_heatmaps=with_heatmaps, with_embedding=with_embedding)
    onnx.save(model, str(dest / ENCODER_FILE))
    manifest = Manifest(
        format_version=1,
        name=RANDOM_BUNDLE_NAME,
        version=version,
        description="Random-weight encoder that follows the bundle I/O contract; for tests only.",
        labels=list(CHEXPERT_LABELS),
        assessed_labels=assessed,
        thresholds={label: threshold for label in assessed},
        input={"size": image_size, "channels": 1, "normalization": {"mean": 0.5, "std": 0.25}, "pixel_range": "0-1"},
        files={"encoder": ENCODER_FILE},
        metrics={},
        intended_use=TEST_INTENDED_USE,
        test_only=True,
    )
    (dest / MANIFEST_FILE).write_text(
        json.dumps(manifest.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return dest
