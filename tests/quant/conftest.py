"""Tiny models and calibration data shared by the quantization tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn


class ResidualCNN(nn.Module):
    """Several Conv+ReLU, a residual Add and a Gemm head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        y = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(y) + x)
        x = torch.relu(self.down(x))
        return self.head(x.mean(dim=(2, 3)))


def export(module: nn.Module, example: torch.Tensor, path, opset: int = 13) -> onnx.ModelProto:
    torch.onnx.export(
        module.eval(),
        example,
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    return onnx.load(str(path))


@pytest.fixture(scope="session")
def cnn_model(tmp_path_factory) -> onnx.ModelProto:
    torch.manual_seed(0)
    return export(ResidualCNN(), torch.randn(1, 3, 24, 24), tmp_path_factory.mktemp("cnn") / "cnn.onnx")


def make_batches(count: int, shape=(2, 3, 24, 24), seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
