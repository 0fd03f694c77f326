"""Command-line flags and the compression call shared by the example scripts (the seed's flag names)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from .evaluation import EvalCallback


def example_arg_parser(
    description: str, model_dir: str | None, model_filename: str | None, config_path: Path
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model_dir", default=model_dir, help="folder of the model to compress")
    parser.add_argument("--model_filename", default=model_filename, help="model file inside model_dir")
    parser.add_argument("--params_filename", default=None, help="Paddle .pdiparams file; None for ONNX")
    parser.add_argument("--save_dir", default="./output", help="where model.onnx, config.yaml and report.json go")
    parser.add_argument("--devices", default="cpu", choices=["cpu", "gpu"], help="where training runs")
    parser.add_argument(
        "--config_path", default=str(config_path), help="YAML with Global/TrainConfig/strategy sections"
    )
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendered or cropped data")
    return parser


def run_compression(
    args: argparse.Namespace,
    train_loader: Any,
    eval_callback: EvalCallback,
    input_shapes: dict[str, list[int]] | None = None,
    metric_name: str | None = None,
) -> Any:
    """Build AutoCompression from the parsed flags, compress, and print the report's headline numbers."""
    from autocompress import AutoCompression

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    compressor = AutoCompression(
        model_dir=args.model_dir,
        train_dataloader=train_loader,
        model_filename=args.model_filename,
        params_filename=args.params_filename,
        save_dir=args.save_dir,
        config=args.config_path,
        input_shapes=input_shapes,
        eval_callback=eval_callback,
        deploy_hardware="cpu",
        devices=args.devices,
        metric_name=metric_name,
    )
    result = compressor.compress()
    headline = {key: result.report.get(key) for key in ("baseline", "compressed", "speedup", "strategy")}
    print(json.dumps(headline, indent=2, default=str))
    print(f"saved to {result.save_dir}")
    return result
