"""Per-op int8 pricing from ORT's profiler: kernels mapped back to their ops, leftover Q/DQ charged to them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autocompress.quant.mixed_precision import SLOWER, greedy_plan
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.qdq import QDQOptions, plan_quantization
from autocompress.quant.statistics import collect_statistics
from autocompress.runtime.profile import QDQOwners, node_times, price_ops, source_op


def _thin_chain() -> onnx.ModelProto:
    """conv_a (1x1, 2 channels) -> HardSwish (no integer kernel in ORT) -> conv_b, on a wide feature map: the
    int8 kernels save almost nothing and the Q/DQ pairs around HardSwish cost a pass over the tensor each."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((2, 2, 1, 1)).astype(np.float32), f"w{i}") for i in "ab"]
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a"),
        helper.make_node("HardSwish", ["a"], ["h"], name="hswish"),
        helper.make_node("Conv", ["h", "wb"], ["y"], name="conv_b"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 256, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _owners(model: onnx.ModelProto) -> QDQOwners:
    plan = plan_quantization(model, QDQOptions())
    readers: dict[str, list[str]] = {}
    for node_plan in plan.nodes:
        for name in node_plan.node.input:
            readers.setdefault(name, []).append(node_plan.node.name)
    return QDQOwners({k: tuple(v) for k, v in readers.items()}, {p.output: p.node.name for p in plan.nodes if p.output})


def test_qdq_around_an_op_without_integer_kernel_is_charged_to_its_neighbours_and_keeps_them_float(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    model = _thin_chain()
    feed = {"x": np.random.default_rng(1).standard_normal((1, 2, 256, 256)).astype(np.float32)}
    stats = collect_statistics(model, [feed], calibration_tensors(model), algorithms=["abs_max"])
    int8, _ = quantize_post_training(model, stats, algo="abs_max")
    float_times, int8_times = node_times(model, feed, runs=5), node_times(int8, feed, runs=5)
    # the DequantizeLinear after conv_a and the QuantizeLinear before conv_b survive ORT's fusion
    assert "a_DequantizeLinear" in int8_times and "h_QuantizeLinear" in int8_times
    prices = price_ops(["conv_a", "conv_b"], float_times, int8_times, _owners(model), {"a": "conv_a", "y": "conv_b"})
    assert prices["conv_a"].qdq_ms >= int8_times["a_DequantizeLinear"]
    assert prices["conv_b"].qdq_ms >= int8_times["h_QuantizeLinear"]
    price = prices["conv_a"]
    assert price.float_ms > 0 and price.int8_ms > 0
    assert price.gain_ms == pytest.approx(price.float_ms - price.int8_ms - price.qdq_ms)
    assert list(tmp_path.iterdir()) == []  # the profiler wrote nothing into the working directory
    # an op whose int8 form costs more than it saves stays float, whatever its sensitivity (timings are the
    # machine's, so the decision is checked on a gain below zero, not on this run's measured one)
    choices = greedy_plan(
        {"conv_a": "Conv"}, {"conv_a": 0.0}, {"conv_a": -abs(price.gain_ms) - 1e-3}, tolerance=1.0, forced={}
    )
    assert [(c.int8, c.reason) for c in choices] == [(False, SLOWER)]


def test_source_op_maps_rewritten_kernels_to_their_node():
    names = {"/a/Conv": "/a/Conv", "/a/Conv_1": "/a/Conv_1", "/a/Conv_output_0": "/a/Conv"}
    assert source_op("/a/Conv", names) == "/a/Conv"
    assert source_op("/a/Conv_token_3", names) == "/a/Conv"
    assert source_op("/a/Conv_1_token_0", names) == "/a/Conv_1"
    assert source_op("/a/Conv_output_0_nchwc", names) == "/a/Conv"  # ORT's NCHWc pass names it after its output
    assert source_op("Transpose_token_0", names) is None


def test_shared_quantize_is_split_between_its_readers():
    owners = QDQOwners({"t": ("p", "q")}, {})
    prices = price_ops(["p", "q"], {"p": 1.0, "q": 1.0}, {"p": 0.5, "q": 0.5, "t_QuantizeLinear": 0.4}, owners)
    assert prices["p"].qdq_ms == prices["q"].qdq_ms == 0.2
    assert prices["p"].gain_ms == pytest.approx(0.3)
