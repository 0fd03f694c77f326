import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from autocompress.prune.groups import find_channel_groups
from tests.prune.prune_models import (
    ChannelShuffle,
    ConcatNet,
    DepthwiseNet,
    FlattenFC,
    Residual,
    SplitNet,
    SqueezeExcite,
    conv_bn,
    export,
)


def group_of(analysis, weight):
    return next(g for g in analysis.groups if weight in g.weights)


def members(group, tensor, role):
    return [m for m in group.members if m.tensor == tensor and m.role == role]


def test_residual_add_joins_both_branch_producers():
    analysis = find_channel_groups(export(Residual(), (1, 3, 16, 16)))
    trunk = group_of(analysis, "stem.0.weight")
    assert trunk.weights == ["body.1.weight", "stem.0.weight"]
    assert trunk.prunable and trunk.channels == 32
    assert members(trunk, "head.weight", "consumer") and members(trunk, "body.0.0.weight", "consumer")
    roles = {m.role for m in trunk.members}
    assert {"producer_bias", "norm_scale", "norm_bias", "norm_stat"} <= roles
    assert not group_of(analysis, "head.weight").prunable


def test_concat_maps_each_input_group_to_a_slice():
    analysis = find_channel_groups(export(ConcatNet(), (1, 3, 16, 16)))
    a, b = group_of(analysis, "a.0.weight"), group_of(analysis, "b.0.weight")
    assert a.id != b.id and a.prunable and b.prunable
    (ma,), (mb,) = members(a, "head.weight", "consumer"), members(b, "head.weight", "consumer")
    assert (ma.axis, ma.segment.offset, ma.segment.length) == (1, 0, 32)
    assert (mb.axis, mb.segment.offset, mb.segment.length) == (1, 32, 48)


def test_group_runs_through_depthwise_conv():
    analysis = find_channel_groups(export(DepthwiseNet(), (1, 3, 16, 16)))
    group = group_of(analysis, "expand.0.weight")
    assert members(group, "dw.0.weight", "depthwise") and members(group, "project.weight", "consumer")
    assert not any("dw.0.weight" in g.weights for g in analysis.groups)
    assert any(rw.kind == "depthwise_group" for rw in analysis.rewrites)


def test_squeeze_excite_joins_trunk_and_excitation():
    analysis = find_channel_groups(export(SqueezeExcite(), (1, 3, 16, 16)))
    trunk = group_of(analysis, "trunk.0.weight")
    assert trunk.weights == ["expand.weight", "trunk.0.weight"]
    assert members(trunk, "reduce.weight", "consumer") and members(trunk, "head.weight", "consumer")
    squeeze = group_of(analysis, "reduce.weight")
    assert squeeze.prunable and members(squeeze, "expand.weight", "consumer")


def test_flatten_expands_channels_into_fc_rows():
    analysis = find_channel_groups(export(FlattenFC(), (1, 3, 8, 8)))
    group = group_of(analysis, "features.0.0.weight")
    (fc,) = [m for m in group.members if m.role == "consumer"]
    assert fc.segment.expand == 16 and fc.segment.length == 32  # 32 channels x 4x4 positions


def test_split_along_channels_keeps_one_group_with_offsets():
    analysis = find_channel_groups(export(SplitNet(), (1, 3, 16, 16)))
    group = group_of(analysis, "stem.0.weight")
    (left,), (right,) = members(group, "left.weight", "consumer"), members(group, "right.weight", "consumer")
    assert (left.segment.start, left.segment.offset) == (0, 0)
    assert (right.segment.start, right.segment.offset) == (32, 0)


def test_channel_shuffle_reshape_is_unprunable_with_reason():
    analysis = find_channel_groups(export(ChannelShuffle(), (1, 3, 16, 16)))
    group = group_of(analysis, "stem.0.weight")
    assert not group.prunable and "Reshape" in group.reason


def _conv_then(op_type: str, **attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node(op_type, ["c1"], ["u"], **attrs),
        helper.make_node("Conv", ["u", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_unknown_op_marks_group_unprunable_instead_of_failing():
    analysis = find_channel_groups(_conv_then("LpNormalization", axis=1))
    group = group_of(analysis, "w1")
    assert not group.prunable
    assert "LpNormalization" in group.reason


def test_softmax_across_channels_is_unprunable():
    analysis = find_channel_groups(_conv_then("Softmax", axis=1))
    assert "Softmax" in group_of(analysis, "w1").reason


def test_constant_node_weights_are_understood():
    model = export(conv_bn(3, 16), (1, 3, 8, 8))
    lifted = onnx.ModelProto()
    lifted.CopyFrom(model)
    constants = [helper.make_node("Constant", [], [t.name], value=t) for t in lifted.graph.initializer]
    del lifted.graph.initializer[:]
    nodes = constants + list(lifted.graph.node)
    del lifted.graph.node[:]
    lifted.graph.node.extend(nodes)
    for original, from_constants in [(find_channel_groups(model), find_channel_groups(lifted))]:
        assert [sorted(m.tensor for m in g.members if m.role != "activation") for g in original.groups] == [
            sorted(m.tensor for m in g.members if m.role != "activation") for g in from_constants.groups
        ]


def test_bias_reshaped_at_run_time_is_folded_into_a_channel_constant():
    """Paddle exports add biases as Reshape(bias, [1, C, 1, 1]); the analysis folds that into a constant."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
        numpy_helper.from_array(np.array([1, 16, 1, 1], np.int64), "bias_shape"),
        numpy_helper.from_array(rng.standard_normal((4, 16, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["b1", "bias_shape"], ["b1_4d"]),
        helper.make_node("Add", ["c1", "b1_4d"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    analysis = find_channel_groups(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    group = group_of(analysis, "w1")
    assert group.prunable and members(group, "b1_4d", "channel_constant")


def test_custom_domain_op_is_unprunable():
    model = _conv_then("Relu")
    model.graph.node[1].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    assert "com.example" in group_of(find_channel_groups(model), "w1").reason


def _conv_reduce(op_type: str) -> onnx.ModelProto:
    """Conv -> Reduce* over the channel axis (opset 13 takes axes as an attribute, except ReduceSum)."""
    w1 = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    reduce = (
        helper.make_node(op_type, ["c1", "axes"], ["y"])
        if op_type == "ReduceSum"
        else helper.make_node(op_type, ["c1"], ["y"], axes=[1])
    )
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), reduce],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 8, 8])],
        [w1, axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceL2", "ReduceSumSquare"])
def test_sum_over_channels_keeps_the_group_prunable(op_type):
    assert group_of(find_channel_groups(_conv_reduce(op_type)), "w1").prunable


@pytest.mark.parametrize("op_type", ["ReduceMean", "ReduceMax", "ReduceProd", "ReduceLogSumExp"])
def test_other_reductions_over_channels_make_the_group_unprunable(op_type):
    group = group_of(find_channel_groups(_conv_reduce(op_type)), "w1")
    assert not group.prunable and f"{op_type} reduces across channels" in group.reason


def test_lrn_normalises_across_channels():
    assert "LRN normalises across channels" in group_of(find_channel_groups(_conv_then("LRN", size=3)), "w1").reason
