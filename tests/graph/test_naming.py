"""One naming of nodes: stable unique names at load, original and folded-in names kept as aliases."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn

from autocompress import AutoCompression
from autocompress.distill.nodes import parse_terms
from autocompress.errors import ConfigError
from autocompress.graph.index import attribute
from autocompress.graph.naming import aliases, name_nodes, name_table, stable_names
from autocompress.graph.prepare import prepare_model, simplify
from autocompress.quant.fold import fold_conv_affine
from autocompress.quant.qdq import QDQOptions, check_skip_names, plan_quantization
from autocompress.runtime.torch_graph import TorchGraph
from tests.graph.test_prepare import _conv_bn_model


def _chain(names: list[str]) -> onnx.ModelProto:
    """x -> Relu -> Neg -> Relu -> y, with the given node names ("" for none)."""
    ops, tensors = ["Relu", "Neg", "Relu"], ["x", "a", "b", "y"]
    nodes = [
        helper.make_node(op, [tensors[i]], [tensors[i + 1]], name=name) for i, (op, name) in enumerate(zip(ops, names))
    ]
    value = lambda name: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [2])  # noqa: E731
    graph = helper.make_graph(nodes, "chain", [value("x")], [value("y")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_unnamed_and_duplicated_nodes_get_stable_unique_names_and_keep_the_user_names():
    model = name_nodes(_chain(["dup", "", "dup"]))
    names = [n.name for n in model.graph.node]
    assert names == ["dup_1", "Neg_b", "dup"]
    assert [aliases(n) for n in model.graph.node] == [["dup"], [], []]
    assert name_table(model)["dup"] == ["dup_1", "dup"]  # the user's "dup" meant both nodes
    assert stable_names(model.graph.node) == names  # naming is idempotent


def test_a_fallback_name_does_not_move_when_other_nodes_go():
    model = _chain(["", "", ""])
    before = stable_names(model.graph.node)
    del model.graph.node[0]
    assert stable_names(model.graph.node) == before[1:]


def _paddle_conv_bn() -> onnx.ModelProto:
    """The Conv+BN model with paddle2onnx's node names."""
    model = _conv_bn_model(head=True)
    for node, name in zip(model.graph.node, ["p2o.Conv.0", "p2o.BatchNormalization.0", "p2o.Relu.0", "p2o.Conv.1"]):
        node.name = name
    return model


def test_batch_norm_folding_keeps_the_conv_name_and_the_bn_name_finds_it():
    folded = simplify(prepare_model(_paddle_conv_bn()), fold_batch_norm=True)
    assert [(n.name, n.op_type) for n in folded.graph.node] == [
        ("p2o.Conv.0", "Conv"),
        ("p2o.Relu.0", "Relu"),
        ("p2o.Conv.1", "Conv"),
    ]
    assert name_table(folded)["p2o.BatchNormalization.0"] == ["p2o.Conv.0"]
    check_skip_names(folded, ["p2o.Conv.0", "p2o.BatchNormalization.0"])
    with pytest.raises(ConfigError, match=r"names \['p2o.Conv.7'\]"):
        check_skip_names(folded, ["p2o.Conv.7"])


def test_skip_list_names_from_before_folding_leave_those_nodes_float():
    model = name_nodes(_paddle_conv_bn())
    folded, _ = fold_conv_affine(simplify(model, fold_batch_norm=True))
    options = QDQOptions(skip_names=("p2o.BatchNormalization.0",), float_stem=False)
    plan = plan_quantization(folded, options)
    assert plan.skipped_nodes == ["p2o.Conv.0"]
    assert [p.node.name for p in plan.nodes if p.weight] == ["p2o.Conv.1"]


def test_conv_affine_folding_records_the_folded_nodes():
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.random((1, 4, 1, 1)).astype(np.float32) + 0.5, "gamma"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Mul", ["c", "gamma"], ["y"], name="scale"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 4, 4])],
        inits,
    )
    folded, removed = fold_conv_affine(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert removed == 1 and [(n.name, aliases(n)) for n in folded.graph.node] == [("conv", ["scale"])]
    # the folded model's executor and distillation find the conv by either name
    assert TorchGraph(folded)._node_by_name["scale"] == 0
    terms = parse_terms(["scale"], "l2", 1.0, folded, folded)
    assert terms[0].teacher_nodes == terms[0].student_nodes == ("y",)


def _block(cin: int, cout: int, groups: int) -> list[nn.Module]:
    """A 3x3 depthwise (groups > 1) or 1x1 pointwise Conv, BatchNorm, ReLU."""
    kernel = 3 if groups > 1 else 1
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups), nn.BatchNorm2d(cout), nn.ReLU()]


class MobileNet(nn.Module):
    """Conv+BN+ReLU blocks with depthwise convs, as in a mobile CNN."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            *_block(8, 8, 8),
            *_block(8, 16, 1),
            *_block(16, 16, 16),
            nn.Conv2d(16, 4, 1),
        )

    def forward(self, x):
        return self.body(x)


def _export_mobile(path, name) -> None:
    """BN kept as its own node (as in a training-mode export), node names replaced by name(i) ("" for none)."""
    torch.onnx.export(
        MobileNet().eval(),
        torch.randn(1, 3, 16, 16),
        str(path),
        input_names=["x"],
        opset_version=13,
        dynamo=False,
        do_constant_folding=False,
    )
    model = onnx.load(str(path))
    assert "BatchNormalization" in {n.op_type for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        node.name = name(i, node)
    onnx.save(model, str(path))


@pytest.mark.parametrize("name", [lambda i, n: "", lambda i, n: f"p2o.{n.op_type}.{i}"], ids=["unnamed", "p2o"])
def test_auto_quantizes_a_mobile_cnn_whose_nodes_change_under_batch_norm_folding(tmp_path, name):
    """Auto's per-op plan names the ops of the model QuantPost folds BN into (stable names survive the folding):
    every plan runs to a verdict, none fails on a name."""
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    _export_mobile(model_dir / "m.onnx", name)
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(2)]
    result = AutoCompression(
        model_dir,
        data,
        save_dir=tmp_path / "o",
        eval_dataloader=data,
        config={"TrainConfig": {"train_iter": 2, "eval_iter": 2}},
    ).compress()
    tried = {c["params"]["variant"]: c for c in result.report["candidates"] if c["params"].get("variant")}
    assert "int8 (mixed precision)" in tried
    assert not any((c.get("reason") or "").startswith("failed") for c in tried.values()), tried


def test_quant_post_leaves_the_named_depthwise_convs_of_the_unfolded_model_float(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    _export_mobile(model_dir / "m.onnx", lambda i, n: "")
    prepared = prepare_model(onnx.load(str(model_dir / "m.onnx")))
    depthwise = [n.name for n in prepared.graph.node if n.op_type == "Conv" and attribute(n, "group", 1) > 1]
    assert len(depthwise) == 2
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(2)]
    result = AutoCompression(
        model_dir,
        data,
        save_dir=tmp_path / "o",
        eval_callback=lambda predictor: 1.0,
        config={"QuantPost": {"batch_nums": 2, "float_stem": False, "skip_tensor_list": depthwise}},
    ).compress()
    quantized = onnx.load(str(result.model_path))
    floats = {t.name for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    float_convs = sorted(n.name for n in quantized.graph.node if n.op_type == "Conv" and n.input[1] in floats)
    assert float_convs == sorted(depthwise)
