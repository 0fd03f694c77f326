"""The one constant folder: weight arithmetic becomes initializers, everything else stays as it was."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.external_data_helper import uses_external_data

from autocompress.graph import fold_constants as folder
from autocompress.graph import large, load, prepare
from autocompress.graph.fold_constants import fold_constants
from autocompress.graph.naming import aliases, stable_names

_RNG = np.random.default_rng(0)
W = _RNG.standard_normal((3, 4)).astype(np.float32)  # stored transposed, as some exporters keep MatMul weights
B = _RNG.standard_normal(3).astype(np.float32)


def _make(nodes, inits, inputs=(("x", [2, 4]),), outputs=(("y", [2, 3]),)) -> onnx.ModelProto:
    value = lambda name, shape: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(
        nodes,
        "g",
        [value(*i) for i in inputs],
        [value(*o) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _weight_arithmetic() -> onnx.ModelProto:
    """y = relu(x @ (W.T * 0.5) + reshape(identity(B), [1, 3])): every weight op reads constants only."""
    nodes = [
        helper.make_node("Transpose", ["w"], ["w_t"], perm=[1, 0], name="transpose"),
        helper.make_node("Mul", ["w_t", "half"], ["w_half"], name="scale"),
        helper.make_node("Identity", ["b"], ["b_copy"], name="copy"),
        helper.make_node("Reshape", ["b_copy", "row"], ["b_row"], name="reshape"),
        helper.make_node("MatMul", ["x", "w_half"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "b_row"], ["pre"], name="add"),
        helper.make_node("Relu", ["pre"], ["y"], name="relu"),
    ]
    inits = {"w": W, "half": np.array(0.5, np.float32), "b": B, "row": np.array([1, 3], np.int64)}
    return _make(nodes, inits)


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_the_folded_model_computes_what_the_original_computes():
    original = _weight_arithmetic()
    folded = fold_constants(_weight_arithmetic())
    onnx.checker.check_model(folded, full_check=True)
    feed = {"x": _RNG.standard_normal((2, 4)).astype(np.float32)}
    np.testing.assert_allclose(_run(folded, feed)[0], _run(original, feed)[0], rtol=1e-6)


def test_identity_reshape_transpose_and_mul_of_constants_become_initializers():
    folded = fold_constants(_weight_arithmetic())
    assert [n.op_type for n in folded.graph.node] == ["MatMul", "Add", "Relu"]
    values = _initializers(folded)
    assert set(values) == {"w_half", "b_row"}  # the sources only folded nodes read are gone
    np.testing.assert_array_equal(values["w_half"], W.T * np.float32(0.5))
    np.testing.assert_array_equal(values["b_row"], B.reshape(1, 3))


def test_nodes_on_the_input_path_are_untouched():
    original = _weight_arithmetic()
    folded = fold_constants(_weight_arithmetic())
    kept = {n.name: n for n in original.graph.node if n.op_type in ("MatMul", "Add", "Relu")}
    assert [n.SerializeToString() for n in folded.graph.node] == [n.SerializeToString() for n in kept.values()]


def test_surviving_nodes_keep_the_stable_names_of_the_unfolded_model():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="dup"),
        helper.make_node("Identity", ["c"], ["c_copy"], name="dup"),
        helper.make_node("Add", ["r", "c_copy"], ["y"]),
    ]
    model = _make(nodes, {"c": np.ones(4, np.float32)}, outputs=(("y", [2, 4]),))
    expected = stable_names(model.graph.node)
    folded = fold_constants(model)
    assert [(n.name, aliases(n)) for n in folded.graph.node] == [(expected[0], ["dup"]), (expected[2], [])]


def test_results_over_the_size_cap_are_never_computed(monkeypatch):
    evaluated = []
    real = folder.ReferenceEvaluator
    monkeypatch.setattr(folder, "ReferenceEvaluator", lambda m: evaluated.append(m.graph.node[0].op_type) or real(m))
    nodes = [
        helper.make_node("Expand", ["one", "huge"], ["big"]),  # 2**26 elements: 256 MB if it were made
        helper.make_node("Reshape", ["b", "row"], ["b_row"]),
        helper.make_node("Add", ["x", "big"], ["y"]),
        helper.make_node("Add", ["x", "b_row"], ["z"]),
    ]
    inits = {
        "one": np.ones(1, np.float32),
        "huge": np.array([1 << 13, 1 << 13], np.int64),
        "b": B,
        "row": np.array([1, 3], np.int64),
    }
    model = _make(nodes, inits, inputs=(("x", [1, 1]),), outputs=(("y", None), ("z", [1, 3])))
    folded = fold_constants(model)
    assert [n.op_type for n in folded.graph.node] == ["Expand", "Add", "Add"] and evaluated == ["Reshape"]
    assert "big" not in _initializers(folded)


def test_a_result_over_a_smaller_cap_stays_a_node():
    folded = fold_constants(_weight_arithmetic(), max_elements=11)  # w_half has 12 elements, b_row 3
    assert [n.op_type for n in folded.graph.node] == ["Transpose", "Mul", "MatMul", "Add", "Relu"]
    assert set(_initializers(folded)) == {"w", "half", "b_row"}


def test_overridable_initializers_random_and_quantization_ops_are_not_folded():
    nodes = [
        helper.make_node("Identity", ["default"], ["d"], name="copy"),
        helper.make_node("RandomUniformLike", ["c"], ["noise"], name="noise"),
        helper.make_node("QuantizeLinear", ["c", "scale"], ["q"], name="quantize"),
        helper.make_node("DequantizeLinear", ["q", "scale"], ["dq"], name="dequantize"),
        helper.make_node("Sum", ["x", "d", "noise", "dq"], ["y"], name="sum"),
    ]
    inits = {"default": np.zeros(4, np.float32), "c": np.ones(4, np.float32), "scale": np.array(0.1, np.float32)}
    model = _make(nodes, inits, outputs=(("y", [2, 4]),))
    model.graph.input.append(helper.make_tensor_value_info("default", onnx.TensorProto.FLOAT, [4]))
    before = model.SerializeToString()
    assert fold_constants(model).SerializeToString() == before


def test_weights_left_on_disk_are_folded_and_the_ones_still_read_stay_on_disk(tmp_path):
    w = _RNG.standard_normal((64, 32)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["w"], ["w_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "w_t"], ["y"]),
        helper.make_node("MatMul", ["y", "w"], ["z"]),
    ]
    model = _make(nodes, {"w": w}, inputs=(("x", [2, 32]),), outputs=(("z", [2, 32]),))
    path = tmp_path / "model.onnx"
    large.save_external(model, path)
    folded = fold_constants(load.load_onnx(path, lazy_bytes=0))
    tensors = {t.name: t for t in folded.graph.initializer}
    assert [n.op_type for n in folded.graph.node] == ["MatMul", "MatMul"] and uses_external_data(tensors["w"])
    np.testing.assert_array_equal(numpy_helper.to_array(tensors["w_t"]), w.T)


def test_simplify_folds_the_constants_of_a_copy_when_onnxslim_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simplifier bug")

    monkeypatch.setattr(prepare.onnxslim, "slim", broken)
    model = _weight_arithmetic()
    before = model.SerializeToString()
    simplified = prepare.simplify(model)
    assert [n.op_type for n in simplified.graph.node] == ["MatMul", "Add", "Relu"]
    assert model.SerializeToString() == before


def test_each_result_goes_to_its_named_output_when_an_optional_one_is_skipped():
    nodes = [
        helper.make_node("Unique", ["c"], ["values", "", "inverse"], sorted=1),
        helper.make_node("Cast", ["inverse"], ["inverse_f"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Add", ["x", "inverse_f"], ["y"]),
    ]
    model = _make(nodes, {"c": np.array([3, 1, 3, 2], np.float32)}, outputs=(("y", [2, 4]),))
    folded = fold_constants(model)
    assert [n.op_type for n in folded.graph.node] == ["Add"]
    np.testing.assert_array_equal(_initializers(folded)["inverse_f"], [2, 0, 2, 1])
