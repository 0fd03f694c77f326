"""Shape inference for the pruning analyses writes no file and leaves the working directory alone."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
from onnx import helper, numpy_helper

from autocompress.graph import large, load
from autocompress.prune.prepare import shape_inferred, static_shapes


def _conv_custom_op_conv() -> onnx.ModelProto:
    """Conv -> an op of an unknown domain -> Conv: ORT's symbolic inference cannot finish this graph."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Mystery", ["c1"], ["u"], domain="com.example"),
        helper.make_node("Conv", ["u", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [w1, w2],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _dynamic_batch_flatten() -> onnx.ModelProto:
    """Shape -> Gather -> Concat -> Reshape, as dynamic-batch exports flatten: only symbolic inference sees the rank."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch"], ["batch_1d"], axes=[0]),
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
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=8)


def test_incomplete_symbolic_inference_writes_nothing_and_never_changes_directory(tmp_path, monkeypatch):
    chdirs = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "chdir", chdirs.append)  # process-wide: another thread would write in the wrong place
    model = _conv_custom_op_conv()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: shape_inferred(model, None), range(8)))
    assert chdirs == [] and list(tmp_path.iterdir()) == []
    for inferred in results:  # onnx's inference took over where ORT's stopped
        assert static_shapes(inferred)["c1"] == [1, 8, 8, 8]


def test_symbolic_inference_gives_the_rank_of_a_dynamic_batch_reshape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shapes = static_shapes(shape_inferred(_dynamic_batch_flatten(), None))
    assert len(shapes["y"]) == 2 and shapes["y"][1] == 512
    assert list(tmp_path.iterdir()) == []


def test_weight_arithmetic_on_weights_left_on_disk_is_folded(tmp_path):
    w = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["w_copy"]), helper.make_node("MatMul", ["x", "w_copy"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 64])],
        [numpy_helper.from_array(w, "w")],
    )
    path = tmp_path / "model.onnx"
    large.save_external(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    inferred = shape_inferred(load.load_onnx(path, lazy_bytes=0), None)
    assert "Identity" not in {n.op_type for n in inferred.graph.node}
    folded = next(t for t in inferred.graph.initializer if t.name == "w_copy")
    np.testing.assert_array_equal(numpy_helper.to_array(folded), w)
