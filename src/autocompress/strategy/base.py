"""The Stage contract and the registry that maps config keys to stage classes.

A strategy registers itself with @register("Key"); planning looks keys up here, so adding a strategy touches no
central if/else. A key without a registered class is a clear "not implemented" error, never a silent no-op.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from autocompress.config.loader import CompressConfig
from autocompress.data.batches import BatchAdapter
from autocompress.errors import StrategyNotImplementedError
from autocompress.evaluation import Evaluator
from autocompress.runtime.ort import HardwareTarget

log = logging.getLogger(__name__)


@dataclass
class CompressionContext:
    """Everything a stage may use; stages read it and return a new model, they do not mutate it."""

    config: CompressConfig
    original: onnx.ModelProto  # the prepared float model: default teacher and EMD reference
    train_batches: BatchAdapter | None
    evaluator: Evaluator
    hardware: HardwareTarget
    work_dir: Path
    baseline_metric: float
    sample_feed: dict[str, np.ndarray]
    threads: int = 1


@dataclass
class StageResult:
    model: onnx.ModelProto
    info: dict[str, Any] = field(default_factory=dict)
    #: Every candidate tried (HPO trials, auto-mode probes): dicts with at least metric and latency_ms if known.
    candidates: list[dict[str, Any]] = field(default_factory=list)


class Stage(ABC):
    key: ClassVar[str]
    #: Stage keys whose sections this stage also consumes (e.g. QuantPost consumes HyperParameterOptimization).
    consumes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: CompressConfig):
        self.config = config
        self.section = config.strategies.get(self.key)

    @property
    def name(self) -> str:
        return self.key

    @abstractmethod
    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        """Compress `model` (a copy may be modified) and return the result."""


REGISTRY: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    REGISTRY[cls.key] = cls
    return cls


def stage_class(key: str) -> type[Stage]:
    _load_builtin_strategies()
    try:
        return REGISTRY[key]
    except KeyError:
        raise StrategyNotImplementedError(
            f"strategy {key!r} is not implemented in this version of autocompress; available: {sorted(REGISTRY)}"
        ) from None


def _load_builtin_strategies() -> None:
    """Import the modules whose @register calls fill REGISTRY (kept lazy: they pull in torch)."""
    import autocompress.strategy.builtin  # noqa: F401,PLC0415
