"""Tiny models and data shared by the tests; every test builds what it needs in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

RAPIDOCR_MODELS = None
try:
    import rapidocr_onnxruntime

    RAPIDOCR_MODELS = Path(rapidocr_onnxruntime.__file__).parent / "models"
except ImportError:  # examples extra not installed
    pass


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        return self.head(self.body(x))


def export_tiny_cnn(path: Path, size: int = 16) -> Path:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    torch.onnx.export(
        model,
        torch.randn(1, 3, size, size),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    return path


@pytest.fixture
def tiny_cnn(tmp_path) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    return export_tiny_cnn(model_dir / "tiny.onnx")


@pytest.fixture
def tiny_batches() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(3)]


def constant_weight_model() -> onnx.ModelProto:
    """A Conv whose weight lives in a Constant node, as paddle2onnx exports."""
    rng = np.random.default_rng(1)
    w = onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        onnx.helper.make_node("Constant", [], ["conv_w"], value=w),
        onnx.helper.make_node("Conv", ["x", "conv_w"], ["y"], pads=[1, 1, 1, 1]),
        onnx.helper.make_node("Relu", ["y"], ["out"]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)],
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)
