import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autocompress.graph.index import attribute
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.statistics import collect_statistics
from autocompress.quant.weights import dequantize_weight, quantize_weight, weight_channel_axis, weight_scales

from .conftest import cosine, run


def _single_op_model(op_type: str, x_shape, w_shape, **attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "W")
    node = helper.make_node(op_type, ["x", "W"], ["h"], name="target", **attrs)
    relu = helper.make_node("Relu", ["h"], ["y"], name="act")
    graph = helper.make_graph(
        [node, relu],
        op_type.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(x_shape))],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


CASES = [
    ("Conv", (1, 4, 6, 6), (6, 4, 3, 3), {}, 0),
    ("Conv", (1, 4, 6, 6), (4, 1, 3, 3), {"group": 4}, 0),
    ("ConvTranspose", (1, 4, 5, 5), (4, 6, 3, 3), {}, 1),
    ("ConvTranspose", (1, 4, 5, 5), (4, 3, 3, 3), {"group": 2}, None),
    ("Gemm", (2, 4), (6, 4), {"transB": 1}, 0),
    ("Gemm", (2, 4), (4, 6), {}, 1),
    ("MatMul", (2, 3, 4), (4, 6), {}, 1),
]


@pytest.mark.parametrize("op_type, x_shape, w_shape, attrs, axis", CASES)
def test_channel_axis_per_op_and_in_the_written_model(op_type, x_shape, w_shape, attrs, axis):
    model = _single_op_model(op_type, x_shape, w_shape, **attrs)
    assert weight_channel_axis(model.graph.node[0], len(w_shape)) == axis
    rng = np.random.default_rng(1)
    batches = [{"x": rng.standard_normal(x_shape).astype(np.float32)} for _ in range(3)]
    statistics = collect_statistics(model, batches, calibration_tensors(model))
    quantized, _ = quantize_post_training(model, statistics, algo="abs_max")
    onnx.checker.check_model(quantized)
    dq = next(n for n in quantized.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "W_quantized")
    scale = numpy_helper.to_array(next(t for t in quantized.graph.initializer if t.name == "W_scale"))
    if axis is None:
        assert attribute(dq, "axis") is None and scale.shape == ()
    else:
        assert attribute(dq, "axis") == axis and scale.shape == (w_shape[axis],)
    assert cosine(run(quantized, batches[0]), run(model, batches[0])) > 0.999


def test_abs_max_is_one_scale_per_tensor():
    rng = np.random.default_rng(2)
    model = _single_op_model("Conv", (1, 4, 6, 6), (6, 4, 3, 3))
    statistics = collect_statistics(
        model, [{"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32)}], calibration_tensors(model)
    )
    quantized, _ = quantize_post_training(model, statistics, algo="abs_max", weight_quantize_type="abs_max")
    scale = numpy_helper.to_array(next(t for t in quantized.graph.initializer if t.name == "W_scale"))
    assert scale.shape == ()


def test_symmetric_quantization_round_trip():
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((5, 3, 2, 2)).astype(np.float32)
    weight[2] = 0.0  # an all-zero channel must not give a zero scale
    scale = weight_scales(weight, 0, 8)
    assert np.all(scale > 0)
    np.testing.assert_allclose(scale[[0, 1]], np.abs(weight[[0, 1]]).reshape(2, -1).max(axis=1) / 127, rtol=1e-6)
    q = quantize_weight(weight, scale, 0, 8)
    assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    error = np.abs(dequantize_weight(q, scale, 0) - weight)
    assert np.all(error <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-7)
    four_bit = quantize_weight(weight, weight_scales(weight, 0, 4), 0, 4)
    assert four_bit.min() >= -7 and four_bit.max() <= 7
