"""The report of one compression as a record: report.json holds its `to_dict()`, report.html renders it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autocompress.report.summary import ModelSummary
from autocompress.strategy.records import Candidate, StageInfo


@dataclass
class StageRecord:
    """One stage of the run: its name, how long it took, and its record."""

    stage: str
    seconds: float
    info: StageInfo

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "seconds": self.seconds, "info": self.info.to_dict()}


@dataclass
class HardwareInfo:
    """Where latencies were measured, so a reader can tell which numbers compare."""

    deploy_hardware: str
    latency_measured_on_target: bool
    note: str
    providers: list[str]
    latency_threads: int
    machine: str
    processor: str
    cpu_count: int | None
    onnxruntime: str
    onnx: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "deploy_hardware": self.deploy_hardware,
            "latency_measured_on_target": self.latency_measured_on_target,
            "note": self.note,
            "providers": list(self.providers),
            "latency_threads": self.latency_threads,
            "machine": self.machine,
            "processor": self.processor,
            "cpu_count": self.cpu_count,
            "onnxruntime": self.onnxruntime,
            "onnx": self.onnx,
        }


@dataclass
class Report:
    """Everything one compression found: the model before and after, each stage's record, every candidate."""

    baseline: ModelSummary
    compressed: ModelSummary
    higher_is_better: bool
    timeline: list[StageRecord]
    candidates: list[Candidate]
    elapsed_s: float
    hardware: HardwareInfo
    model_source: str
    model_format: str
    #: indices of the batches of train_dataloader / eval_dataloader skipped for NaN or inf values
    skipped_batches: dict[str, list[int]] = field(default_factory=dict)
    #: what the user should know about the result as a whole (a metric drop beyond the tolerance), first in the HTML
    warnings: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return round(self.baseline.latency_ms / max(self.compressed.latency_ms, 1e-9), 4)

    @property
    def speedup_by_threads(self) -> dict[str, float]:
        """Baseline over compressed latency at each thread count both were measured at."""
        base, comp = self.baseline.latency_ms_by_threads, self.compressed.latency_ms_by_threads
        return {threads: round(base[threads] / max(comp[threads], 1e-9), 4) for threads in base if threads in comp}

    @property
    def size_ratio(self) -> float:
        """How many times smaller the compressed model's file is."""
        return round(self.baseline.size_mb / max(self.compressed.size_mb, 1e-9), 4)

    @property
    def strategy(self) -> list[str]:
        return [record.stage for record in self.timeline]

    @property
    def plans(self) -> list[StageInfo]:
        """The records of the stages that chose a plan automatically."""
        return [record.info for record in self.timeline if record.info.plan is not None]

    def to_dict(self) -> dict[str, Any]:
        """report.json's content: strict JSON data (a NaN or inf becomes null, listed under "non_finite")."""
        skipped = {f"{source}_batches_skipped_nonfinite": sorted(ids) for source, ids in self.skipped_batches.items()}
        return strict_report(
            {
                "baseline": self.baseline.to_dict(),
                "compressed": self.compressed.to_dict(),
                "speedup": self.speedup,
                "speedup_by_threads": self.speedup_by_threads,
                "size_ratio": self.size_ratio,
                "metric_higher_is_better": self.higher_is_better,
                "strategy": self.strategy,
                "plan": [{"plan": info.plan, "reasons": info.reasons} for info in self.plans],
                "timeline": [record.to_dict() for record in self.timeline],
                "candidates": [candidate.to_dict() for candidate in self.candidates],
                "elapsed_s": self.elapsed_s,
                "hardware": self.hardware.to_dict(),
                "data": skipped,
                "model": {"source": self.model_source, "format": self.model_format},
                "warnings": list(self.warnings),
            }
        )


def strict_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report as strict JSON data (report.json must load in any JSON parser): a NaN or inf becomes null, and
    "non_finite" names where each was and what it was."""
    nulled: dict[str, str] = {}
    plain = _plain(report, "", nulled)
    if nulled:
        plain["non_finite"] = nulled
    return plain


def _plain(value: Any, where: str, nulled: dict[str, str]) -> Any:
    """`value` as JSON data: numpy scalars and arrays as numbers and lists, paths as strings, NaN/inf as None."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        nulled[where] = str(value)
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}" if where else str(k), nulled) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", nulled) for i, v in enumerate(value)]
    return value
