import numpy as np
import onnx
import pytest
import torch
from torch import nn

from autocompress.errors import ConfigError
from autocompress.strategy.targets import count_attention_blocks, detect_model_type, parse_target_speedup
from tests.conftest import export_tiny_cnn


def test_target_speedup_spellings():
    assert parse_target_speedup(None) is None
    assert parse_target_speedup(0.5) == pytest.approx(2.0)
    assert parse_target_speedup("0.3") == pytest.approx(1 / 0.7)
    assert parse_target_speedup("2x") == 2.0
    assert parse_target_speedup("1.5X") == 1.5
    for bad in (1.5, 0.0, -1, "fast", "0.9x"):
        with pytest.raises(ConfigError):
            parse_target_speedup(bad)


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(8, 32)
        self.layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)

    def forward(self, x):
        return self.layer(self.emb(x))


def test_model_type_detection(tmp_path):
    cnn = onnx.load(str(export_tiny_cnn(tmp_path / "cnn.onnx")))
    assert detect_model_type(cnn) == "cnn"
    path = tmp_path / "bert.onnx"
    # the fused fast path of nn.TransformerEncoderLayer only runs without grad in eval; export the plain ops
    model = TinyEncoder().train()
    torch.onnx.export(
        model,
        torch.randn(1, 5, 8),
        str(path),
        input_names=["x"],
        opset_version=14,
        dynamo=False,
        training=torch.onnx.TrainingMode.EVAL,
    )
    bert = onnx.load(str(path))
    assert count_attention_blocks(bert) >= 1
    assert detect_model_type(bert) == "transformer"


def test_attention_behind_a_nan_guard_is_found():
    """torch's exporter writes scaled-dot-product softmax as Where(IsNaN(p), 0, p) before the MatMul with V: the
    block is still attention (a BERT sentence encoder was taken for a CNN)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("MatMul", ["q", "k"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("IsNaN", ["p"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "p"], ["guarded"]),
        helper.make_node("MatMul", ["guarded", "v"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 4]) for n in ("q", "k", "v")]
    graph = helper.make_graph(
        nodes,
        "sdpa",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    assert count_attention_blocks(helper.make_model(graph)) == 1
