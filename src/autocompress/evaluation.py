"""How candidate models are scored: the user's eval_callback, or EMD to the original on eval_dataloader."""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import onnx

from autocompress.data.batches import BatchAdapter
from autocompress.errors import ConfigError, DataError
from autocompress.runtime.ort import HardwareTarget, Predictor
from autocompress.search.emd import emd_distance

log = logging.getLogger(__name__)


class Evaluator:
    """Scores ONNX models. `better(a, b)` and `drop(baseline, value)` respect the metric's direction.

    eval_callback contract: called with a Predictor (feed dict -> list of numpy outputs, ONNX Runtime on the
    candidate model), returns a float; higher is better unless higher_is_better=False.
    """

    def __init__(
        self,
        reference_model: onnx.ModelProto,
        hardware: HardwareTarget,
        eval_callback: Callable | None = None,
        eval_batches: BatchAdapter | None = None,
        higher_is_better: bool = True,
        threads: int | None = None,
    ):
        if eval_callback is None and eval_batches is None:
            raise ConfigError("give eval_callback (a function of a predictor returning a metric) or eval_dataloader")
        if eval_callback is not None and not callable(eval_callback):
            raise ConfigError(f"eval_callback must be callable, got {type(eval_callback).__name__}")
        self.callback = eval_callback
        self.batches = eval_batches
        self.hardware = hardware
        self.threads = threads
        if eval_callback is not None:
            self.name = getattr(eval_callback, "metric_name", None) or getattr(eval_callback, "__name__", "metric")
            self.higher_is_better = higher_is_better
        else:
            self.name = "EMD"
            self.higher_is_better = False
        self._reference_model = reference_model
        self._reference_outputs: list[list[np.ndarray]] | None = None

    def _outputs(self, model: onnx.ModelProto) -> list[list[np.ndarray]]:
        predictor = Predictor(model, self.hardware, self.threads)
        return [predictor(feed) for feed, _ in self.batches]

    def __call__(self, model: onnx.ModelProto) -> float:
        if self.callback is not None:
            value = self.callback(Predictor(model, self.hardware, self.threads))
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"eval_callback must return a number, it returned {value!r}") from None
            if math.isnan(value):
                raise DataError("eval_callback returned NaN; check the eval function and data")
            return value
        return emd_distance(self._reference(), self._outputs(model))

    def _reference(self) -> list[list[np.ndarray]]:
        if self._reference_outputs is None:
            self._reference_outputs = self._outputs(self._reference_model)
        return self._reference_outputs

    def tolerance(self, baseline: float, relative: float) -> float:
        """The metric drop that counts as `relative` (e.g. 0.01 = 1%).

        For a user metric, relative to the baseline value. For EMD (baseline 0), relative to the standard
        deviation of the original model's outputs: an EMD of 1% of the outputs' spread.
        """
        if self.callback is not None:
            return abs(baseline) * relative
        values = [np.asarray(o, dtype=np.float64).ravel() for batch in self._reference() for o in batch
                  if np.issubdtype(np.asarray(o).dtype, np.floating)]
        spread = float(np.std(np.concatenate(values))) if values else 0.0
        return spread * relative

    def better(self, a: float, b: float) -> bool:
        """True if metric a is strictly better than b."""
        return a > b if self.higher_is_better else a < b

    def drop(self, baseline: float, value: float) -> float:
        """How much worse `value` is than `baseline` (positive = worse), in metric units."""
        return baseline - value if self.higher_is_better else value - baseline
