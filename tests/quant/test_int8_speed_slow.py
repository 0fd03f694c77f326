"""Latency of the int8 models at 1 thread against fp32 and ONNX Runtime's own quantize_static.

Slow (tens of seconds): run with `-m slow`. Prints the numbers it measures.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from torch import nn

from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.statistics import collect_statistics

from .conftest import cosine, export

pytestmark = pytest.mark.slow


def latency_ms(model: onnx.ModelProto, feed: dict[str, np.ndarray], runs: int = 300) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(20):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 25) * 1000)


def outputs(model: onnx.ModelProto, feeds) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, f)[0] for f in feeds])


def int8_conv_count(model: onnx.ModelProto, path: Path) -> tuple[int, int]:
    """(int8 convolutions, float convolutions) in ORT's optimized graph."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    return ops.count("QLinearConv"), ops.count("Conv") + ops.count("FusedConv")


def ort_quantize_static(model: onnx.ModelProto, batches, tmp_path: Path) -> onnx.ModelProto:
    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    onnx.save(model, str(tmp_path / "float.onnx"))
    quantize_static(
        str(tmp_path / "float.onnx"),
        str(tmp_path / "ort_int8.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return onnx.load(str(tmp_path / "ort_int8.onnx"))


def lifted_and_simplified(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant weights to initializers and BatchNorm folded (onnxslim does both), at opset 13."""
    onnxslim = pytest.importorskip("onnxslim")
    return onnx.version_converter.convert_version(onnxslim.slim(model), 13)


def compare(name, model, calibration, test, tmp_path) -> dict[str, float]:
    statistics = collect_statistics(model, calibration, calibration_tensors(model))
    ours, _ = quantize_post_training(model, statistics, algo="hist", hist_percent=0.9999)
    theirs = ort_quantize_static(model, calibration, tmp_path)
    reference = outputs(model, test)
    result = {
        "fp32_ms": latency_ms(model, test[0]),
        "ours_ms": latency_ms(ours, test[0]),
        "ort_ms": latency_ms(theirs, test[0]),
        "ours_cos": cosine(outputs(ours, test), reference),
        "ort_cos": cosine(outputs(theirs, test), reference),
    }
    int8, float_convs = int8_conv_count(ours, tmp_path / "optimized.onnx")
    print(f"\n{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in result.items()) + f", QLinearConv={int8}")
    assert float_convs == 0 and int8 == sum(n.op_type == "Conv" for n in model.graph.node)
    return result


def test_ppocr_cls(tmp_path):
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    path = Path(rapidocr.__file__).parent / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    model = lifted_and_simplified(onnx.load(str(path)))
    rng = np.random.default_rng(0)
    batches = [{"x": rng.uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32)} for _ in range(24)]
    result = compare("PP-OCR cls 1x3x48x192", model, batches[:16], batches[16:], tmp_path)
    assert result["ours_cos"] > 0.98 and result["ours_cos"] >= result["ort_cos"] - 0.01


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def test_resnet_like_cnn_is_faster_in_int8(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        _Block(32, 32, 1),
        _Block(32, 32, 1),
        _Block(32, 64, 2),
        _Block(64, 64, 1),
        _Block(64, 128, 2),
        _Block(128, 128, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.train()
        for _ in range(10):
            net(torch.randn(8, 3, 96, 96))
    model = lifted_and_simplified(export(net, torch.randn(1, 3, 96, 96), tmp_path / "resnet.onnx"))
    rng = np.random.default_rng(0)
    batches = [{"x": rng.standard_normal((1, 3, 96, 96)).astype(np.float32)} for _ in range(24)]
    result = compare("ResNet-like 1x3x96x96", model, batches[:16], batches[16:], tmp_path)
    assert result["ours_ms"] < 0.7 * result["fp32_ms"]
    assert result["ours_cos"] > 0.99
