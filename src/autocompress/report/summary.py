"""The per-model figures compared before and after compression."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from autocompress.graph.stats import model_size_mb
from autocompress.prune.stats import count_params_and_macs
from autocompress.runtime.ort import HardwareTarget, interleaved_latency, measure_latency


@dataclass
class ModelSummary:
    """One model's metric, speed and size. `latency_ms` is measured at Global.latency_threads;
    `latency_ms_by_threads` at 1 thread and at all cores (keys are thread counts as text, as in report.json)."""

    metric: float
    metric_name: str
    latency_ms: float
    latency_p90_ms: float
    size_mb: float
    params: int
    macs: int
    #: the other values a mapping-returning eval_callback gave beside the metric
    extra_metrics: dict[str, float] = field(default_factory=dict)
    latency_ms_by_threads: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(
    model: onnx.ModelProto,
    metric: float,
    metric_name: str,
    feed: dict[str, np.ndarray],
    hardware: HardwareTarget,
    threads: int,
    extra_metrics: Mapping[str, float] | None = None,
) -> ModelSummary:
    latency = measure_latency(model, feed, hardware, threads=threads)
    counts = count_params_and_macs(model, {name: list(value.shape) for name, value in feed.items()})
    return ModelSummary(
        metric=float(metric),
        metric_name=metric_name,
        latency_ms=round(latency.median_ms, 4),
        latency_p90_ms=round(latency.p90_ms, 4),
        size_mb=round(model_size_mb(model), 4),
        params=counts.params,
        macs=counts.macs,
        extra_metrics=dict(extra_metrics or {}),
    )


def latencies_by_threads(
    models: Sequence[onnx.ModelProto], feed: Mapping[str, np.ndarray], hardware: HardwareTarget, counts: Sequence[int]
) -> list[dict[str, float]]:
    """Median latency in ms of each model at each thread count, the models measured in interleaved rounds."""
    measured: list[dict[str, float]] = [{} for _ in models]
    for threads in counts:
        for by_threads, ms in zip(measured, interleaved_latency(models, feed, hardware, threads)):
            by_threads[str(threads)] = round(ms, 4)
    return measured
