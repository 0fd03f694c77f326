"""TorchGraph behaviour: training and write-back, parameters, transforms, capture, errors."""

from __future__ import annotations

import copy
import weakref

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from autocompress.errors import ConfigError, DataError, UnsupportedOpError
from autocompress.runtime.torch_graph import TorchGraph

from ..conftest import TinyCNN, constant_weight_model
from .onnx_cases import rand, run_ort


def tiny_cnn_with_batchnorm(tmp_path) -> onnx.ModelProto:
    """TinyCNN exported without constant folding, so BatchNormalization nodes stay in the graph."""
    torch.manual_seed(0)
    path = tmp_path / "tiny_bn.onnx"
    torch.onnx.export(
        TinyCNN().eval(),
        torch.randn(1, 3, 16, 16),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        opset_version=13,
        dynamo=False,
        do_constant_folding=False,
    )
    model = onnx.load(path)
    assert any(n.op_type == "BatchNormalization" for n in model.graph.node)
    return model


def graph_of(nodes, inputs, outputs=("y",), initializers=(), opset=13) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [onnx.ValueInfoProto(name=o) for o in outputs],
        list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_training_then_write_back_matches_onnxruntime(tmp_path):
    model = tiny_cnn_with_batchnorm(tmp_path)
    snapshot = model.SerializeToString()
    graph = TorchGraph(model).train()
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    mean_before = graph.parameter(bn.input[3]).clone()
    optimizer = torch.optim.SGD(graph.parameters(), lr=0.1, momentum=0.9)
    rng = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.randn(8, 3, 16, 16, generator=rng) * 2 + 0.5
        loss = torch.nn.functional.cross_entropy(graph({"x": x})["logits"], torch.arange(8))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(graph.parameter(bn.input[3]), mean_before), "train mode must update running stats"

    trained = graph.write_back(model)
    assert trained is not model
    x = rand(2, 3, 16, 16, seed=7)
    with torch.no_grad():
        expected = graph.eval()({"x": torch.from_numpy(x)})["logits"].numpy()
    np.testing.assert_allclose(run_ort(trained, {"x": x})[0], expected, atol=1e-5)
    assert model.SerializeToString() == snapshot, "the input model is never modified"


def test_batchnorm_running_stats_follow_onnx_momentum():
    stats = {
        n: numpy_helper.from_array(v, n)
        for n, v in {
            "s": np.ones(2, np.float32),
            "b": np.zeros(2, np.float32),
            "m": np.zeros(2, np.float32),
            "v": np.ones(2, np.float32),
        }.items()
    }
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], momentum=0.8)
    graph = TorchGraph(graph_of([node], [("x", [4, 2, 3, 3])], initializers=stats.values())).train()
    x = torch.randn(4, 2, 3, 3)
    graph({"x": x})
    expected = 0.8 * 0 + 0.2 * x.mean(dim=(0, 2, 3))
    torch.testing.assert_close(graph.parameter("m"), expected)


