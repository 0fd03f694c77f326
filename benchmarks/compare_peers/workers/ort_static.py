"""ONNX Runtime quantize_static (QDQ, per-channel, U8 activations / S8 weights, MinMax) after quant_pre_process.

The recipe of the PTQ benchmark's ORT rows (benchmarks/ptq_vs_ort.py), written against onnx/onnxruntime
alone so that the process's peak RSS is ORT's, not that of autocompress's imports.

    .venv/bin/python benchmarks/compare_peers/workers/ort_static.py CASE_DIR OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from peer_io import Stopwatch, package_versions, worker_args, write_result

PER_CHANNEL_OPSET = 13  # per-channel DequantizeLinear (axis attribute) needs opset 13


class ListReader(CalibrationDataReader):
    def __init__(self, feeds: list):
        self.feeds, self.next_index = feeds, 0

    def get_next(self):
        self.next_index += 1
        return self.feeds[self.next_index - 1] if self.next_index <= len(self.feeds) else None

    def rewind(self):
        self.next_index = 0


def prepared(source: Path, out_dir: Path) -> tuple[Path, list[str]]:
    """What an ORT user has to do first: opset 13 for per-channel weights, then quant_pre_process."""
    model = onnx.load(str(source))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    done = []
    if opset < PER_CHANNEL_OPSET:
        source = out_dir / "opset13.onnx"
        onnx.save_model(onnx.version_converter.convert_version(model, PER_CHANNEL_OPSET), str(source))
        done.append(f"opset {opset}->{PER_CHANNEL_OPSET}")
    target = out_dir / "preprocessed.onnx"
    try:
        quant_pre_process(str(source), str(target))
        done.append("quant_pre_process")
    except Exception:  # noqa: BLE001 - symbolic shape inference asserts on some paddle2onnx graphs; ORT's way out
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        done.append("quant_pre_process(skip_symbolic_shape)")
    return target, done


def main(argv: list[str]) -> None:
    data, out_dir, _ = worker_args(argv)
    out = out_dir / "model.onnx"
    with Stopwatch() as watch:
        source, done = prepared(data.fp32_path, out_dir)
        quantize_static(
            str(source),
            str(out),
            ListReader(data.calibration_feeds()),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    write_result(
        out_dir,
        out,
        watch.seconds,
        package_versions("onnxruntime", "onnx"),
        " + ".join([*done, "quantize_static(MinMax)"]),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
