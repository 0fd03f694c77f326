"""NNCF post-training quantization of the ONNX model: nncf.quantize, or quantize_with_accuracy_control.

    .venvs/nncf/bin/python nncf_ptq.py CASE_DIR OUT_DIR {quantize|accuracy_control} [MAX_DROP]

Defaults otherwise (preset performance, fast bias correction, subset_size = all calibration batches).
Accuracy control validates on the same evaluation set the table reports, one item per sample so that
NNCF can rank layers by per-sample metric changes; max_drop is absolute.
"""

from __future__ import annotations

import sys

import nncf
import onnx
from peer_io import Stopwatch, evaluate, ort_predictor, package_versions, worker_args, write_result

DEFAULT_MAX_DROP = 0.01


def main(argv: list[str]) -> None:
    data, out_dir, extra = worker_args(argv)
    mode = extra[0] if extra else "quantize"
    model = onnx.load(str(data.fp32_path))
    feeds = data.calibration_feeds()
    calibration = nncf.Dataset(feeds)
    with Stopwatch() as watch:
        if mode == "quantize":
            quantized = nncf.quantize(model, calibration, subset_size=len(feeds))
            notes = "nncf.quantize defaults"
        elif mode == "accuracy_control":
            max_drop = float(extra[1]) if len(extra) > 1 else DEFAULT_MAX_DROP

            def validate(candidate, items):
                return evaluate(ort_predictor(candidate), data.metric, items)  # (metric, per-sample values)

            quantized = nncf.quantize_with_accuracy_control(
                model,
                calibration,
                nncf.Dataset(data.eval_items(batch=1)),
                validate,
                max_drop=max_drop,
                subset_size=len(feeds),
            )
            notes = f"quantize_with_accuracy_control(max_drop={max_drop} absolute)"
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    out = out_dir / "model.onnx"
    onnx.save_model(quantized, str(out))
    write_result(out_dir, out, watch.seconds, package_versions("nncf", "onnxruntime", "onnx"), notes)


if __name__ == "__main__":
    main(sys.argv[1:])
