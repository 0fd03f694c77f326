"""Compress the PP-OCR text-direction classifier (0 / 180 degrees) on rendered text lines; metric: accuracy.

python examples/ocr_cls/run.py --config_path examples/ocr_cls/configs/quant_post.yaml --save_dir out/cls_ptq
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `examples.*`

from examples.common.cli import example_arg_parser, run_compression
from examples.common.evaluation import make_top1_eval
from examples.common.loader import BatchLoader
from examples.common.models import CLS_MODEL_FILENAME, rapidocr_model_dir
from examples.common.ocr_data import CLS_INPUT_SHAPE, ocr_cls_dataset

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None):
    parser = example_arg_parser(
        "Compress the PP-OCR 0/180 text-line classifier",
        str(rapidocr_model_dir()),
        CLS_MODEL_FILENAME,
        HERE / "configs/baseline.yaml",
    )
    parser.add_argument("--num_train", type=int, default=256, help="rendered lines for calibration/training")
    parser.add_argument("--num_eval", type=int, default=512, help="rendered lines for the accuracy evaluation")
    parser.set_defaults(batch_size=32)
    args = parser.parse_args(argv)
    train = ocr_cls_dataset(args.num_train, seed=args.seed)
    evaluation = ocr_cls_dataset(args.num_eval, seed=args.seed + 1)
    eval_callback = make_top1_eval(evaluation.inputs, evaluation.labels, args.batch_size)
    input_shapes = {"x": [-1, *CLS_INPUT_SHAPE]}
    return run_compression(
        args, BatchLoader(train.inputs, args.batch_size), eval_callback, input_shapes, metric_name="accuracy"
    )


if __name__ == "__main__":
    main()