def test_gradients_reach_every_parameter(tmp_path):
    graph = TorchGraph(tiny_cnn_with_batchnorm(tmp_path)).train()
    graph({"x": torch.randn(4, 3, 16, 16)})["logits"].square().sum().backward()
    names = graph.parameter_names()
    assert names, "weights must be trainable"
    for name in names:
        grad = graph.parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_constant_roles():
    consts = {
        "w": rand(4, 3, 3, 3),
        "shape": np.array([0, -1], np.int64),
        "six": np.array([6.0], np.float32),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(6.0, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"]),
        helper.make_node("Div", ["r", "six"], ["d"]),
        helper.make_node("Reshape", ["d", "shape"], ["y"]),
    ]
    init = [numpy_helper.from_array(v, n) for n, v in consts.items()]
    graph = TorchGraph(graph_of(nodes, [("x", [1, 3, 5, 5])], initializers=init))
    assert graph.parameter_names() == ["w"]
    assert isinstance(graph.parameter("w"), torch.nn.Parameter)
    for name in ("shape", "six", "lo", "hi"):
        assert not isinstance(graph.parameter(name), torch.nn.Parameter), name
        np.testing.assert_array_equal(graph.parameter(name).numpy(), consts[name])
    with pytest.raises(ConfigError, match="nope"):
        graph.parameter("nope")
    assert graph.input_names == ["x"] and graph.output_names == ["y"]


def test_weights_in_constant_nodes_train_and_write_back():
    model = constant_weight_model()
    graph = TorchGraph(model)
    assert graph.parameter_names() == ["conv_w"]
    with torch.no_grad():
        graph.parameter("conv_w").mul_(-1)
    x = rand(1, 3, 6, 6)
    with torch.no_grad():
        expected = graph({"x": torch.from_numpy(x)})["out"].numpy()
    np.testing.assert_allclose(run_ort(graph.write_back(model), {"x": x})[0], expected, atol=1e-6)


class ChannelMask(torch.nn.Module):
    def __init__(self, keep: torch.Tensor):
        super().__init__()
        self.register_buffer("keep", keep)

    def forward(self, w):
        return w * self.keep.view(-1, *[1] * (w.dim() - 1))


def test_input_transform_masks_weights_exactly():
    model = constant_weight_model()
    graph = TorchGraph(model).eval()
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv_name = graph.node_names[list(model.graph.node).index(conv)]
    x = torch.from_numpy(rand(2, 3, 6, 6))
    before = graph({"x": x})["out"].detach()

    keep = torch.tensor([1.0, 0.0, 1.0, 0.0])
    graph.set_input_transform(conv_name, 1, ChannelMask(keep))
    masked = graph({"x": x})["out"].detach()
    assert torch.all(masked[:, [1, 3]] == 0)
    torch.testing.assert_close(masked[:, [0, 2]], before[:, [0, 2]])
    assert "keep" in "".join(graph.state_dict()), "transforms are saved with the graph"

    graph.set_input_transform(conv_name, 1, None)
    torch.testing.assert_close(graph({"x": x})["out"], before)
    with pytest.raises(ConfigError, match="no node named"):
        graph.set_input_transform("missing", 0, None)


class Scale(torch.nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, value):
        return value * self.factor


def test_input_transform_on_static_value_rebuilds_plan():
    # The Mul with a constant is folded at construction; a transform on it must still take effect.
    init = [
        numpy_helper.from_array(np.array([2.0, 3.0], np.float32), "k"),
        numpy_helper.from_array(np.array([1.0, 1.0], np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Mul", ["k", "one"], ["k2"], name="fold_me"),
        helper.make_node("Add", ["x", "k2"], ["y"], name="add"),
    ]
    graph = TorchGraph(graph_of(nodes, [("x", [2])], initializers=init))
    x = torch.zeros(2)
    torch.testing.assert_close(graph({"x": x})["y"], torch.tensor([2.0, 3.0]))
    graph.set_input_transform("fold_me", 1, Scale(10.0))
    torch.testing.assert_close(graph({"x": x})["y"], torch.tensor([20.0, 30.0]))
    graph.set_input_transform("add", 0, Scale(0.0))
    torch.testing.assert_close(graph({"x": torch.ones(2)})["y"], torch.tensor([20.0, 30.0]))


def test_capture_returns_intermediates_by_onnx_name():
    nodes = [helper.make_node("Relu", ["x"], ["mid/relu:0"]), helper.make_node("Neg", ["mid/relu:0"], ["y"])]
    graph = TorchGraph(graph_of(nodes, [("x", [3])]))
    out = graph({"x": torch.tensor([-1.0, 0.5, 2.0])}, capture=["mid/relu:0", "x"])
    torch.testing.assert_close(out["mid/relu:0"], torch.tensor([0.0, 0.5, 2.0]))
    torch.testing.assert_close(out["y"], torch.tensor([-0.0, -0.5, -2.0]))
    torch.testing.assert_close(out["x"], torch.tensor([-1.0, 0.5, 2.0]))
    with pytest.raises(ConfigError, match="no_such"):
        graph({"x": torch.zeros(3)}, capture=["no_such"])
    with pytest.raises(DataError, match="missing model input 'x'"):
        graph({})


class Probe(torch.nn.Module):
    """Identity that remembers a weak reference to what it saw."""

    def __init__(self):
        super().__init__()
        self.seen: list[weakref.ref] = []

    def forward(self, value):
        self.seen.append(weakref.ref(value))
        return value


def test_intermediates_are_freed_after_their_last_reader():
    nodes = [
        helper.make_node("Relu", [i], [o], name=f"n{k}")
        for k, (i, o) in enumerate([("x", "a"), ("a", "b"), ("b", "y")])
    ]
    graph = TorchGraph(graph_of(nodes, [("x", [4])]))
    first, last = Probe(), Probe()
    graph.set_input_transform("n1", 0, first)  # sees "a"
    graph.set_input_transform("n2", 0, last)  # runs when "a" has no reader left
    checked = []
    original = last.forward
    last.forward = lambda v: (checked.append(first.seen[0]() is None), original(v))[1]
    with torch.no_grad():
        graph({"x": torch.randn(4)})
    assert checked == [True]


def test_unsupported_op_fails_at_construction_naming_op_and_node():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("NonMaxSuppression", ["r", "x"], ["y"], name="nms_1"),
    ]
    with pytest.raises(UnsupportedOpError, match="NonMaxSuppression.*nms_1"):
        TorchGraph(graph_of(nodes, [("x", [1, 4, 4])]))
    custom = helper.make_node("FusedConv", ["x"], ["y"], domain="com.microsoft")
    with pytest.raises(UnsupportedOpError, match="FusedConv.*com.microsoft"):
        TorchGraph(graph_of([custom], [("x", [1])]))


def test_unnamed_nodes_get_stable_names_and_deepcopy_works():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["y"], name="neg")]
    graph = TorchGraph(graph_of(nodes, [("x", [2])]))
    assert graph.node_names == ["Relu_a", "neg"]  # graph/naming.py: op type and first output
    clone = copy.deepcopy(graph)
    clone.set_input_transform("Relu_a", 0, Scale(-1.0))
    x = torch.tensor([1.0, -2.0])
    torch.testing.assert_close(graph({"x": x})["y"], torch.tensor([-1.0, -0.0]))
    torch.testing.assert_close(clone({"x": x})["y"], torch.tensor([-0.0, -2.0]))
