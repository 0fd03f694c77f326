"""NudeNet's detector (`nudenet/320n.onnx`): YOLOv8n, 18 classes, one output [N, 22, A] that holds the box
(centre/size) and the class scores of every anchor point.

Data: 2x2 mosaics of random crops of bundled photos (the astronaut and the cameraman give faces, the others
background), of random aspect, padded to a square and resized to 320 as the package does. No labels (none should be
made for this model): the metric is the box F1 (IoU >= 0.5, same class) against the fp32 model's boxes, both decoded
as the package does (best class >= 0.2, then class-agnostic `cv2.dnn.NMSBoxes` 0.25/0.45).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmarks.zoo.boxes import Detections, corners_from_centers, f1_score
from benchmarks.zoo.people import render_mosaic
from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file

INPUT_SIZE = 320
CANDIDATE_THRESHOLD, SCORE_THRESHOLD, NMS_THRESHOLD = 0.2, 0.25, 0.45
CALIBRATION_SEED, EVALUATION_SEED = 700, 701


def onnx_file(_work: Path) -> Path:
    return package_file("nudenet", "320n.onnx")


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """[1, 3, 320, 320] float32 RGB in [0, 1]; follows `nudenet._read_image` (pad right/bottom to a square, then
    `cv2.dnn.blobFromImage` with 1/255, size 320, swapRB on its BGR image)."""
    bgr = np.ascontiguousarray(image_rgb[..., ::-1])
    side = max(bgr.shape[:2])
    padded = cv2.copyMakeBorder(bgr, 0, side - bgr.shape[0], 0, side - bgr.shape[1], cv2.BORDER_CONSTANT)
    return cv2.dnn.blobFromImage(padded, 1 / 255.0, (INPUT_SIZE, INPUT_SIZE), (0, 0, 0), swapRB=True, crop=False)


def _mosaics(n: int, seed: int) -> list[Feed]:
    rng = np.random.default_rng(seed)
    sizes = [(int(h), int(w)) for h, w in rng.integers(120, 240, size=(n, 2))]
    return [{"images": preprocess(render_mosaic(rng, *size))} for size in sizes]


def calibration(n: int) -> list[Feed]:
    return _mosaics(n, CALIBRATION_SEED)


def evaluation(n: int) -> EvalSet:
    return EvalSet(feeds=_mosaics(n, EVALUATION_SEED))


def decode(outputs: Outputs) -> Detections:
    """Boxes in the 320x320 input frame; follows `nudenet._postprocess`."""
    rows = outputs[0][0].T
    class_scores = rows[:, 4:]
    best = class_scores.max(axis=1)
    kept = best >= CANDIDATE_THRESHOLD
    boxes = corners_from_centers(rows[kept, :4])
    found = Detections(boxes, best[kept], class_scores[kept].argmax(axis=1))
    xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes]
    keep = cv2.dnn.NMSBoxes(xywh, found.scores.astype(float).tolist(), SCORE_THRESHOLD, NMS_THRESHOLD)
    return found.take(np.asarray(keep, dtype=np.int64).reshape(-1))


MODEL = ZooModel(
    name="nudenet",
    family="YOLO-style detector",
    requirement="nudenet==3.4.2",
    metric="box F1 (IoU 0.5, same class) vs fp32 boxes after the package's cv2 NMSBoxes",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=f1_score(decode),
    features="YOLOv8n, boxes + 18 class scores in one output [N, 22, A], opset 17, symbolic output dims, dynamic batch",
    calibration_size=32,
    evaluation_size=48,
)
