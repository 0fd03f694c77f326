import numpy as np
import onnx
import onnxruntime as ort
import pytest

from autocompress.errors import ConfigError, ModelLoadError
from autocompress.graph.prepare import (
    MIN_OPSET,
    fix_input_shapes,
    lift_constants,
    name_nodes,
    prepare_model,
    simplify,
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
        h.make_node(
            "BatchNormalization", ["conv_out", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn_out"], name="bn"
        ),
        h.make_node("Relu", ["bn_out"], ["relu_out" if head else "y"], name="relu"),
    ]
    if head:
        inits.append(onnx.numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "head_w"))
        nodes.append(h.make_node("Conv", ["relu_out", "head_w"], ["y"], name="head"))
    graph = h.make_graph(
        nodes,
        "conv_bn",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4 if head else 8, 8, 8])],
        inits,
    )
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
    result = AutoCompression(
        model_dir, batches, save_dir=tmp_path / "out", eval_dataloader=batches, config={"QuantPost": {"batch_nums": 4}}
    ).compress()
    quantized = onnx.load(str(result.model_path))
    assert "QuantizeLinear" in {n.op_type for n in quantized.graph.node}
    expected = _run(_opset7_model(), batches[0])[0]
    assert np.abs(_run(quantized, batches[0])[0] - expected).max() < 0.1 * np.abs(expected).max()


def _ctc_head_model(declared: list) -> onnx.ModelProto:
    """Conv -> Squeeze -> Transpose -> Reshape to its own shape (read by Shape/Gather/Concat): the output really is
    [5, 1, 4] (time, batch, classes), but is declared `declared`, as some exported recognizers declare it."""
    h, rng = onnx.helper, np.random.default_rng(0)
    ints = lambda name, values: onnx.numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    inits = [
        onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w"),
        ints("h_axis", [2]),
        ints("i0", [0]),
        ints("i1", [1]),
        ints("i2", [2]),
    ]
    nodes = [
        h.make_node("Conv", ["x", "w"], ["features"], name="conv"),
        h.make_node("Squeeze", ["features", "h_axis"], ["squeezed"], name="squeeze"),
        h.make_node("Transpose", ["squeezed"], ["time_major"], perm=[2, 0, 1], name="transpose"),
        h.make_node("Shape", ["time_major"], ["shape"], name="shape"),
        *[h.make_node("Gather", ["shape", f"i{i}"], [f"d{i}"], axis=0, name=f"gather{i}") for i in range(3)],
        h.make_node("Concat", ["d0", "d1", "d2"], ["target"], axis=0, name="concat"),
        h.make_node("Reshape", ["time_major", "target"], ["logits"], name="reshape"),
    ]
    graph = h.make_graph(
        nodes,
        "ctc",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 1, 5])],
        [h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, declared)],
        inits,
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize(
    "declared, difference",
    [
        ([1, "seqlen"], "output 'logits' has shape [1, 20] instead of [5, 1, 4]"),
        ([1, 5], "it no longer runs"),
    ],
)
def test_a_wrong_declared_output_shape_does_not_change_the_prepared_model(declared, difference, caplog):
    """onnxslim trusts the declaration and rewrites the Reshape (to [1, 20], or to [1, 5], which no longer runs):
    the simplification is dropped, and the prepared model computes what the original does."""
    original = _ctc_head_model(declared)
    feed = {"x": np.random.default_rng(1).standard_normal((1, 3, 1, 5)).astype(np.float32)}
    expected = _run(original, feed)[0]
    assert expected.shape == (5, 1, 4)
    with caplog.at_level("WARNING", logger="autocompress.graph.prepare"):
        prepared = prepare_model(original, sample_feed=feed)
    got = _run(prepared, feed)[0]
    assert got.shape == (5, 1, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not any(n.op_type == "Constant" for n in prepared.graph.node)  # the other passes still ran
    dropped = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(dropped) == 1 and "'onnxslim simplification'" in dropped[0] and difference in dropped[0]


def test_a_pass_that_changes_the_outputs_is_dropped_with_a_warning(monkeypatch, caplog):
    """Checked on random data matching the inputs when no sample is given."""
    import autocompress.graph.prepare as prepare

    def halving_simplify(model, fold_batch_norm=False, layout=None):
        scale = onnx.numpy_helper.from_array(np.array(0.5, np.float32), "half")
        out = model.graph.output[0].name
        for node in model.graph.node:
            node.output[:] = [f"{out}_full" if name == out else name for name in node.output]
        model.graph.initializer.append(scale)
        model.graph.node.append(onnx.helper.make_node("Mul", [f"{out}_full", "half"], [out], name="halve"))
        return model

    monkeypatch.setattr(prepare, "simplify", halving_simplify)
    original = _conv_bn_model()
    with caplog.at_level("WARNING", logger="autocompress.graph.prepare"):
        prepared = prepare_model(original)
    assert "halve" not in {n.name for n in prepared.graph.node}
    feed = {"x": np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    np.testing.assert_allclose(_run(prepared, feed)[0], _run(original, feed)[0], rtol=1e-5, atol=1e-5)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "'onnxslim simplification'" in warnings[0] and "output 'y' differs by up to" in warnings[0]


def test_a_right_declaration_keeps_the_simplification_without_a_warning(caplog):
    original = _ctc_head_model([5, 1, 4])
    with caplog.at_level("WARNING", logger="autocompress.graph.prepare"):
        prepared = prepare_model(original)
    assert not {"Shape", "Gather", "Concat"} & {n.op_type for n in prepared.graph.node}  # folded by onnxslim
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    feed = {"x": np.random.default_rng(3).standard_normal((1, 3, 1, 5)).astype(np.float32)}
    np.testing.assert_allclose(_run(prepared, feed)[0], _run(original, feed)[0], rtol=1e-5, atol=1e-6)


def test_simplification_before_quantization_keeps_a_model_whose_declared_shape_is_wrong(caplog):
    """QuantPost and QuantAware simplify again to fold BatchNormalization; onnxslim would rewrite the Reshape to the
    declared [1, seqlen] (seen on a real CTC recognizer: its QuantPost model output (1, 180620) instead of
    (22, 1, 8210)), so the pass is checked against the model's outputs and dropped."""
    from autocompress.graph.prepare import simplify, simplify_for_quantization

    original = _ctc_head_model([1, "seqlen"])
    feed = {"x": np.random.default_rng(1).standard_normal((1, 3, 1, 5)).astype(np.float32)}
    assert _run(simplify(original, fold_batch_norm=True), feed)[0].shape == (1, 20)  # what the check prevents
    with caplog.at_level("WARNING", logger="autocompress.graph.prepare"):
        kept = simplify_for_quantization(original, feed)
    np.testing.assert_allclose(_run(kept, feed)[0], _run(original, feed)[0], rtol=1e-6)
    assert any("quantized without it" in r.getMessage() for r in caplog.records)
