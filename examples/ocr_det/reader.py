"""Training loader and evaluation callback of the PP-OCRv4 det example, built from rendered scenes."""

from __future__ import annotations

from dataclasses import dataclass

from examples.common.evaluation import EvalCallback
from examples.common.loader import BatchLoader
from examples.common.ocr_data import OcrDetData, ocr_det_dataset
from examples.ocr_det.metric import make_iou_eval


@dataclass(frozen=True)
class DetExampleData:
    train_loader: BatchLoader
    eval_callback: EvalCallback
    eval_data: OcrDetData


def build_det_data(num_train: int, num_eval: int, image_size: int, batch_size: int, seed: int = 0) -> DetExampleData:
    """Train and eval scenes come from different seeds (``seed`` and ``seed + 1``), so they never coincide."""
    size = (image_size, image_size)
    train = ocr_det_dataset(num_train, seed=seed, size=size)
    evaluation = ocr_det_dataset(num_eval, seed=seed + 1, size=size)
    return DetExampleData(
        train_loader=BatchLoader(train.inputs, batch_size),
        eval_callback=make_iou_eval(evaluation.inputs, evaluation.masks, batch_size),
        eval_data=evaluation,
    )
