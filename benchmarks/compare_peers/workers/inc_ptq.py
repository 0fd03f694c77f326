"""Intel Neural Compressor 2.x post-training static quantization of the ONNX model (onnxrt backend).

    .venvs/inc/bin/python inc_ptq.py CASE_DIR OUT_DIR [MAX_TRIALS]

`quantization.fit` with PostTrainingQuantConfig defaults (QOperator format, 1% relative tolerable loss) and
an eval_func on the table's evaluation set, so INC runs its accuracy-driven tuning loop.
"""

from __future__ import annotations

import sys
from pathlib import Path

from neural_compressor import PostTrainingQuantConfig, quantization
from neural_compressor.config import TuningCriterion
from peer_io import Stopwatch, evaluate, ort_predictor, package_versions, worker_args, write_result

DEFAULT_MAX_TRIALS = 20


class CalibrationLoader:
    """INC's dataloader protocol: a batch_size attribute and (input, label) pairs."""

    def __init__(self, feeds: list, input_name: str):
        self.feeds = feeds
        self.input_name = input_name
        self.batch_size = len(next(iter(feeds[0].values())))

    def __iter__(self):
        for feed in self.feeds:
            yield feed[self.input_name], None


def main(argv: list[str]) -> None:
    data, out_dir, extra = worker_args(argv)
    max_trials = int(extra[0]) if extra else DEFAULT_MAX_TRIALS
    items = data.eval_items()
    config = PostTrainingQuantConfig(approach="static", tuning_criterion=TuningCriterion(max_trials=max_trials))
    with Stopwatch() as watch:
        quantized = quantization.fit(
            str(data.fp32_path),
            config,
            calib_dataloader=CalibrationLoader(data.calibration_feeds(), data.input_name),
            eval_func=lambda model: evaluate(ort_predictor(model), data.metric, items)[0],
        )
    if quantized is None:
        raise SystemExit("INC found no quantized model within the tolerance and trial budget")
    out = out_dir / "model.onnx"
    quantized.save(str(out))
    write_result(
        out_dir,
        Path(out),
        watch.seconds,
        package_versions("neural-compressor", "onnxruntime", "onnx"),
        f"fit(PostTrainingQuantConfig static, QOperator, tolerable_loss 1% relative, max_trials={max_trials})",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
