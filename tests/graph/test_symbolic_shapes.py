"""The adapter over ORT's symbolic shape inference: its result where the installed ORT has what it relies on, onnx's
inference (and a log line) where it does not, and never a file in the working directory."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from autocompress.graph import symbolic_shapes
from autocompress.prune.prepare import static_shapes


@pytest.fixture(autouse=True)
def _fresh_support_check():
    """The support check is cached per process; each test sees the onnxruntime it patched."""
    symbolic_shapes.unsupported_reason.cache_clear()
    yield
    symbolic_shapes.unsupported_reason.cache_clear()


def _dynamic_batch_flatten() -> onnx.ModelProto:
    """Conv, then Shape -> Gather -> Concat -> Reshape over a dynamic batch: only ORT's inference finds y's rank."""
    inits = [
        numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([0], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch_1d"]),
        helper.make_node("Concat", ["batch_1d", "minus_one"], ["new_shape"], axis=0),
        helper.make_node("Reshape", ["c", "new_shape"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_symbolic_inference_gives_the_symbolic_batch_and_the_flattened_rank(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _dynamic_batch_flatten()
    inferred = symbolic_shapes.inferred_shapes(model)
    y = next(v for v in inferred.graph.output if v.name == "y").type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in y] == ["n", 512]
    assert static_shapes(inferred)["c"] == [None, 8, 8, 8]
    assert not static_shapes(onnx.shape_inference.infer_shapes(model, data_prop=True)).get("y")  # onnx cannot
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("member", symbolic_shapes.REQUIRED_METHODS)
def test_a_missing_private_method_falls_back_to_onnx_inference_with_a_log_line(member, monkeypatch, caplog):
    monkeypatch.delattr(symbolic_shapes.SymbolicShapeInference, member)
    with caplog.at_level(logging.WARNING, logger=symbolic_shapes.__name__):
        inferred = symbolic_shapes.inferred_shapes(_dynamic_batch_flatten())
        symbolic_shapes.inferred_shapes(_dynamic_batch_flatten())
    logged = [r.getMessage() for r in caplog.records if r.name == symbolic_shapes.__name__]
    assert len(logged) == 1 and member in logged[0] and "onnx's shape inference is used" in logged[0]  # once
    shapes = static_shapes(inferred)
    assert shapes["c"] == [None, 8, 8, 8] and not shapes.get("y")  # onnx's result: y stays rank-less


def test_missing_state_after_preprocess_falls_back(monkeypatch, caplog):
    def preprocess_without_output(self, model):  # an ORT whose _preprocess keeps its result elsewhere
        self.run_ = True

    monkeypatch.setattr(symbolic_shapes.SymbolicShapeInference, "_preprocess", preprocess_without_output)
    with caplog.at_level(logging.WARNING, logger=symbolic_shapes.__name__):
        assert symbolic_shapes.symbolic_inferred(_dynamic_batch_flatten()) is None
    assert "out_mp_" in caplog.text
    assert static_shapes(symbolic_shapes.inferred_shapes(_dynamic_batch_flatten()))["c"] == [None, 8, 8, 8]


def test_an_onnxruntime_without_the_tool_falls_back(monkeypatch, caplog):
    monkeypatch.setattr(symbolic_shapes, "SymbolicShapeInference", None)
    with caplog.at_level(logging.WARNING, logger=symbolic_shapes.__name__):
        inferred = symbolic_shapes.inferred_shapes(_dynamic_batch_flatten())
    assert "cannot be imported" in caplog.text
    assert static_shapes(inferred)["c"] == [None, 8, 8, 8]


def test_an_unfinished_inference_writes_nothing_and_uses_onnx_inference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Mystery", ["c"], ["y"], domain="com.example"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    assert symbolic_shapes.symbolic_inferred(model) is None
    assert static_shapes(symbolic_shapes.inferred_shapes(model))["c"] == [1, 2, 4, 4]
    assert list(tmp_path.iterdir()) == []
