"""Tiny ONNX classifiers exported from torch, with the node names torch gives them."""

from __future__ import annotations

import io

import onnx
import torch
from torch import nn

CONV1 = "/conv1/Conv_output_0"
CONV2 = "/conv2/Conv_output_0"
LOGITS = "/fc/Gemm_output_0"


class Net(nn.Module):
    def __init__(self, hidden: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        y = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.softmax(self.fc(y.mean((2, 3))), -1)


def export(hidden: int = 8, seed: int = 0, input_name: str = "x") -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        Net(hidden, seed).eval(),
        torch.randn(1, 3, 8, 8),
        buffer,
        input_names=[input_name],
        output_names=["prob"],
        dynamic_axes={input_name: {0: "n"}},
        opset_version=13,
        dynamo=False,
    )
    return onnx.load_from_string(buffer.getvalue())
