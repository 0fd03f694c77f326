"""Each op family against ONNX Runtime on single-node graphs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from .onnx_cases import Case, assert_matches_ort, ints, rand

X4 = rand(2, 3, 5, 6)
POS4 = rand(2, 3, 5, 6, low=0.1, high=2.0)

ELEMENTWISE = {
    "add_broadcast": Case("Add", {"a": X4, "b": rand(3, 1, 6, seed=1)}),
    "sub": Case("Sub", {"a": X4, "b": rand(1, 6, seed=1)}),
    "mul_const": Case("Mul", {"a": X4}, {"b": rand(3, 1, 1, seed=2)}),
    "div": Case("Div", {"a": X4, "b": POS4}),
    "div_int": Case("Div", {"a": ints(7, -7, 9)}, {"b": ints(2, 2, 4)}),
    "pow_square": Case("Pow", {"a": X4}, {"b": np.array(2.0, np.float32)}),
    "pow_dynamic": Case("Pow", {"a": POS4, "b": X4}),
    "sqrt": Case("Sqrt", {"a": POS4}),
    "exp": Case("Exp", {"a": X4}),
    "log": Case("Log", {"a": POS4}),
    "neg": Case("Neg", {"a": X4}),
    "abs": Case("Abs", {"a": X4}),
    "reciprocal": Case("Reciprocal", {"a": POS4}),
    "floor": Case("Floor", {"a": X4 * 3}),
    "ceil": Case("Ceil", {"a": X4 * 3}),
    "round_half_even": Case("Round", {"a": np.array([0.5, 1.5, 2.5, -0.5, 1.2], np.float32)}),
    "min3": Case("Min", {"a": X4, "b": rand(6, seed=1), "c": rand(5, 6, seed=2)}),
    "max": Case("Max", {"a": X4, "b": rand(6, seed=1)}),
    "sum": Case("Sum", {"a": X4, "b": X4 * 2, "c": rand(6, seed=3)}),
    "mean": Case("Mean", {"a": X4, "b": rand(6, seed=1)}),
    "equal": Case("Equal", {"a": ints(1, 2, 3)}, {"b": ints(1, 0, 3)}),
    "less": Case("Less", {"a": X4, "b": rand(6, seed=1)}),
    "greater": Case("Greater", {"a": X4, "b": rand(6, seed=1)}),
    "not": Case("Not", {"a": np.array([True, False])}),
    "and": Case("And", {"a": np.array([True, False, True]), "b": np.array([True, True, False])}),
    "or": Case("Or", {"a": np.array([True, False, False]), "b": np.array([True, True, False])}),
    "where": Case("Where", {"c": X4 > 0, "a": X4, "b": rand(6, seed=1)}),
    "sign": Case("Sign", {"a": np.array([-2.0, 0.0, 3.0], np.float32)}),
    "erf": Case("Erf", {"a": X4}),
}

ACTIVATION = {
    "relu": Case("Relu", {"x": X4}),
    "leaky_relu": Case("LeakyRelu", {"x": X4}, attrs={"alpha": 0.1}),
    "prelu": Case("PRelu", {"x": X4}, {"s": rand(3, 1, 1, seed=1)}),
    "elu": Case("Elu", {"x": X4}, attrs={"alpha": 0.7}),
    "selu": Case("Selu", {"x": X4}),
    "clip_inputs": Case("Clip", {"x": X4 * 8}, {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}),
    "clip_min_only": Case("Clip", {"x": X4}, {"lo": np.array(-0.2, np.float32)}),
    "clip_dynamic": Case("Clip", {"x": X4, "lo": np.array(-0.3, np.float32), "hi": np.array(0.4, np.float32)}),
    "clip_attrs_opset6": Case("Clip", {"x": X4}, attrs={"min": -0.5, "max": 0.5}, opset=6),
    "hard_sigmoid": Case("HardSigmoid", {"x": X4 * 4}, attrs={"alpha": 0.2, "beta": 0.5}),
    "hard_swish": Case("HardSwish", {"x": X4 * 4}),
    "sigmoid": Case("Sigmoid", {"x": X4}),
    "tanh": Case("Tanh", {"x": X4}),
    "softplus": Case("Softplus", {"x": X4}),
    "gelu": Case("Gelu", {"x": X4}, opset=20),
    "gelu_tanh": Case("Gelu", {"x": X4}, attrs={"approximate": "tanh"}, opset=20),
    "softmax_opset11_flattens": Case("Softmax", {"x": X4}, attrs={"axis": 1}, opset=11),
    "softmax_opset13_axis": Case("Softmax", {"x": X4}, attrs={"axis": 1}, opset=13),
    "logsoftmax_opset11": Case("LogSoftmax", {"x": X4}, attrs={"axis": 2}, opset=11),
    "logsoftmax_last": Case("LogSoftmax", {"x": X4}),
}

NORM = {
    "batch_norm": Case(
        "BatchNormalization",
        {"x": X4},
        {"s": rand(3, seed=1), "b": rand(3, seed=2), "m": rand(3, seed=3), "v": rand(3, seed=4, low=0.5, high=2)},
        attrs={"epsilon": 1e-3},
    ),
    "instance_norm": Case("InstanceNormalization", {"x": X4}, {"s": rand(3, seed=1), "b": rand(3, seed=2)}),
    "layer_norm": Case("LayerNormalization", {"x": X4}, {"s": rand(6, seed=1), "b": rand(6, seed=2)}),
    "layer_norm_axis": Case("LayerNormalization", {"x": X4}, {"s": rand(5, 6, seed=1)}, attrs={"axis": 2}),
}

W = rand(4, 3, 3, 3, seed=5)
CONV = {
    "conv_pads": Case("Conv", {"x": X4}, {"w": W, "b": rand(4, seed=6)}, attrs={"pads": [1, 1, 1, 1]}),
    "conv_stride_dilation": Case(
        "Conv", {"x": rand(1, 3, 11, 9)}, {"w": W}, attrs={"strides": [2, 1], "dilations": [2, 2]}
    ),
    "conv_groups": Case(
        "Conv", {"x": rand(1, 4, 7, 7)}, {"w": rand(4, 1, 3, 3, seed=5)}, attrs={"group": 4, "pads": [1, 1, 1, 1]}
    ),
    "conv_asymmetric": Case("Conv", {"x": X4}, {"w": W}, attrs={"pads": [0, 1, 2, 0], "strides": [2, 2]}),
    "conv_same_upper": Case(
        "Conv", {"x": rand(1, 3, 8, 7)}, {"w": W}, attrs={"auto_pad": "SAME_UPPER", "strides": [2, 2]}
    ),
    "conv_same_lower": Case(
        "Conv", {"x": rand(1, 3, 8, 7)}, {"w": W}, attrs={"auto_pad": "SAME_LOWER", "strides": [2, 2]}
    ),
    "conv1d": Case("Conv", {"x": rand(2, 3, 10)}, {"w": rand(2, 3, 3, seed=1)}, attrs={"pads": [1, 1]}),
    "conv_transpose": Case(
        "ConvTranspose",
        {"x": X4},
        {"w": rand(3, 2, 3, 3, seed=1), "b": rand(2, seed=2)},
        attrs={"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    ),
    "conv_transpose_groups": Case(
        "ConvTranspose", {"x": rand(1, 4, 5, 5)}, {"w": rand(4, 1, 2, 2, seed=1)}, attrs={"strides": [2, 2], "group": 2}
    ),
    "conv_transpose_asymmetric": Case(
        "ConvTranspose", {"x": X4}, {"w": rand(3, 2, 3, 3, seed=1)}, attrs={"strides": [2, 2], "pads": [0, 1, 2, 1]}
    ),
}

MATMUL = {
    "matmul_batched": Case("MatMul", {"a": rand(2, 3, 4, 5), "b": rand(5, 6, seed=1)}),
    "gemm_linear": Case(
        "Gemm", {"a": rand(3, 5)}, {"b": rand(4, 5, seed=1), "c": rand(4, seed=2)}, attrs={"transB": 1}
    ),
    "gemm_general": Case(
        "Gemm",
        {"a": rand(5, 3)},
        {"b": rand(5, 4, seed=1), "c": rand(1, 4, seed=2)},
        attrs={"transA": 1, "alpha": 0.5, "beta": 2.0},
    ),
    "einsum": Case("Einsum", {"a": rand(2, 3, 4), "b": rand(2, 4, 5, seed=1)}, attrs={"equation": "bij,bjk->bik"}),
}

X7 = rand(1, 2, 7, 8)
POOL = {
    "max_pool": Case("MaxPool", {"x": X7}, attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "max_pool_ceil": Case("MaxPool", {"x": X7}, attrs={"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    "max_pool_asymmetric": Case("MaxPool", {"x": X7}, attrs={"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]}),
    "avg_pool_exclude_pad": Case("AveragePool", {"x": X7}, attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "avg_pool_include_pad": Case(
        "AveragePool", {"x": X7}, attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}
    ),
    "avg_pool_ceil": Case("AveragePool", {"x": X7}, attrs={"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    "avg_pool_paddle_rec": Case(
        "AveragePool", {"x": rand(1, 2, 6, 40)}, attrs={"kernel_shape": [3, 2], "strides": [3, 2]}
    ),
    "avg_pool_asymmetric": Case("AveragePool", {"x": X7}, attrs={"kernel_shape": [3, 3], "pads": [0, 1, 2, 1]}),
    "avg_pool_same_upper": Case(
        "AveragePool", {"x": X7}, attrs={"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}
    ),
    "global_avg": Case("GlobalAveragePool", {"x": X4}),
    "global_max": Case("GlobalMaxPool", {"x": X4}),
}

REDUCE = {
    "mean_attr": Case("ReduceMean", {"x": X4}, attrs={"axes": [-1]}, opset=13),
    "mean_input_opset18": Case("ReduceMean", {"x": X4}, {"axes": ints(1, 2)}, opset=18),
    "sum_input": Case("ReduceSum", {"x": X4}, {"axes": ints(1)}, attrs={"keepdims": 0}, opset=13),
    "sum_all": Case("ReduceSum", {"x": X4}, opset=13),
    "max": Case("ReduceMax", {"x": X4}, attrs={"axes": [1, 3], "keepdims": 0}, opset=13),
    "min": Case("ReduceMin", {"x": X4}, attrs={"axes": [0]}, opset=13),
    "prod": Case("ReduceProd", {"x": X4}, attrs={"axes": [2, 3]}, opset=13),
    "l2": Case("ReduceL2", {"x": X4}, attrs={"axes": [1]}, opset=13),
    "argmax": Case("ArgMax", {"x": X4}, attrs={"axis": 2, "keepdims": 0}),
    "argmax_last": Case(
        "ArgMax", {"x": np.array([[1, 3, 3], [2, 2, 0]], np.float32)}, attrs={"axis": 1, "select_last_index": 1}
    ),
    "topk": Case("TopK", {"x": X4}, {"k": ints(2)}, attrs={"axis": 1}, outputs=2),
    "cumsum_exclusive_reverse": Case("CumSum", {"x": X4}, {"axis": ints(2)}, attrs={"exclusive": 1, "reverse": 1}),
}

SHAPE = {
    "shape": Case("Shape", {"x": X4}),
    "shape_slice": Case("Shape", {"x": X4}, attrs={"start": 1, "end": -1}, opset=15),
    "size": Case("Size", {"x": X4}),
    "reshape_zero_minus_one": Case("Reshape", {"x": X4}, {"s": ints(0, -1, 6)}),
    "reshape_dynamic": Case("Reshape", {"x": X4, "s": ints(6, 5, -1)}),
    "flatten": Case("Flatten", {"x": X4}, attrs={"axis": 2}),
    "flatten_zero": Case("Flatten", {"x": X4}, attrs={"axis": 0}),
    "transpose": Case("Transpose", {"x": X4}, attrs={"perm": [0, 2, 3, 1]}),
    "transpose_default": Case("Transpose", {"x": X4}),
    "squeeze_attr": Case("Squeeze", {"x": rand(2, 1, 3, 1)}, attrs={"axes": [1, -1]}, opset=11),
    "squeeze_input": Case("Squeeze", {"x": rand(2, 1, 3, 1)}, {"a": ints(1)}, opset=13),
    "squeeze_all": Case("Squeeze", {"x": rand(2, 1, 3, 1)}, opset=13),
    "unsqueeze_attr": Case("Unsqueeze", {"x": rand(2, 3)}, attrs={"axes": [0, 3]}, opset=11),
    "unsqueeze_input": Case("Unsqueeze", {"x": rand(2, 3)}, {"a": ints(-1, 1)}, opset=13),
    "expand": Case("Expand", {"x": rand(3, 1)}, {"s": ints(2, 1, 4)}),
    "tile": Case("Tile", {"x": rand(2, 3)}, {"r": ints(2, 3)}),
    "identity": Case("Identity", {"x": X4}),
    "dropout": Case("Dropout", {"x": X4}, {"r": np.array(0.3, np.float32)}),
    "depth_to_space_dcr": Case("DepthToSpace", {"x": rand(1, 8, 2, 3)}, attrs={"blocksize": 2}),
    "depth_to_space_crd": Case("DepthToSpace", {"x": rand(1, 8, 2, 3)}, attrs={"blocksize": 2, "mode": "CRD"}),
    "space_to_depth": Case("SpaceToDepth", {"x": rand(1, 2, 4, 6)}, attrs={"blocksize": 2}),
}

TENSOR = {
    "concat": Case("Concat", {"a": X4, "b": rand(2, 1, 5, 6, seed=1)}, attrs={"axis": 1}),
    "split_attr": Case("Split", {"x": X4}, attrs={"axis": 3, "split": [2, 4]}, opset=11, outputs=2),
    "split_input": Case("Split", {"x": X4}, {"s": ints(1, 2)}, attrs={"axis": 1}, opset=13, outputs=2),
    "split_equal": Case("Split", {"x": X4}, attrs={"axis": 3}, opset=13, outputs=3),
    "slice_steps": Case("Slice", {"x": X4}, {"st": ints(1, 0), "en": ints(5, 100), "ax": ints(2, 3), "sp": ints(2, 3)}),
    "slice_negative_step": Case(
        "Slice", {"x": X4}, {"st": ints(-1, 4), "en": ints(-(2**62), 0), "ax": ints(3, 2), "sp": ints(-1, -2)}
    ),
    "slice_no_axes": Case("Slice", {"x": X4}, {"st": ints(0, 1), "en": ints(1, -1)}),
    "slice_dynamic": Case("Slice", {"x": X4, "st": ints(1), "en": ints(4)}, {"ax": ints(-1)}),
    "slice_opset9": Case("Slice", {"x": X4}, attrs={"starts": [1], "ends": [3], "axes": [1]}, opset=9),
    "gather_scalar": Case("Gather", {"x": X4}, {"i": np.array(-1, np.int64)}, attrs={"axis": 1}),
    "gather_vector": Case("Gather", {"x": X4}, {"i": ints(0, -1, 2)}, attrs={"axis": 3}),
    "gather_matrix_runtime": Case("Gather", {"x": X4, "i": np.array([[0, 1], [4, -2]], np.int64)}, attrs={"axis": 2}),
    "gather_elements": Case(
        "GatherElements", {"x": rand(3, 4), "i": np.array([[0, 1, 2, -1], [3, 0, 0, 1]], np.int64)}, attrs={"axis": 1}
    ),
    "gather_nd": Case("GatherND", {"x": rand(3, 4, 2), "i": np.array([[0, 1], [2, 3]], np.int64)}),
    "scatter_nd": Case("ScatterND", {"x": rand(4, 3), "i": np.array([[1], [3]], np.int64), "u": rand(2, 3, seed=1)}),
    "cast_to_int": Case("Cast", {"x": X4 * 5}, attrs={"to": TensorProto.INT32}),
    "cast_to_float": Case("Cast", {"x": ints(1, 2)}, attrs={"to": TensorProto.FLOAT}),
    "constant_of_shape": Case(
        "ConstantOfShape", {"s": ints(2, 3)}, attrs={"value": numpy_helper.from_array(np.array([1.5], np.float32))}
    ),
    "range": Case("Range", {"a": np.array(1, np.int64), "b": np.array(10, np.int64), "c": np.array(3, np.int64)}),
    "range_float": Case(
        "Range", {"a": np.array(0.5, np.float32), "b": np.array(2.0, np.float32), "c": np.array(0.25, np.float32)}
    ),
    "pad_constant": Case("Pad", {"x": X4}, {"p": ints(0, 0, 1, 2, 0, 0, 3, 0), "v": np.array(0.5, np.float32)}),
    "pad_reflect": Case("Pad", {"x": X4}, {"p": ints(0, 0, 1, 2, 0, 0, 2, 1)}, attrs={"mode": "reflect"}),
    "pad_edge": Case("Pad", {"x": X4}, {"p": ints(0, 0, 0, 2, 0, 0, 1, 1)}, attrs={"mode": "edge"}),
    "pad_negative": Case("Pad", {"x": X4}, {"p": ints(0, 0, -1, 0, 0, 0, 0, -2)}),
    "pad_opset2": Case("Pad", {"x": X4}, attrs={"pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 2.0}, opset=2),
    "trilu_upper": Case("Trilu", {"x": rand(4, 5)}, {"k": np.array(1, np.int64)}),
    "trilu_lower": Case("Trilu", {"x": rand(4, 5)}, attrs={"upper": 0}),
}

RESIZE_X = rand(1, 2, 4, 5)
NO_ROI = np.zeros(0, np.float32)


def _resize(mode, transform, scales=None, sizes=None, nearest="round_prefer_floor", opset=13):
    consts = {"roi": NO_ROI, "scales": np.array(scales or [], np.float32)}
    if sizes is not None:
        consts["sizes"] = ints(*sizes)
    attrs = {"mode": mode, "coordinate_transformation_mode": transform, "nearest_mode": nearest}
    return Case("Resize", {"x": RESIZE_X}, consts, attrs=attrs, opset=opset, inputs=["x", *consts])


RESIZE = {
    "nearest_paddle_asymmetric_floor": _resize("nearest", "asymmetric", [1, 1, 2, 2], nearest="floor"),
    "nearest_half_pixel_sizes": _resize("nearest", "half_pixel", sizes=[1, 2, 7, 9]),
    "nearest_align_corners_ceil": _resize("nearest", "align_corners", sizes=[1, 2, 7, 3], nearest="round_prefer_ceil"),
    "nearest_tf_half_pixel": _resize("nearest", "tf_half_pixel_for_nn", [1, 1, 1.5, 0.6], nearest="ceil"),
    "nearest_down_fraction": _resize("nearest", "asymmetric", [1, 1, 0.5, 0.6], nearest="floor"),
    "linear_half_pixel": _resize("linear", "half_pixel", [1, 1, 2, 2]),
    "linear_half_pixel_fraction": _resize("linear", "half_pixel", [1, 1, 1.5, 0.7]),
    "linear_align_corners": _resize("linear", "align_corners", sizes=[1, 2, 8, 11]),
    "linear_asymmetric": _resize("linear", "asymmetric", [1, 1, 2, 3]),
    "linear_pytorch_half_pixel": _resize("linear", "pytorch_half_pixel", sizes=[1, 2, 3, 1]),
    "resize_opset10": Case(
        "Resize", {"x": RESIZE_X}, {"s": np.array([1, 1, 2, 2], np.float32)}, attrs={"mode": "nearest"}, opset=10
    ),
    "sizes_at_runtime": Case(
        "Resize",
        {"x": RESIZE_X, "sizes": ints(1, 2, 6, 7)},
        {"roi": NO_ROI, "scales": NO_ROI},
        attrs={"mode": "linear"},
        inputs=["x", "roi", "scales", "sizes"],
    ),
    "upsample_opset7_nearest": Case("Upsample", {"x": RESIZE_X}, attrs={"scales": [1.0, 1.0, 2.0, 3.0]}, opset=7),
    "upsample_opset9_linear": Case(
        "Upsample", {"x": RESIZE_X}, {"s": np.array([1, 1, 2, 2], np.float32)}, attrs={"mode": "linear"}, opset=9
    ),
}

FAMILIES = {
    "elementwise": ELEMENTWISE,
    "activation": ACTIVATION,
    "norm": NORM,
    "conv": CONV,
    "matmul": MATMUL,
    "pool": POOL,
    "reduce": REDUCE,
    "shape": SHAPE,
    "tensor": TENSOR,
    "resize": RESIZE,
}
ALL = [pytest.param(case, id=f"{family}-{name}") for family, cases in FAMILIES.items() for name, case in cases.items()]


@pytest.mark.parametrize("case", ALL)
def test_op_matches_onnxruntime(case: Case):
    assert_matches_ort(case.model(), case.feeds)


def test_constant_node_values_are_used():
    shape = helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(ints(-1, 6)))
    scale = helper.make_node("Constant", [], ["k"], value_float=3.0)
    nodes = [shape, scale, helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Mul", ["r", "k"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert_matches_ort(model, {"x": rand(2, 3, 4)})
