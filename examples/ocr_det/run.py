"""Compress PP-OCRv4 det (DBNet) on rendered text scenes; the metric is total IoU of the text map.

python examples/ocr_det/run.py --config_path examples/ocr_det/configs/quant_post.yaml --save_dir out/det_ptq
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `examples.*`

from examples.common.cli import example_arg_parser, run_compression
from examples.common.models import DET_MODEL_FILENAME, rapidocr_model_dir
from examples.ocr_det.reader import build_det_data

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None):
    parser = example_arg_parser(
        "Compress PP-OCRv4 text detection",
        str(rapidocr_model_dir()),
        DET_MODEL_FILENAME,
        HERE / "configs/baseline.yaml",
    )
    parser.add_argument("--num_train", type=int, default=64, help="rendered scenes for calibration/training")
    parser.add_argument("--num_eval", type=int, default=32, help="rendered scenes for the IoU evaluation")
    parser.add_argument("--image_size", type=int, default=640, help="square input side, a multiple of 32")
    args = parser.parse_args(argv)
    data = build_det_data(args.num_train, args.num_eval, args.image_size, args.batch_size, args.seed)
    input_shapes = {"x": [-1, 3, args.image_size, args.image_size]}
    return run_compression(args, data.train_loader, data.eval_callback, input_shapes, metric_name="Total IoU")


if __name__ == "__main__":
    main()
