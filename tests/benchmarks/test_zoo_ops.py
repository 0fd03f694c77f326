"""The zoo's op counts on tiny models quantized by ONNX Runtime's own quantizers (QDQ, QOperator, dynamic) and on a
hand-made QDQ graph with an If branch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static

from benchmarks.zoo.ops import OpCount, count_graph, count_ops

CONV_MATMUL = """
<ir_version: 8, opset_import: ["" : 17]>
conv_matmul (float[1, 2, 4, 4] x) => (float[1, 5] y) {
    c = Conv(x, w_conv)
    f = Flatten(c)
    y = MatMul(f, w_mm)
}
"""
BRANCHES = """
<ir_version: 8, opset_import: ["" : 17]>
branches (float[1, 2, 4, 4] x, bool flag, int8[3, 2, 1, 1] w_q, float w_scale) => (float y) {
    w = DequantizeLinear(w_q, w_scale)
    y = If(flag) <then_branch = then () => (float t) { t = Conv(x, w) },
                  else_branch = other () => (float e) { e = MatMul(x, x) }>
}
"""


def _conv_matmul(path: Path) -> Path:
    """x [1, 2, 4, 4] -> Conv (3 filters) -> Flatten -> MatMul [48, 5]: one Conv and one MatMul with weights."""
    rng = np.random.default_rng(0)
    model = onnx.parser.parse_model(CONV_MATMUL)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(rng.normal(size=(3, 2, 1, 1)).astype(np.float32), "w_conv"),
            numpy_helper.from_array(rng.normal(size=(48, 5)).astype(np.float32), "w_mm"),
        ]
    )
    onnx.save(model, str(path))
    return path


class _Feeds(CalibrationDataReader):
    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.feeds = iter([{"x": rng.normal(size=(1, 2, 4, 4)).astype(np.float32)} for _ in range(4)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


@pytest.mark.parametrize(
    ("quant_format", "marker"), [(QuantFormat.QDQ, "DequantizeLinear"), (QuantFormat.QOperator, "QLinearConv")]
)
def test_static_quantization_counts_both_ops_int8(tmp_path: Path, quant_format: QuantFormat, marker: str) -> None:
    source = _conv_matmul(tmp_path / "fp32.onnx")
    out = tmp_path / "int8.onnx"
    quantize_static(str(source), str(out), _Feeds(), quant_format=quant_format)
    assert marker in {node.op_type for node in onnx.load(str(out)).graph.node}
    assert count_ops(source) == OpCount(0, 2)
    assert count_ops(out) == OpCount(2, 0)


def test_dynamic_quantization_of_matmul_only_leaves_the_conv_float(tmp_path: Path) -> None:
    source = _conv_matmul(tmp_path / "fp32.onnx")
    out = tmp_path / "dynamic.onnx"
    quantize_dynamic(str(source), str(out), op_types_to_quantize=["MatMul"])
    assert count_ops(out) == OpCount(1, 1)
    assert count_ops(out).cell() == "1 / 1"


def test_a_branch_reads_the_dequantized_weight_of_its_parent() -> None:
    """A Conv inside an If branch whose weight is dequantized in the main graph is int8; a MatMul of two
    activations (no weight) in the other branch stays float."""
    assert count_graph(onnx.parser.parse_model(BRANCHES).graph) == OpCount(1, 1)
