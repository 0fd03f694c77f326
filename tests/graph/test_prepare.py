import numpy as np
import onnx
import onnxruntime as ort
import pytest

from autocompress.errors import ConfigError
from autocompress.graph.prepare import fix_input_shapes, lift_constants, name_nodes, prepare_model
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
