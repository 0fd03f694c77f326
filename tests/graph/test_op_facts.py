"""The op facts table against what the ops compute."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from autocompress.graph.op_facts import LAYER_OP_TYPES, TRAINABLE_OP_TYPES, op_facts, weight_axes
from autocompress.quant.op_types import QUANTIZABLE_OP_TYPES
from autocompress.runtime.torch_graph import TorchGraph

# (op type, attributes, input shape, weight shape, which axis of the output holds channels)
LAYERS = [
    ("Conv", {}, [1, 4, 5, 5], [6, 4, 3, 3], 1),
    ("Conv", {"group": 2}, [1, 4, 5, 5], [6, 2, 3, 3], 1),
    ("ConvTranspose", {}, [1, 4, 5, 5], [4, 6, 3, 3], 1),
    ("Gemm", {}, [2, 4], [4, 6], 1),
    ("Gemm", {"transB": 1}, [2, 4], [6, 4], 1),
    ("MatMul", {}, [2, 3, 4], [4, 6], 2),
]


def _run(op: str, attrs: dict, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    node = helper.make_node(op, ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


@pytest.mark.parametrize(("op", "attrs", "x_shape", "w_shape", "channel_axis"), LAYERS)
def test_weight_axes_name_the_output_and_input_channels(op, attrs, x_shape, w_shape, channel_axis):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    axes = weight_axes(helper.make_node(op, ["x", "w"], ["y"], **attrs), len(w_shape))
    assert axes.per_channel
    reference = _run(op, attrs, x, w)
    cut = w.copy()
    np.moveaxis(cut, axes.output, 0)[2] = 0  # output channel 2 loses its filter: only it becomes zero
    out = np.moveaxis(_run(op, attrs, x, cut), channel_axis, 0)
    kept = np.delete(np.moveaxis(reference, channel_axis, 0), 2, 0)
    assert np.all(out[2] == 0) and np.array_equal(np.delete(out, 2, 0), kept)
    cut = w.copy()
    np.moveaxis(cut, axes.input, 0)[0] = 0  # the first input channel (of each group) is read no more
    moved = x.copy()
    np.moveaxis(moved, x.ndim - 1 if op == "MatMul" else 1, 0)[0] += 1.0
    np.testing.assert_allclose(_run(op, attrs, moved, cut), _run(op, attrs, x, cut), rtol=1e-5, atol=1e-5)


def test_per_channel_scales_need_an_axis_of_whole_output_channels():
    grouped = helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2)
    assert not weight_axes(grouped, 4).per_channel  # axis 1 holds each group's share
    assert not weight_axes(helper.make_node("MatMul", ["x", "w"], ["y"]), 3).per_channel
    assert weight_axes(helper.make_node("Relu", ["x"], ["y"]), 2) is None


def test_the_table_answers_for_every_op_type():
    assert LAYER_OP_TYPES == ("Conv", "ConvTranspose", "MatMul", "Gemm")
    assert QUANTIZABLE_OP_TYPES[:4] == LAYER_OP_TYPES  # every layer has an integer kernel
    assert [op_facts(op).bias_input for op in LAYER_OP_TYPES] == [2, 2, None, 2]
    assert op_facts("MatMul").activation_inputs == (0, 1) and op_facts("Concat").activation_inputs is None
    unknown = op_facts("NonMaxSuppression")
    assert unknown.weight_input is None and not unknown.integer_kernel and unknown.activation_inputs is None


def test_the_executor_trains_what_the_table_calls_weights():
    """A 1-element Conv bias and PRelu slope are trained; a 1-element Add constant and BN's statistics are not."""
    inits = [
        numpy_helper.from_array(np.ones((1, 2, 1, 1), np.float32), "w"),
        numpy_helper.from_array(np.zeros(1, np.float32), "b"),
        numpy_helper.from_array(np.full(1, 0.1, np.float32), "slope"),
        numpy_helper.from_array(np.full(1, 2.0, np.float32), "two"),
        *(
            numpy_helper.from_array(np.full(1, v, np.float32), n)
            for n, v in [("gamma", 1.0), ("beta", 0.0), ("mean", 0.0), ("var", 1.0)]
        ),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"]),
        helper.make_node("PRelu", ["n", "slope"], ["p"]),
        helper.make_node("Add", ["p", "two"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 3, 3])],
        inits,
    )
    executor = TorchGraph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert set(executor.parameter_names()) == {"w", "b", "gamma", "beta", "slope"}
    assert {"Conv", "PRelu", "BatchNormalization"} <= TRAINABLE_OP_TYPES
    assert op_facts("BatchNormalization").running_stat_inputs == (3, 4)
