"""Tiny torch models exported to ONNX, one per channel-dependency pattern."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn


def export(module: nn.Module, shape: tuple[int, ...], opset: int = 13) -> onnx.ModelProto:
    torch.manual_seed(0)
    module.eval()
    for m in module.modules():  # non-trivial BN statistics so folding mistakes show up
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.1, 2.0)
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        torch.randn(*shape),
        buf,
        input_names=["x"],
        output_names=["y"],
        opset_version=opset,
        dynamo=False,
        do_constant_folding=False,
    )
    return onnx.load_from_string(buf.getvalue())


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def conv_bn(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups), nn.BatchNorm2d(cout), nn.ReLU())


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 32)
        self.body = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32))
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        s = self.stem(x)
        return self.head(torch.relu(s + self.body(s)))


class ConcatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = conv_bn(3, 32)
        self.b = conv_bn(3, 48)
        self.head = nn.Conv2d(80, 4, 1)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


class DepthwiseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = conv_bn(3, 32)
        self.dw = conv_bn(32, 32, groups=32)
        self.project = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        return self.project(self.dw(self.expand(x)))


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = conv_bn(3, 32)
        self.reduce = nn.Conv2d(32, 16, 1)
        self.expand = nn.Conv2d(16, 32, 1)
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        t = self.trunk(x)
        s = torch.sigmoid(self.expand(torch.relu(self.reduce(nn.functional.adaptive_avg_pool2d(t, 1)))))
        return self.head(t * s)


class FlattenFC(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 32), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(32 * 4 * 4, 48)
        self.fc2 = nn.Linear(48, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(self.features(x), 1))))


class SplitNet(nn.Module):
    """Channel split (as in CSP / shuffle blocks): each half feeds its own conv."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 64)
        self.left = nn.Conv2d(32, 8, 1)
        self.right = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        a, b = torch.split(self.stem(x), 32, dim=1)
        return self.left(a) + self.right(b)


class ChannelShuffle(nn.Module):
    """Reshape to [N, groups, C/groups, H, W]: channels are interleaved, which the analysis refuses."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 32)
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        t = self.stem(x)
        n, c, h, w = t.shape
        t = t.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(t)


class SelfAttention(nn.Module):
    """BERT-style multi-head self-attention written out, as exporters see it."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))

    def split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        probs = torch.softmax(q @ k.transpose(-1, -2) / self.head_dim**0.5, dim=-1)
        b, n = x.shape[:2]
        return self.o((probs @ v).transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int):
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.ff1, self.ff2 = nn.Linear(hidden, inner), nn.Linear(inner, hidden)

    def forward(self, x):
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


def export_encoder(hidden: int, heads: int, inner: int, layers: int = 2) -> onnx.ModelProto:
    torch.manual_seed(0)
    module = nn.Sequential(*(EncoderLayer(hidden, heads, inner) for _ in range(layers))).eval()
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        torch.randn(2, 7, hidden),
        buf,
        input_names=["x"],
        output_names=["y"],
        opset_version=13,
        dynamo=False,
        dynamic_axes={"x": {0: "batch", 1: "seq"}},
    )
    return onnx.load_from_string(buf.getvalue())


class ReshapeFC(FlattenFC):
    """Flatten written as a Reshape with an explicit [1, C*H*W] target, which pruning must rewrite."""

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.features(x).reshape(1, 32 * 4 * 4))))


class NormMLP(nn.Module):
    """fc0 -> ReLU -> fc1 -> LayerNorm -> fc2: fc0's channels may go, fc1's are normalised together."""

    def __init__(self, norm: bool = True):
        super().__init__()
        self.fc0, self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 16), nn.Linear(16, 4)
        self.norm = nn.LayerNorm(16) if norm else nn.ReLU()

    def forward(self, x):
        return self.fc2(self.norm(self.fc1(torch.relu(self.fc0(x)))))


def zero_channels(module: nn.Module, layers: dict[str, int]) -> nn.Module:
    """Sets the first `count` output channels (weight rows and bias) of each named nn.Linear exactly to zero."""
    for name, count in layers.items():
        layer = module.get_submodule(name)
        with torch.no_grad():
            layer.weight[:count] = 0.0
            layer.bias[:count] = 0.0
    return module


def _export_opset(module: nn.Module, x: torch.Tensor, opset: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(module.eval(), x, buf, input_names=["x"], output_names=["y"], opset_version=opset, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def torch_encoder(zeroed_heads: list[int] = (), zeroed_units: int = 0, batch: int = 2) -> onnx.ModelProto:
    """Two nn.TransformerEncoderLayers (d_model 16, 4 heads, FFN 32, packed Q/K/V in in_proj_weight); the listed
    heads of every layer and its first FFN units get zero weights. Every parameter is drawn anew so the exporter
    shares none of them between layers."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    with torch.no_grad():
        for p in encoder.parameters():
            p.uniform_(-0.5, 0.5)
        for layer in encoder.layers:
            for h in zeroed_heads:
                for chunk in range(3):
                    layer.self_attn.in_proj_weight[chunk * 16 + 4 * h : chunk * 16 + 4 * h + 4] = 0.0
                    layer.self_attn.in_proj_bias[chunk * 16 + 4 * h : chunk * 16 + 4 * h + 4] = 0.0
                layer.self_attn.out_proj.weight[:, 4 * h : 4 * h + 4] = 0.0
            zero_channels(layer, {"linear1": zeroed_units})
    return _export_opset(encoder, torch.randn(batch, 5, 16), 14)


class EmbeddedEncoder(nn.Module):
    """Embedding (a [8, 16] MatMul over one-hot tokens) -> encoder layers -> classifier: the hidden width 16 runs
    through residual Adds and LayerNorms from the embedding to the classifier."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Linear(8, 16, bias=False)
        self.layers = nn.Sequential(EncoderLayer(16, 4, 32), EncoderLayer(16, 4, 32))
        self.classifier = nn.Linear(16, 3)

    def forward(self, x):
        return self.classifier(self.layers(self.embedding(x)))


def embedded_encoder(opset: int, zeroed_heads: list[int] = (), zeroed_units: int = 0) -> onnx.ModelProto:
    torch.manual_seed(0)
    module = EmbeddedEncoder()
    with torch.no_grad():
        for layer in module.layers:
            for h in zeroed_heads:
                for proj in (layer.attention.q, layer.attention.k, layer.attention.v):
                    proj.weight[4 * h : 4 * h + 4] = 0.0
                    proj.bias[4 * h : 4 * h + 4] = 0.0
                layer.attention.o.weight[:, 4 * h : 4 * h + 4] = 0.0
            zero_channels(layer, {"ff1": zeroed_units})
    return _export_opset(module, torch.eye(8)[None, :5].repeat(2, 1, 1), opset)
