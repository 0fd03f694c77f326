"""The stub copy that lets onnx and ORT handle models over protobuf's 2 GB limit, checked on small models."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autocompress.graph import large, prepare
from autocompress.runtime.ort import Predictor


def _two_weight_model() -> onnx.ModelProto:
    """A raw_data weight, a weight kept in float_data, and a small shape tensor that must stay inline."""
    rng = np.random.default_rng(0)
    w0 = numpy_helper.from_array(rng.standard_normal((32, 64), dtype=np.float32), "w0")
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [64, 16], rng.standard_normal(64 * 16).astype(np.float32).tolist())
    shape = numpy_helper.from_array(np.array([-1, 4, 4], np.int64), "shape")
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h"]),
        helper.make_node("MatMul", ["h", "w1"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None])],
        [w0, w1, shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_saved_external_data_round_trips_without_touching_the_model(tmp_path):
    model = _two_weight_model()
    before = model.SerializeToString()
    large.save_external(model, tmp_path / "model.onnx")
    assert model.SerializeToString() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]

    header = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    stubs = {t.name: {e.key: e.value for e in t.external_data} for t in header.graph.initializer if t.external_data}
    assert set(stubs) == {"w0", "w1"}  # the 24-byte shape tensor stays inline
    assert all(int(s["offset"]) % (64 * 1024) == 0 for s in stubs.values())
    reloaded = onnx.load(str(tmp_path / "model.onnx"))
    for original, loaded in zip(model.graph.initializer, reloaded.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(loaded), numpy_helper.to_array(original))
    x = {"x": np.random.default_rng(1).standard_normal((2, 32), dtype=np.float32)}
    np.testing.assert_array_equal(Predictor(tmp_path / "model.onnx")(x)[0], Predictor(model)(x)[0])


def test_preparation_of_a_large_model_checks_infers_and_skips_simplification(monkeypatch, caplog):
    model = _two_weight_model()
    expected = prepare.infer_shapes(model)
    monkeypatch.setattr(large, "PROTOBUF_LIMIT", 1000)  # the model now counts as over 2 GB
    prepared = prepare.prepare_model(model)
    assert "onnxslim simplification (and BN folding) is skipped" in caplog.text
    assert prepared.graph.value_info == expected.graph.value_info and len(prepared.graph.value_info) == 2
    assert prepared.graph.output[0].type == expected.graph.output[0].type  # [n, 4, 4] from the inline shape
    assert prepared.graph.initializer == model.graph.initializer

    broken = _two_weight_model()
    broken.graph.node[0].input[1] = "nowhere"
    with pytest.raises(Exception, match="fails onnx.checker.*nowhere"):
        prepare.check_model(broken)


def _constant_expanded_by_onnxslim() -> onnx.ModelProto:
    """x + Expand(1.5, [64, 64]): 149 bytes as given; onnxslim folds the Expand into a 16 KB initializer."""
    nodes = [helper.make_node("Expand", ["one", "shape"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])]
    inits = [
        numpy_helper.from_array(np.array([1.5], np.float32), "one"),
        numpy_helper.from_array(np.array([64, 64], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_preparation_decides_the_layout_once_and_again_after_a_pass_that_grows_the_model(monkeypatch):
    model = _constant_expanded_by_onnxslim()
    monkeypatch.setattr(large, "PROTOBUF_LIMIT", 8000)  # inline as loaded, over the limit once simplified
    bounds, by_path = [], []
    real_bound, real_saved = large.size_bound, prepare.saved_with_external_data
    monkeypatch.setattr(large, "size_bound", lambda m: bounds.append(1) or real_bound(m))
    monkeypatch.setattr(prepare, "saved_with_external_data", lambda *a, **k: by_path.append(1) or real_saved(*a, **k))
    prepared = prepare.prepare_model(model)
    assert [n.op_type for n in prepared.graph.node] == ["Add"]  # onnxslim folded the Expand
    assert len(bounds) == 2  # at load, and after onnxslim
    assert by_path == [1]  # the final check took the route of a large model
    assert large.weights_layout(prepared) is large.WeightsLayout.EXTERNAL


def test_size_bound_is_at_least_the_serialized_size_and_close_to_it():
    model = _two_weight_model()  # a raw_data weight, a float_data weight, an int64 shape
    extra = numpy_helper.from_array(np.arange(300, dtype=np.float16).reshape(3, 100), "half")
    extra.doc_string = "a documented tensor"
    model.graph.initializer.extend([extra, helper.make_tensor("names", TensorProto.STRING, [2], [b"a", b"bc"])])
    slack = large.size_bound(model) - model.ByteSize()
    assert 0 <= slack <= 11 * len(model.graph.initializer)
    assert large.weights_layout(model) is large.WeightsLayout.INLINE
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(large, "PROTOBUF_LIMIT", model.ByteSize())
        assert large.weights_layout(model) is large.WeightsLayout.EXTERNAL


def test_a_compacted_model_equals_the_model_it_was_made_from():
    model = _two_weight_model()
    kept = [t for t in model.graph.initializer if t.name != "w1"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    compact = large.compacted(model)
    assert compact is not model and compact == model
