"""How candidate models are scored: the user's eval_callback, or EMD to the original on eval_dataloader.

EMD is computed batch by batch, the candidate's outputs beside the original's, so memory does not grow with the
number of eval batches: the original's outputs (the subsample EMD compares) are kept up to REFERENCE_CACHE_BYTES
and recomputed beyond it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import onnx

from autocompress import progress
from autocompress.data.batches import BatchAdapter
from autocompress.errors import ConfigError, DataError
from autocompress.runtime.ort import HardwareTarget, Predictor
from autocompress.search.emd import output_distances, subsample

log = logging.getLogger(__name__)

#: Memory for the original model's outputs kept between evaluations; batches beyond it are recomputed each time.
REFERENCE_CACHE_BYTES = 256 * 2**20


def _merge_moments(moments: tuple[int, float, float], values: np.ndarray) -> tuple[int, float, float]:
    """Chan et al.'s pairwise update of (count, mean, M2): the variance of all values without keeping them."""
    count, mean, m2 = moments
    flat = values.astype(np.float64, copy=False).ravel()
    n, batch_mean = flat.size, float(flat.mean())
    batch_m2 = float(np.square(flat - batch_mean).sum())
    total = count + n
    delta = batch_mean - mean
    return total, mean + delta * n / total, m2 + batch_m2 + delta * delta * count * n / total


class ReferenceOutputs:
    """The original model's outputs per eval batch, as EMD compares them, within a memory budget.

    The first pass over the eval data also accumulates the mean and variance of all float output values (the
    spread that tolerance() uses) without keeping them.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        batches: BatchAdapter,
        hardware: HardwareTarget,
        threads: int | None,
        budget_bytes: int | None = None,
    ):
        self.model, self.batches, self.hardware, self.threads = model, batches, hardware, threads
        self.budget_bytes = REFERENCE_CACHE_BYTES if budget_bytes is None else budget_bytes
        self._cache: dict[int, list[np.ndarray | None]] = {}
        self._cached_bytes = 0
        self._predictor: Predictor | None = None
        self._moments = (0, 0.0, 0.0)  # count, mean, sum of squared deviations of float output values
        self._seen: set[int] = set()
        self._complete = False
        #: eval batches in one pass: the data's len() if it has one, else known once a pass has finished
        self.batch_count: int | None = progress.known_length(batches)

    def __iter__(self) -> Iterator[tuple[dict[str, np.ndarray], list[np.ndarray | None]]]:
        """(feed, reference outputs) per eval batch."""
        index = -1
        for index, (feed, _) in enumerate(self.batches):
            yield feed, self._outputs(index, feed)
        self._complete, self.batch_count = True, index + 1
        if len(self._cache) == index + 1:
            self._predictor = None  # every batch is cached: the session is no longer needed

    def spread(self) -> float:
        """Standard deviation of all float output values of the original model on the eval data."""
        if not self._complete:
            for _ in self:
                pass
        count, _, squared_deviations = self._moments
        return float(np.sqrt(squared_deviations / count)) if count else 0.0

    def predictor(self) -> Predictor:
        """The original model's session, opened when first needed and kept while batches are not all cached."""
        if self._predictor is None:
            self._predictor = Predictor(self.model, self.hardware, self.threads)
        return self._predictor

    def _outputs(self, index: int, feed: dict[str, np.ndarray]) -> list[np.ndarray | None]:
        if index in self._cache:
            return self._cache[index]
        outputs = self.predictor()(feed)
        if index not in self._seen:
            self._seen.add(index)
            for value in outputs:
                if np.issubdtype(value.dtype, np.floating) and value.size:
                    self._moments = _merge_moments(self._moments, value)
        compared = [subsample(value) for value in outputs]
        size = sum(v.nbytes for v in compared if v is not None)
        if self._cached_bytes + size <= self.budget_bytes:
            self._cache[index] = compared
            self._cached_bytes += size
        return compared


def finite_metric(value: float, source: str, hint: str) -> float:
    """`value`, or a DataError for NaN and ±inf: they compare false or unbeatable against every other score, so no
    candidate could be chosen by them, and they cannot be written to report.json as strict JSON."""
    if not math.isfinite(value):
        raise DataError(
            f"{source} gave {value} for the model being scored; a metric must be a finite number (NaN, inf and "
            f"-inf are refused): {hint}"
        )
    return value


