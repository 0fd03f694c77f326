"""ddddocr's click-captcha character detector (`ddddocr/common_det.onnx`): a YOLOX-style model whose single output
[1, 3549, 6] holds centre/size, objectness and class score for every anchor point of three strides.

Data: 320x160 click captchas rendered offline: 3 to 5 letters, digits and symbols, each in its own DejaVu face, size,
angle and contrasting colour, scattered without overlap over a photo crop or a noisy light background with
interference lines, letterboxed to 416x416 as the package does. No labels: the metric is the box F1 (IoU >= 0.5)
against the fp32 model's boxes, both decoded with the package's grid decode and NMS.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmarks.zoo.boxes import Detections, corners_from_centers, f1_score, iou_matrix, nms
from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file
from benchmarks.zoo.text import draw_clutter, rotated_glyph
from examples.common.photos import natural_photos, random_crop_resized
from examples.common.text_render import blend, contrasting_color, light_background

SCENE_HEIGHT, SCENE_WIDTH = 160, 320
INPUT_SIZE = 416
PAD_VALUE = 114
STRIDES = (8, 16, 32)
SCORE_THRESHOLD, NMS_THRESHOLD = 0.1, 0.45
CHARACTERS = "ABCDEFGHKMNPRSTUVWXYZabdefhkmnrt2345678#&%@?"
PHOTOS = ("astronaut", "rocket", "coffee", "chelsea", "china", "flower")
CALIBRATION_SEED, EVALUATION_SEED = 800, 801


def onnx_file(_work: Path) -> Path:
    return package_file("ddddocr", "common_det.onnx")


def _background(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        name = PHOTOS[int(rng.integers(0, len(PHOTOS)))]
        return random_crop_resized(rng, natural_photos()[name], SCENE_HEIGHT, SCENE_WIDTH)
    image = light_background(rng, SCENE_HEIGHT, SCENE_WIDTH)
    draw_clutter(rng, image, lines=int(rng.integers(2, 6)), dots=int(rng.integers(50, 200)))
    return image


def render_scene(rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 click captcha [160, 320, 3] with 3 to 5 scattered characters."""
    image = _background(rng)
    placed = np.zeros((0, 4))
    for char in rng.choice(list(CHARACTERS), int(rng.integers(3, 6))):
        glyph = rotated_glyph(rng, str(char), int(rng.integers(28, 46)), max_degrees=30.0)
        height, width = glyph.shape
        for _ in range(30):
            x, y = int(rng.integers(2, SCENE_WIDTH - width - 2)), int(rng.integers(2, SCENE_HEIGHT - height - 2))
            box = np.array([[x - 4, y - 4, x + width + 4, y + height + 4]], dtype=np.float64)
            if not len(placed) or iou_matrix(box, placed).max() == 0.0:
                break
        else:
            continue
        blend(image, glyph, x, y, contrasting_color(rng, image[y : y + height, x : x + width]))
        placed = np.concatenate([placed, box])
    return image


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """[1, 3, 416, 416] float32 BGR in 0..255; follows `DetectionEngine.preproc` (scale to fit, top-left, pad 114)."""
    bgr = image_rgb[..., ::-1]
    ratio = min(INPUT_SIZE / bgr.shape[0], INPUT_SIZE / bgr.shape[1])
    size = (int(bgr.shape[1] * ratio), int(bgr.shape[0] * ratio))
    padded = np.full((INPUT_SIZE, INPUT_SIZE, 3), PAD_VALUE, dtype=np.uint8)
    padded[: size[1], : size[0]] = cv2.resize(np.ascontiguousarray(bgr), size, interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32)


def _scenes(n: int, seed: int) -> list[Feed]:
    rng = np.random.default_rng(seed)
    return [{"images": preprocess(render_scene(rng))} for _ in range(n)]


def calibration(n: int) -> list[Feed]:
    return _scenes(n, CALIBRATION_SEED)


def evaluation(n: int) -> EvalSet:
    return EvalSet(feeds=_scenes(n, EVALUATION_SEED))


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Anchor-point cell offsets [3549, 2] and their strides [3549, 1] in the head's output order."""
    cells, strides = [], []
    for stride in STRIDES:
        side = INPUT_SIZE // stride
        xs, ys = np.meshgrid(np.arange(side), np.arange(side))
        cells.append(np.stack([xs, ys], axis=2).reshape(-1, 2))
        strides.append(np.full((side * side, 1), stride))
    return np.concatenate(cells), np.concatenate(strides)


def decode(outputs: Outputs) -> Detections:
    """Boxes in the 416x416 input frame; follows `DetectionEngine.demo_postprocess` + `multiclass_nms` (objectness
    times class score > 0.1, NMS 0.45 with inclusive pixel corners)."""
    cells, strides = _grid()
    prediction = outputs[0][0]
    centers = (prediction[:, :2] + cells) * strides
    sizes = np.exp(prediction[:, 2:4]) * strides
    scores = prediction[:, 4] * prediction[:, 5]
    kept = scores > SCORE_THRESHOLD
    boxes = corners_from_centers(np.concatenate([centers, sizes], axis=1)[kept])
    found = Detections(boxes, scores[kept], np.zeros(int(kept.sum()), dtype=np.int64))
    return found.take(nms(found.boxes, found.scores, NMS_THRESHOLD, pixel_offset=1.0))


MODEL = ZooModel(
    name="ddddocr_det",
    family="YOLO-style detector",
    requirement="ddddocr==1.6.1",
    metric="box F1 (IoU 0.5) vs fp32 boxes after the package's decode + NMS",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=f1_score(decode),
    features="YOLOX, one output [1, 3549, 6] (boxes + objectness + class), opset 11, static input, batch fixed 1",
    calibration_size=32,
    evaluation_size=32,
)
