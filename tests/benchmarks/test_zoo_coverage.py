"""The coverage table reads what a raw file really holds: names, control flow, and declared shapes that lie."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from benchmarks.zoo import coverage
from benchmarks.zoo.spec import EvalSet, ZooModel


def _branch(name: str, value: float, node_name: str) -> onnx.GraphProto:
    constant = helper.make_node(
        "Constant", [], [f"{name}_out"], name=node_name, value=helper.make_tensor("v", TensorProto.FLOAT, [1], [value])
    )
    return helper.make_graph(
        [constant], name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1])]
    )


def _tiny_file(work: Path) -> Path:
    """x [batch, 4] -> y = x + 1 (declared [batch, 3], really [batch, 4]); two unnamed nodes, one name used twice (ONNX Runtime
    refuses a name twice in one graph, not across a graph and its If branch), an If."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("Add", ["x", "one"], ["y"], name="same"),
        helper.make_node("ReduceSum", ["x"], ["total"], name="sum", keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node(
            "If",
            ["positive"],
            ["flag"],
            name="branch",
            then_branch=_branch("a", 1.0, "same"),
            else_branch=_branch("b", 0.0, ""),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("flag", TensorProto.FLOAT, [1]),
        ],
        [one, helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    path = work / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_coverage_row_names_the_problems_of_a_file(tmp_path):
    feed = {"x": np.ones((2, 4), np.float32)}
    model = ZooModel(
        name="tiny",
        family="test",
        requirement="none",
        metric="none",
        onnx_file=_tiny_file,
        calibration=lambda n: [feed] * n,
        evaluation=lambda n: EvalSet([feed] * n),
        score=lambda outputs, fp32, labels: 1.0,
    )
    row = coverage.coverage(model, tmp_path)
    assert row.opset == "13"
    assert row.inputs == "x float32 [batch, 4]"
    assert row.batch_axis == "0 (batch)"
    assert row.node_names == "2 / 1 of 6"  # Greater and the else branch's Constant are unnamed
    assert row.outputs == "y: [batch, 3] vs [2, 4]"
    assert row.control_flow == "If x1"
    table = coverage.table([row])
    assert table.splitlines()[2].startswith("| tiny | test | 13 |")
