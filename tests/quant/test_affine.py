"""Scalar Mul/Add after a quantized tensor absorbed into its quantization parameters (quant/affine.py)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from autocompress.quant import qdq
from autocompress.quant.qdq import QDQOptions, plan_quantization, write_qdq_model
from autocompress.quant.statistics import collect_statistics

from .conftest import export, make_batches, run


class HardswishThenAffine(nn.Module):
    """conv -> hardswish numerator h * clip(h + 3, 0, 6) -> * scale + offset -> zero-padded conv (PPLCNetV3's
    learnable affine block, which no conv can take in because of the padding)."""

    def __init__(self, scale: float, offset: float):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 8, 3, padding=1)
        self.scale, self.offset = scale, offset

    def forward(self, x):
        h = self.a(x)
        return self.b(h * torch.clamp(h + 3, 0, 6) * self.scale + self.offset)


def _quantized(tmp_path, scale, offset, options=QDQOptions()):
    torch.manual_seed(0)
    model = export(HardswishThenAffine(scale, offset), torch.randn(1, 3, 24, 24), tmp_path / "m.onnx")
    tensors = plan_quantization(model, options).activation_tensors
    stats = collect_statistics(model, make_batches(4), tensors)
    ranges = {name: (float(stats.min[i].min()), float(stats.max[i].max())) for i, name in enumerate(stats.tensor_names)}
    quantized, plan = write_qdq_model(model, ranges, options)
    return model, quantized, plan


def _kernels(model, tmp_path):
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del session
    return sorted(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)


def test_scale_and_offset_become_quantization_parameters(tmp_path, monkeypatch):
    model, quantized, plan = _quantized(tmp_path, 0.4, 0.3)
    assert len(plan.absorbed_nodes) == 2  # the Mul by 0.4 and the Add of 0.3
    assert {n.op_type for n in quantized.graph.node if n.name in plan.absorbed_nodes} == set()
    kernels = _kernels(quantized, tmp_path)
    # left: h + 3 and h * clip(...) as integer kernels, no kernel for * 0.4 or + 0.3; the second conv reads the
    # integers of h * clip(...) directly (it writes the float graph output, so it runs as a float Conv)
    assert kernels.count("QLinearMul") == 1 and kernels.count("QLinearAdd") == 1
    assert "Mul" not in kernels and "Add" not in kernels
    # as close to the float model as quantizing the two ops (one rounding fewer; the offset moves by at most half a
    # step of the affine output)
    monkeypatch.setattr(qdq, "affine_chains", lambda index, outputs: [])
    _, kept, kept_plan = _quantized(tmp_path, 0.4, 0.3)
    assert kept_plan.absorbed_nodes == []
    feed = make_batches(2, seed=5)[1]
    expected = run(model, feed)
    error, kept_error = (float(np.sqrt(np.mean((run(m, feed) - expected) ** 2))) for m in (quantized, kept))
    assert error < 1.1 * kept_error


@pytest.mark.parametrize("scale, options", [(-0.4, QDQOptions()), (0.4, QDQOptions(symmetric_activations=True))])
def test_a_negative_scale_or_a_symmetric_zero_point_keeps_the_ops(tmp_path, scale, options):
    model, quantized, plan = _quantized(tmp_path, scale, 0.3, options)
    assert plan.absorbed_nodes == []
    assert sum(n.op_type in ("Mul", "Add") for n in quantized.graph.node) == 3 + 1  # h+3, h*clip, *scale, +offset
    feed = make_batches(1, seed=5)[0]
    assert np.corrcoef(run(quantized, feed).ravel(), run(model, feed).ravel())[0, 1] > 0.99
