import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autocompress.quant.fold import fold_conv_affine
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.statistics import collect_statistics

from .conftest import cosine, run

RNG = np.random.default_rng(0)


def _affine_model(scale_shape=(), offset_shape=(1, 4, 1, 1), with_bias=True, extra_reader=False):
    """x -> Conv -> Mul(constant first) -> Add -> Relu -> Conv, optionally with a second reader of the Conv."""
    initializers = [
        numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "B"),
        numpy_helper.from_array(RNG.uniform(0.5, 2, scale_shape).astype(np.float32), "s"),
        numpy_helper.from_array(RNG.standard_normal(offset_shape).astype(np.float32), "b"),
        numpy_helper.from_array(RNG.standard_normal((2, 4, 1, 1)).astype(np.float32), "W2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"] if with_bias else ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["s", "c"], ["m"], name="scale"),
        helper.make_node("Add", ["m", "b"], ["a"], name="offset"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "W2"], ["y"], name="head"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["c"], ["c_relu"], name="reader"))
        outputs.append(helper.make_tensor_value_info("c_relu", TensorProto.FLOAT, [1, 4, 8, 8]))
    graph = helper.make_graph(
        nodes, "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])], outputs, initializers
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _feed(seed=1):
    return {"x": np.random.default_rng(seed).standard_normal((1, 3, 8, 8)).astype(np.float32)}


@pytest.mark.parametrize("with_bias", [True, False])
def test_scale_and_offset_fold_into_the_conv(with_bias):
    model = _affine_model(with_bias=with_bias)
    folded, count = fold_conv_affine(model)
    onnx.checker.check_model(folded, full_check=True)
    assert count == 2 and [n.op_type for n in folded.graph.node] == ["Conv", "Relu", "Conv"]
    assert folded.graph.node[0].output[0] == "a"  # the offset's output name survives
    np.testing.assert_allclose(run(folded, _feed()), run(model, _feed()), rtol=1e-5, atol=1e-5)
    assert [n.op_type for n in model.graph.node].count("Mul") == 1  # the input model is untouched


@pytest.mark.parametrize(
    "kwargs, folded_types",
    [
        ({"offset_shape": (1, 1, 8, 8)}, ["Conv", "Add", "Relu", "Conv"]),  # per pixel: only the scale folds
        ({"scale_shape": (1, 1, 1, 8)}, ["Conv", "Mul", "Add", "Relu", "Conv"]),
        ({"extra_reader": True}, ["Conv", "Mul", "Add", "Relu", "Conv", "Relu"]),  # the Conv output is read twice
    ],
)
def test_per_pixel_constants_and_shared_outputs_are_left_alone(kwargs, folded_types):
    model = _affine_model(**kwargs)
    folded, _ = fold_conv_affine(model)
    assert [n.op_type for n in folded.graph.node] == folded_types
    np.testing.assert_allclose(run(folded, _feed()), run(model, _feed()), rtol=1e-5, atol=1e-5)


def test_ptq_quantizes_the_folded_model_with_statistics_of_the_original():
    model = _affine_model()
    batches = [_feed(seed) for seed in range(3)]
    tensors = calibration_tensors(model)
    assert "c" not in tensors and "r" in tensors
    statistics = collect_statistics(model, batches, tensors)
    quantized, info = quantize_post_training(model, statistics, algo="abs_max")
    assert info.quantized_op_counts == {"Conv": 2}
    assert not {"Mul", "Add"} & {n.op_type for n in quantized.graph.node}
    assert cosine(run(quantized, _feed(9)), run(model, _feed(9))) > 0.99


def test_consecutive_constant_scales_merge_into_one_mul():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Div", ["r", "six"], ["d"], name="div"),
        helper.make_node("Mul", ["a", "d"], ["y"], name="mul"),
    ]
    graph = helper.make_graph(
        nodes,
        "scales",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            numpy_helper.from_array(np.array(6.0, np.float32), "six"),
            numpy_helper.from_array(RNG.standard_normal((1, 3, 1, 1)).astype(np.float32), "a"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    folded, count = fold_conv_affine(model)
    assert count == 1 and [n.op_type for n in folded.graph.node] == ["Relu", "Mul"]
    assert folded.graph.node[-1].output[0] == "y"
    np.testing.assert_allclose(run(folded, _feed()), run(model, _feed()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "op, constant, group",
    [
        ("Div", np.array(6.0, np.float32), 1),
        ("Mul", RNG.uniform(0.5, 2, (1, 4, 1, 1)).astype(np.float32), 2),  # per input channel, grouped conv
        ("Mul", RNG.uniform(0.5, 2, (1, 4, 1, 1)).astype(np.float32), 4),  # depthwise
    ],
)
def test_a_scale_before_a_padded_conv_folds_into_its_weight(op, constant, group):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node(op, ["r", "k"], ["s"], name="scale"),
        helper.make_node("Conv", ["s", "W"], ["y"], name="conv", pads=[1, 1, 1, 1], group=group),
    ]
    graph = helper.make_graph(
        nodes,
        "scale_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [
            numpy_helper.from_array(constant, "k"),
            numpy_helper.from_array(RNG.standard_normal((4, 4 // group, 3, 3)).astype(np.float32), "W"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    folded, count = fold_conv_affine(model)
    assert count == 1 and [n.op_type for n in folded.graph.node] == ["Relu", "Conv"]
    feed = {"x": np.random.default_rng(3).standard_normal((1, 4, 8, 8)).astype(np.float32)}
    np.testing.assert_allclose(run(folded, feed), run(model, feed), rtol=1e-5, atol=1e-5)


def test_tensors_named_by_the_user_are_kept():
    model = _affine_model()
    folded, count = fold_conv_affine(model, keep=["c"])
    assert count == 0 and "c" in {o for n in folded.graph.node for o in n.output}


def test_a_model_with_no_foldable_pair_is_returned_uncopied():
    """A copy of a model over 2 GB costs its size: it is made only when some pair of ops can fold."""

    def conv_relu_mul(conv_then_mul: bool) -> onnx.ModelProto:
        first, second = ("c", "m") if conv_then_mul else ("r", "c")
        nodes = [
            helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
            helper.make_node("Mul", [first, "s"], ["m" if conv_then_mul else "y"], name="mul"),
            helper.make_node("Relu", [second], ["y" if conv_then_mul else "r"], name="relu"),
        ]
        if not conv_then_mul:
            nodes = [nodes[0], nodes[2], nodes[1]]
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [
                numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
                numpy_helper.from_array(np.float32(2.0), "s"),
            ],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)

    unfoldable = conv_relu_mul(conv_then_mul=False)  # Conv -> Relu -> Mul
    folded, removed = fold_conv_affine(unfoldable)
    assert folded is unfoldable and removed == 0
    foldable = conv_relu_mul(conv_then_mul=True)  # Conv -> Mul -> Relu: the Mul goes into the Conv, in a copy
    folded, removed = fold_conv_affine(foldable)
    assert folded is not foldable and removed == 1
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Relu"]
    assert [n.op_type for n in foldable.graph.node] == ["Conv", "Mul", "Relu"]