class Evaluator:
    """Scores ONNX models. `better(a, b)` and `drop(baseline, value)` respect the metric's direction.

    eval_callback contract: called with a Predictor (feed dict -> list of numpy outputs, ONNX Runtime on the
    candidate model), returns a float, or a mapping {name: value} whose first entry is the metric (its key names
    it) and whose other entries are shown beside it (`extra_metrics`, of the latest call); higher is better unless
    higher_is_better=False. `metric_name` names the metric in logs and reports, before any other name.
    """

    def __init__(
        self,
        reference_model: onnx.ModelProto,
        hardware: HardwareTarget,
        eval_callback: Callable | None = None,
        eval_batches: BatchAdapter | None = None,
        higher_is_better: bool = True,
        threads: int | None = None,
        metric_name: str | None = None,
    ):
        if eval_callback is None and eval_batches is None:
            raise ConfigError("give eval_callback (a function of a predictor returning a metric) or eval_dataloader")
        if eval_callback is not None and not callable(eval_callback):
            raise ConfigError(f"eval_callback must be callable, got {type(eval_callback).__name__}")
        self.callback = eval_callback
        self.batches = eval_batches
        self.hardware = hardware
        self.threads = threads
        if metric_name is not None and (not isinstance(metric_name, str) or not metric_name.strip()):
            raise ConfigError(f"metric_name must be a non-empty string such as 'top1' or 'mIoU', got {metric_name!r}")
        self._named = metric_name is not None
        #: the metric's other values the callback returned on its latest call (a mapping's later entries)
        self.extra_metrics: dict[str, float] = {}
        if eval_callback is not None:
            self.name = getattr(eval_callback, "metric_name", None) or getattr(eval_callback, "__name__", "metric")
            self.higher_is_better = higher_is_better
        else:
            self.name = "EMD"
            self.higher_is_better = False
        self.name = metric_name or self.name
        self._reference = (
            ReferenceOutputs(reference_model, eval_batches, hardware, threads) if eval_batches is not None else None
        )

    def __call__(self, model: onnx.ModelProto) -> float:
        """The candidate's metric, also noted for the current stage's progress and log line."""
        value = self._score(model)
        progress.note_metric(self.name, value, self.higher_is_better)
        return value

    def _score(self, model: onnx.ModelProto) -> float:
        if self.callback is not None:
            value = self.callback(Predictor(model, self.hardware, self.threads))
            if isinstance(value, Mapping):
                value = self._first_of(value)
            return self._number(value, self.name)
        # scoring the original itself (the baseline) reuses its session rather than opening a second one
        reference = self._reference
        predictor = reference.predictor() if model is reference.model else Predictor(model, self.hardware, self.threads)
        distances = []
        with progress.bar(reference, "evaluation", total=reference.batch_count, unit="batch") as batches:
            for feed, outputs in batches:
                distances.extend(output_distances(outputs, predictor(feed)))
        value = float(np.mean(distances)) if distances else 0.0
        return finite_metric(
            value, "the EMD metric", "an output of the original or the scored model on eval_dataloader holds NaN/Inf"
        )

    def _first_of(self, values: Mapping[Any, Any]) -> Any:
        """The metric of a mapping eval_callback returned: its first entry, named by its key unless metric_name
        was given; the other entries become extra_metrics."""
        if not values:
            raise ConfigError("eval_callback returned an empty mapping; return a number or {name: value, ...}")
        names = list(values)
        if not all(isinstance(name, str) and name for name in names):
            raise ConfigError(f"eval_callback returned a mapping with keys {names!r}; its keys must be metric names")
        if not self._named:
            self.name = names[0]
        self.extra_metrics = {name: self._number(values[name], name) for name in names[1:]}
        return values[names[0]]

    def _number(self, value: Any, name: str) -> float:
        """`value` as a finite float, or an error naming the metric it was returned for."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"eval_callback must return a number or a mapping {{name: number}}; {name!r} is {value!r}"
            ) from None
        return finite_metric(number, f"eval_callback {name!r}", "check the eval function and data")

    def tolerance(self, baseline: float, relative: float) -> float:
        """The metric drop that counts as `relative` (e.g. 0.01 = 1%).

        For a user metric, relative to the baseline value. For EMD (baseline 0), relative to the standard
        deviation of the original model's outputs: an EMD of 1% of the outputs' spread.
        """
        if self.callback is not None:
            return abs(baseline) * relative
        return self._reference.spread() * relative

    def better(self, a: float, b: float) -> bool:
        """True if metric a is strictly better than b."""
        return a > b if self.higher_is_better else a < b

    def drop(self, baseline: float, value: float) -> float:
        """How much worse `value` is than `baseline` (positive = worse), in metric units."""
        return baseline - value if self.higher_is_better else value - baseline
