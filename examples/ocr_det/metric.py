"""Total IoU of a DB text-probability map against rendered text-region masks.

"Total IoU" sums intersections and unions over the whole evaluation set before dividing, so large and
small images weigh by their pixels, the way segmentation benchmarks (and PaddleSeg's table) report it.
"""

from __future__ import annotations

import numpy as np

from autocompress.errors import DataError
from examples.common.evaluation import EvalCallback, predict_batches
from examples.common.models import Predictor

# DBPostProcess binarises the probability map at this threshold (rapidocr config.yaml, Det.thresh).
TEXT_THRESHOLD = 0.3


def iou_counts(prob_maps: np.ndarray, masks: np.ndarray, threshold: float = TEXT_THRESHOLD) -> tuple[int, int]:
    """(intersection, union) pixel counts of ``prob_maps > threshold`` and ``masks``.

    ``prob_maps`` is the det output [N, 1, H, W] (or [N, H, W]); ``masks`` is [N, H, W] with 0/1 values.
    """
    if prob_maps.ndim == 4:
        if prob_maps.shape[1] != 1:
            raise DataError(f"expected a one-channel probability map [N, 1, H, W], got shape {prob_maps.shape}")
        prob_maps = prob_maps[:, 0]
    if prob_maps.shape != masks.shape:
        raise DataError(f"probability map shape {prob_maps.shape} does not match mask shape {masks.shape}")
    predicted = prob_maps > threshold
    truth = masks.astype(bool)
    return int(np.count_nonzero(predicted & truth)), int(np.count_nonzero(predicted | truth))


def total_iou(prob_maps: np.ndarray, masks: np.ndarray, threshold: float = TEXT_THRESHOLD) -> float:
    """Total IoU of one array of maps; 1.0 when both prediction and truth are empty."""
    intersection, union = iou_counts(prob_maps, masks, threshold)
    return intersection / union if union else 1.0


def make_iou_eval(
    images: np.ndarray, masks: np.ndarray, batch_size: int = 8, input_name: str = "x", threshold: float = TEXT_THRESHOLD
) -> EvalCallback:
    """``eval_callback(predictor) -> total IoU`` over preprocessed ``images`` [N, 3, H, W] and ``masks`` [N, H, W]."""
    if len(images) != len(masks):
        raise DataError(f"{len(images)} images but {len(masks)} masks; every image needs one mask")

    def eval_callback(predictor: Predictor) -> float:
        intersection = union = 0
        for rows, prob_maps in predict_batches(predictor, images, batch_size, input_name):
            batch_intersection, batch_union = iou_counts(prob_maps, masks[rows], threshold)
            intersection += batch_intersection
            union += batch_union
        return intersection / union if union else 1.0

    return eval_callback
