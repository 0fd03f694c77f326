import numpy as np
import onnx
import onnxruntime as ort
import pytest

from autocompress.errors import ConfigError, ModelLoadError
from autocompress.graph.prepare import (
    MIN_OPSET, fix_input_shapes, lift_constants, name_nodes, prepare_model, simplify,
)
from tests.conftest import RAPIDOCR_MODELS, constant_weight_model


def _run(model, feed):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def test_lift_constants_preserves_outputs():
    model = constant_weight_model()
    feed = {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    before = _run(model, feed)[0]
    lifted = lift_constants(onnx.ModelProto.FromString(model.SerializeToString()))
    assert not any(n.op_type == "Constant" for n in lifted.graph.node)
    assert "conv_w" in {t.name for t in lifted.graph.initializer}
    np.testing.assert_allclose(_run(lifted, feed)[0], before, atol=1e-5)


@pytest.mark.skipif(RAPIDOCR_MODELS is None, reason="rapidocr_onnxruntime not installed")
def test_prepared_ocr_det_model_matches_original_and_has_initializers():
    original = onnx.load(str(RAPIDOCR_MODELS / "ch_PP-OCRv4_det_infer.onnx"))
    prepared = prepare_model(original, {"x": [-1, 3, 64, 64]})
    assert len(prepared.graph.initializer) > 100
    assert not any(n.op_type == "Constant" for n in prepared.graph.node)
    assert all(n.name for n in prepared.graph.node)
    feed = {"x": np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)}
    np.testing.assert_allclose(_run(prepared, feed)[0], _run(original, feed)[0], atol=1e-5)
    dims = [d.dim_value for d in prepared.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 64, 64]


def test_input_shapes_errors(tiny_cnn):
    model = onnx.load(str(tiny_cnn))
    with pytest.raises(ConfigError, match=r"model's inputs are \['x'\]"):
        fix_input_shapes(model, {"image": [1, 3, 16, 16]})
    with pytest.raises(ConfigError, match="rank"):
        fix_input_shapes(model, {"x": [1, 3, 16]})
    fixed = fix_input_shapes(model, [2, 3, 16, 16])
    assert [d.dim_value for d in fixed.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 16, 16]


def test_name_nodes_makes_names_unique():
    model = constant_weight_model()
    model.graph.node[1].name = "dup"
    model.graph.node[2].name = "dup"
    names = [n.name for n in name_nodes(model).graph.node]
    assert len(set(names)) == len(names) and all(names)


def _conv_bn_model(head: bool = False) -> onnx.ModelProto:
    """x -> Conv(stem_w, no bias) -> BatchNormalization -> Relu [-> Conv(head_w)]: onnxslim folds the BN into the
    first Conv."""
    rng = np.random.default_rng(0)
    h = onnx.helper
    inits = [
        onnx.numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "stem_w"),
        onnx.numpy_helper.from_array(rng.random(8).astype(np.float32) + 0.5, "bn_scale"),
        onnx.numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bn_bias"),
        onnx.numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bn_mean"),
        onnx.numpy_helper.from_array(rng.random(8).astype(np.float32) + 0.5, "bn_var"),
    ]
    nodes = [
        h.make_node("Conv", ["x", "stem_w"], ["conv_out"], name="stem", pads=[1, 1, 1, 1]),
        h.make_node("BatchNormalization", ["conv_out", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn_out"], name="bn"),
        h.make_node("Relu", ["bn_out"], ["relu_out" if head else "y"], name="relu"),
    ]
    if head:
        inits.append(onnx.numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "head_w"))
        nodes.append(h.make_node("Conv", ["relu_out", "head_w"], ["y"], name="head"))
    graph = h.make_graph(nodes, "conv_bn", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4 if head else 8, 8, 8])], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], ir_version=8)


def test_batch_norm_folding_keeps_the_conv_weight_name():
    model = _conv_bn_model()
    folded = simplify(model, fold_batch_norm=True)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Relu"]
    conv = folded.graph.node[0]
    assert conv.input[1] == "stem_w"  # the name the user sees in the original model
    feed = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    np.testing.assert_allclose(_run(folded, feed)[0], _run(model, feed)[0], rtol=1e-5, atol=1e-5)
    # the folded weight is a new tensor: the caller's model is untouched
    assert onnx.numpy_helper.to_array(model.graph.initializer[0]).shape == (8, 3, 3, 3)
    assert [n.op_type for n in model.graph.node] == ["Conv", "BatchNormalization", "Relu"]


def _opset7_model(scaler: bool = False) -> onnx.ModelProto:
    """Conv -> Relu -> Reshape -> Gemm at opset 7 / IR 3, every initializer listed as a graph input (as IR 3 requires);
    with `scaler`, an ImageScaler (an experimental op that opset 13 no longer has) first."""
    h, rng = onnx.helper, np.random.default_rng(3)
    inits = [
        onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        onnx.numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "flat"),
        onnx.numpy_helper.from_array(rng.standard_normal((256, 5)).astype(np.float32), "gemm_w"),
        onnx.numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "gemm_b"),
    ]
    nodes = [
        h.make_node("Conv", ["s" if scaler else "x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c"], ["r"]),
        h.make_node("Reshape", ["r", "flat"], ["f"]),
        h.make_node("Gemm", ["f", "gemm_w", "gemm_b"], ["y"]),
    ]
    if scaler:
        nodes.insert(0, h.make_node("ImageScaler", ["x"], ["s"], bias=[0.0, 0.0, 0.0], scale=0.5))
    inputs = [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])]
    inputs += [h.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = h.make_graph(nodes, "old", inputs, [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 5])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 7)], ir_version=3)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_opset7_ir3_model_is_upgraded_and_computes_the_same():
    original = _opset7_model()
    feed = {"x": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    expected = _run(original, feed)[0]
    prepared = prepare_model(original)
    assert [o.version for o in prepared.opset_import if o.domain == ""] == [MIN_OPSET]
    assert prepared.ir_version >= 4 and [i.name for i in prepared.graph.input] == ["x"]
    onnx.checker.check_model(prepared, full_check=True)
    np.testing.assert_allclose(_run(prepared, feed)[0], expected, rtol=1e-5, atol=1e-5)
    assert original.ir_version == 3 and len(original.graph.input) == 6  # the caller's model is untouched


def test_model_the_converter_cannot_upgrade_is_refused_with_the_reason():
    original = _opset7_model(scaler=True)
    _run(original, {"x": np.zeros((1, 3, 8, 8), np.float32)})  # ONNX Runtime runs it
    before = original.SerializeToString()
    with pytest.raises(ModelLoadError, match=r"opset 7.*\['ImageScaler'\] no longer exist in opset 13"):
        prepare_model(original)
    assert original.SerializeToString() == before


def test_quant_post_compresses_an_opset7_ir3_model(tmp_path):
    from autocompress import AutoCompression

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    onnx.save(_opset7_model(), str(model_dir / "old.onnx"))
    rng = np.random.default_rng(1)
    batches = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    result = AutoCompression(model_dir, batches, save_dir=tmp_path / "out", eval_dataloader=batches,
                             config={"QuantPost": {"batch_nums": 4}}).compress()
    quantized = onnx.load(str(result.model_path))
    assert "QuantizeLinear" in {n.op_type for n in quantized.graph.node}
    expected = _run(_opset7_model(), batches[0])[0]
    assert np.abs(_run(quantized, batches[0])[0] - expected).max() < 0.1 * np.abs(expected).max()
