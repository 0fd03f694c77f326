import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.compensate import Moments
from autocompress.prune.criteria import bn_scale, channel_scores, geometry_median, l1_norm, output_error
from autocompress.prune.groups import find_channel_groups


def conv_bn_relu_conv(weight: np.ndarray, gamma: np.ndarray, extra_producer: np.ndarray | None = None):
    """x -> Conv(weight) -> BN(gamma) [-> + Conv(extra_producer)] -> Relu -> Conv -> y"""
    c = weight.shape[0]
    inits = [
        numpy_helper.from_array(weight.astype(np.float32), "w"),
        numpy_helper.from_array(gamma.astype(np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(c, np.float32), "beta"),
        numpy_helper.from_array(np.zeros(c, np.float32), "mean"),
        numpy_helper.from_array(np.ones(c, np.float32), "var"),
        numpy_helper.from_array(np.ones((2, c, 1, 1), np.float32), "w_next"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"]),
    ]
    trunk = "b"
    if extra_producer is not None:
        inits.append(numpy_helper.from_array(extra_producer.astype(np.float32), "w2"))
        nodes += [helper.make_node("Conv", ["x", "w2"], ["c2"]), helper.make_node("Add", ["b", "c2"], ["s"])]
        trunk = "s"
    nodes += [helper.make_node("Relu", [trunk], ["r"]), helper.make_node("Conv", ["r", "w_next"], ["y"])]
    cin = weight.shape[1]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, cin, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    analysis = find_channel_groups(model)
    group = next(g for g in analysis.groups if "w" in g.weights)
    return group, GraphIndex(analysis.model)


def test_l1_norm_ranks_by_absolute_weight_sum():
    weight = np.array([[1.0, -1.0], [-3.0, 0.5], [0.1, 0.1]]).reshape(3, 2, 1, 1)
    group, index = conv_bn_relu_conv(weight, np.ones(3))
    np.testing.assert_allclose(l1_norm(group, index), [2.0, 3.5, 0.2])


def test_l1_norm_sums_producers_of_a_residual_group():
    w1 = np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1, 1)
    w2 = np.array([5.0, -1.0, 0.0]).reshape(3, 1, 1, 1)
    group, index = conv_bn_relu_conv(w1, np.ones(3), extra_producer=w2)
    assert group.weights == ["w", "w2"]
    np.testing.assert_allclose(l1_norm(group, index), [6.0, 3.0, 3.0])


def test_bn_scale_uses_absolute_gamma_not_weights():
    weight = np.ones((3, 1, 1, 1))
    group, index = conv_bn_relu_conv(weight, np.array([0.5, -2.0, 0.1]))
    assert np.argsort(bn_scale(group, index)).tolist() == [2, 0, 1]


def test_geometry_median_finds_the_filter_closest_to_the_others():
    # filters 0, 1 and 10 on a line: 1 is the median (distance sum 10), 0 has 11, 10 has 19
    weight = np.array([0.0, 1.0, 10.0]).reshape(3, 1, 1, 1)
    group, index = conv_bn_relu_conv(weight, np.ones(3))
    np.testing.assert_allclose(geometry_median(group, index), [11.0, 10.0, 19.0])
    # l1 would drop filter 0 first; FPGM drops the replaceable median filter 1
    assert np.argmin(l1_norm(group, index)) == 0 and np.argmin(geometry_median(group, index)) == 1


def test_unknown_criterion():
    group, index = conv_bn_relu_conv(np.ones((3, 1, 1, 1)), np.ones(3))
    with pytest.raises(ConfigError, match="geometry_median"):
        channel_scores(group, index, "taylor")


def test_output_error_weighs_consumer_energy_by_activation_variance():
    # channel 1 has the largest filter but a constant output (variance 0): removing it and compensating its mean
    # changes nothing, so output_error ranks it last while l1_norm ranks it first
    weight = np.array([1.0, 9.0, 2.0]).reshape(3, 1, 1, 1)
    group, index = conv_bn_relu_conv(weight, np.ones(3))
    moments = {"r": Moments(mean=np.array([0.0, 4.0, 1.0]), var=np.array([0.5, 0.0, 3.0]))}
    # consumer w_next is all ones with 2 outputs: ||W[:, c]||^2 = 2
    np.testing.assert_allclose(output_error(group, index, moments), [1.0, 0.0, 6.0])
    assert (
        np.argmax(l1_norm(group, index)) == 1 and np.argmin(channel_scores(group, index, "output_error", moments)) == 1
    )


def test_output_error_needs_activation_statistics():
    group, index = conv_bn_relu_conv(np.ones((3, 1, 1, 1)), np.ones(3))
    with pytest.raises(ConfigError, match="calibration data"):
        channel_scores(group, index, "output_error")
