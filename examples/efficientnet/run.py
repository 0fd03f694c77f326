"""Compress EfficientNet-Lite0 (ImageNet weights from pip) on crops of bundled photos.

Without ImageNet offline, the metric is top-1 agreement with the fp32 model on evaluation crops taken
from photos the calibration set never sees. Without --model_dir the packaged PyTorch weights are
exported to ONNX in a temporary folder first.

    python examples/efficientnet/run.py --config_path examples/efficientnet/configs/quant_post.yaml --save_dir out/effnet_ptq
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `examples.*`

from examples.common.cli import example_arg_parser, run_compression
from examples.common.evaluation import make_agreement_eval
from examples.common.imagenet_photos import INPUT_SIZE, imagenet_photo_split
from examples.common.loader import BatchLoader
from examples.common.models import EFFICIENTNET_INPUT_NAME, export_efficientnet_lite0, ort_predictor

HERE = Path(__file__).resolve().parent
EXPORTED_FILENAME = "efficientnet_lite0.onnx"


def main(argv: list[str] | None = None):
    parser = example_arg_parser("Compress EfficientNet-Lite0", None, EXPORTED_FILENAME, HERE / "configs/baseline.yaml")
    parser.add_argument("--num_train", type=int, default=256, help="calibration/training crops")
    parser.add_argument("--num_eval", type=int, default=512, help="evaluation crops (other photos)")
    parser.set_defaults(batch_size=16)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="effnet_lite0_") as export_dir:
        if args.model_dir is None:
            export_efficientnet_lite0(Path(export_dir) / EXPORTED_FILENAME)
            args.model_dir, args.model_filename = export_dir, EXPORTED_FILENAME
        split = imagenet_photo_split(args.num_train, args.num_eval, seed=args.seed)
        fp32 = ort_predictor(Path(args.model_dir) / args.model_filename)
        eval_callback = make_agreement_eval(fp32, split.evaluation, args.batch_size, EFFICIENTNET_INPUT_NAME)
        train_loader = BatchLoader(split.calibration, args.batch_size, EFFICIENTNET_INPUT_NAME)
        input_shapes = {EFFICIENTNET_INPUT_NAME: [-1, 3, INPUT_SIZE, INPUT_SIZE]}
        return run_compression(args, train_loader, eval_callback, input_shapes, metric_name="top-1 agreement with fp32")


if __name__ == "__main__":
    main()
