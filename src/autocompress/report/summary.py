"""The per-model figures compared before and after compression."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx

from autocompress.graph.stats import model_size_mb
from autocompress.prune.stats import count_params_and_macs
from autocompress.runtime.ort import HardwareTarget, measure_latency


@dataclass
class ModelSummary:
    metric: float
    metric_name: str
    latency_ms: float
    latency_p90_ms: float
    size_mb: float
    params: int
    macs: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(
    model: onnx.ModelProto,
    metric: float,
    metric_name: str,
    feed: dict[str, np.ndarray],
    hardware: HardwareTarget,
    threads: int,
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
    )
