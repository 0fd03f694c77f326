"""Detection post-processing shared by the zoo's detectors: IoU, greedy NMS and box F1 against reference boxes.

A detector's score is the F1 of its boxes against the fp32 model's boxes on the same images, both decoded by the
package's own post-processing, so every detector module turns raw outputs into `Detections` and calls `box_f1`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from autocompress.errors import DataError
from benchmarks.zoo.spec import Outputs


@dataclass(frozen=True)
class Detections:
    """The boxes one image yields: corners [K, 4] (x1, y1, x2, y2), scores [K] and class ids [K]."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @staticmethod
    def concatenate(parts: Sequence[Detections]) -> Detections:
        if not parts:
            return Detections.empty()
        return Detections(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("boxes", "scores", "classes")))

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, keep: np.ndarray | Sequence[int]) -> Detections:
        keep = np.asarray(keep, dtype=np.int64)
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])


def corners_from_centers(xywh: np.ndarray) -> np.ndarray:
    """[K, 4] centre x, centre y, width, height -> [K, 4] corners, the form every YOLO head emits."""
    half = xywh[:, 2:4] / 2.0
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray, pixel_offset: float = 0.0) -> np.ndarray:
    """[len(a), len(b)] IoU of corner boxes. `pixel_offset=1` counts inclusive pixel corners (older detectors'
    convention: a box from x1 to x2 covers x2 - x1 + 1 pixels)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo + pixel_offset, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2] + pixel_offset, 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2] + pixel_offset, 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    pixel_offset: float = 0.0,
    max_candidates: int | None = None,
    max_keep: int | None = None,
) -> np.ndarray:
    """Greedy single-class NMS: indices of kept boxes, best score first. A box is dropped when its IoU with a kept
    box exceeds `iou_threshold`; only the `max_candidates` best boxes are considered and at most `max_keep` kept
    (PicoDet's hard NMS limits both)."""
    order = np.argsort(-scores, kind="stable")
    if max_candidates is not None:
        order = order[:max_candidates]
    keep: list[int] = []
    while order.size and (max_keep is None or len(keep) < max_keep):
        best = int(order[0])
        keep.append(best)
        overlap = iou_matrix(boxes[best : best + 1], boxes[order[1:]], pixel_offset)[0]
        order = order[1:][overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def matched_pairs(found: Detections, reference: Detections, iou_threshold: float = 0.5) -> int:
    """How many boxes of `found` match a distinct `reference` box of the same class with IoU >= `iou_threshold`;
    `found` boxes are matched best score first, each to its highest-IoU free reference box."""
    if not len(found) or not len(reference):
        return 0
    iou = iou_matrix(found.boxes, reference.boxes)
    iou[found.classes[:, None] != reference.classes[None, :]] = 0.0
    free = np.ones(len(reference), dtype=bool)
    matches = 0
    for row in np.argsort(-found.scores, kind="stable"):
        candidates = np.where(free & (iou[row] >= iou_threshold), iou[row], -1.0)
        column = int(np.argmax(candidates))
        if candidates[column] >= 0.0:
            free[column] = False
            matches += 1
    return matches


def box_f1(found: Sequence[Detections], reference: Sequence[Detections], iou_threshold: float = 0.5) -> float:
    """F1 of `found` boxes against `reference` boxes over all images (1.0 when neither has any box)."""
    if len(found) != len(reference):
        raise DataError(f"box_f1 needs one Detections per image on both sides, got {len(found)} and {len(reference)}")
    matches = sum(matched_pairs(f, r, iou_threshold) for f, r in zip(found, reference))
    total = sum(len(f) + len(r) for f, r in zip(found, reference))
    return 1.0 if total == 0 else 2.0 * matches / total


Score = Callable[[Sequence[Outputs], Sequence[Outputs], object], float]


def f1_score(decode: Callable[[Outputs], Detections]) -> Score:
    """A detector's `score`: box F1 of the boxes `decode` finds in a tool's outputs against those it finds in fp32's."""

    def score(outputs: Sequence[Outputs], fp32: Sequence[Outputs], _labels: object) -> float:
        return box_f1([decode(out) for out in outputs], [decode(out) for out in fp32])

    return score
