"""Zero-range tensors, denormals and huge activations never give an exported QDQ model a scale that is
zero, denormal, infinite or NaN, and the quantized model's outputs stay finite."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from autocompress.graph.index import GraphIndex
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.ranges import ALGORITHMS
from autocompress.quant.statistics import collect_statistics

DENORMAL = 1e-40  # below float32's smallest normal number (1.2e-38)
HUGE = 1e30


def _extreme_model() -> onnx.ModelProto:
    """conv1 has an all-zero output channel, a denormal one and a tiny one; conv2's weights are all zero, so its output (an
    activation that is quantized) is zero whatever the input; conv3 reads the sum."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w1[0] = 0.0
    w1[1] = DENORMAL
    w1[2] *= 1e-30  # normal weights whose scale times a small activation scale underflows (the int32 bias scale)
    w2 = np.zeros((8, 8, 3, 3), np.float32)
    w3 = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in [
            (w1, "w1"),
            (np.zeros(8, np.float32), "b1"),
            (w2, "w2"),
            (np.zeros(8, np.float32), "b2"),
            (w3, "w3"),
            (np.zeros(4, np.float32), "b3"),
        ]
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["zero"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["zero", "r1"], ["sum"], name="add"),
        helper.make_node("Conv", ["sum", "w3", "b3"], ["y"], pads=[1, 1, 1, 1], name="conv3"),
    ]
    graph = helper.make_graph(
        nodes,
        "extremes",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _batches(case: str) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    normal = [rng.standard_normal((2, 3, 8, 8)).astype(np.float32) for _ in range(3)]
    arrays = {
        "zeros": [np.zeros_like(a) for a in normal],
        "denormals": [(a * DENORMAL).astype(np.float32) for a in normal],
        "huge": [(a * HUGE).astype(np.float32) for a in normal],
        "mixed": [normal[0], (normal[1] * HUGE).astype(np.float32), (normal[2] * DENORMAL).astype(np.float32)],
    }[case]
    return [{"x": a} for a in arrays]


def _scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    index = GraphIndex(model)
    scales = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            value = index.constant_value(node.input[1])
            assert value is not None, f"{node.name}: scale {node.input[1]} is not a constant"
            scales[node.input[1]] = value
    return scales


@pytest.fixture(scope="module")
def model():
    return _extreme_model()


@pytest.mark.parametrize("case", ["zeros", "denormals", "huge", "mixed"])
def test_extreme_data_and_weights_give_finite_normal_scales(model, case):
    batches = _batches(case)
    statistics = collect_statistics(model, batches, calibration_tensors(model))
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = 1
    tiny = np.finfo(np.float32).tiny
    settings = [(algo, "channel_wise_abs_max") for algo in ALGORITHMS] + [("abs_max", "abs_max")]
    for algo, weights in settings:
        quantized, info = quantize_post_training(model, statistics, algo=algo, weight_quantize_type=weights)
        assert info.quantized_op_counts["Conv"] == 3
        scales = _scales(quantized)
        assert scales, "no QDQ scale was written"
        for name, scale in scales.items():
            assert scale.dtype == np.float32, name
            assert np.isfinite(scale).all() and (scale >= tiny).all(), (case, algo, weights, name, scale)
            assert np.isfinite(1.0 / scale.astype(np.float64)).all()
        session = ort.InferenceSession(
            quantized.SerializeToString(), session_options, providers=["CPUExecutionProvider"]
        )
        for batch in batches:
            assert np.isfinite(session.run(None, batch)[0]).all(), (case, algo, weights)
