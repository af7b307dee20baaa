"""Helpers for the bundle tests: hand-made encoders that break the I/O contract.

(A plain module rather than conftest.py so that test files can import it: tests/ has no packages.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from libs.bundle.testing import ENCODER_FILE, IR_VERSION, OPSET, build_random_bundle

SIZE = 64


def make_encoder(
    *,
    input_name: str = "image",
    input_shape: list = ("N", 1, SIZE, SIZE),
    input_type: int = TensorProto.FLOAT,
    extra_input: bool = False,
    prob_name: str = "probabilities",
    n_labels: int = 14,
    sigmoid: bool = True,
    hardcode_batch: bool = False,
    heatmap_channels: int | None = None,
) -> onnx.ModelProto:
    """A minimal encoder: mean pixel -> MatMul -> (Sigmoid) -> [N, n_labels], with knobs to break the contract."""
    nodes = []
    x = input_name
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [x], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    nodes += [
        helper.make_node("ReduceMean", [x], ["mean"], axes=list(range(1, len(input_shape))), keepdims=1),
        helper.make_node("Flatten", ["mean"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    # A large bias so that, without sigmoid, the outputs leave [0, 1].
    inits = [
        numpy_helper.from_array(np.full((1, n_labels), 2.0, dtype=np.float32), "w"),
        numpy_helper.from_array(np.full((n_labels,), 10.0, dtype=np.float32), "b"),
    ]
    last = "logits"
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", [last], ["sig"]))
        last = "sig"
    if hardcode_batch:
        inits.append(numpy_helper.from_array(np.array([1, n_labels], dtype=np.int64), "fixed_shape"))
        nodes.append(helper.make_node("Reshape", [last, "fixed_shape"], ["reshaped"]))
        last = "reshaped"
    nodes.append(helper.make_node("Identity", [last], [prob_name]))
    outputs = [helper.make_tensor_value_info(prob_name, TensorProto.FLOAT, ["N", n_labels])]
    if heatmap_channels is not None:
        inits += [
            numpy_helper.from_array(np.ones((1, heatmap_channels), dtype=np.float32), "hm_w"),
            numpy_helper.from_array(np.array([-1, heatmap_channels, 1, 1], dtype=np.int64), "hm_shape"),
        ]
        nodes += [
            helper.make_node("MatMul", ["flat", "hm_w"], ["hm_flat"]),
            helper.make_node("Reshape", ["hm_flat", "hm_shape"], ["heatmaps"]),
        ]
        outputs.append(helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", heatmap_channels, 1, 1]))
    inputs = [helper.make_tensor_value_info(input_name, input_type, list(input_shape))]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1]))
    graph = helper.make_graph(nodes, "test_encoder", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def bundle_with_encoder(dest: Path, model: onnx.ModelProto | bytes) -> Path:
    """A valid random bundle whose encoder file is replaced by `model` (or raw bytes)."""
    build_random_bundle(dest, image_size=SIZE)
    path = dest / ENCODER_FILE
    if isinstance(model, bytes):
        path.write_bytes(model)
    else:
        onnx.save(model, str(path))
    return dest
