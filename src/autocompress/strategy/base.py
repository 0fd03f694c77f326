"""The Stage contract, and the lookup of the stage class that the strategy record of a config key names.

Strategies are registered in config.registry (key, section, stage, order, combination rules); planning resolves
the stage here, so adding a strategy touches no central if/else. A key whose stage cannot be found is a clear
"not implemented" error, never a silent no-op.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx

from autocompress.config.loader import CompressConfig
from autocompress.config.registry import strategy_spec, strategy_specs
from autocompress.data.batches import BatchAdapter
from autocompress.errors import ConfigError, StrategyNotImplementedError
from autocompress.evaluation import Evaluator
from autocompress.runtime.ort import HardwareTarget
from autocompress.strategy.deadline import earliest, is_past, seconds_left
from autocompress.strategy.records import Candidate, StageInfo

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
    #: the time.perf_counter() instant the work must end by (Global.time_budget); None: unbounded
    deadline: float | None = None

    def time_left(self) -> float:
        """Seconds until the deadline (0 once past, infinity without one)."""
        return seconds_left(self.deadline)

    def past_deadline(self) -> bool:
        return is_past(self.deadline)

    def bounded(self, deadline: float | None) -> CompressionContext:
        """This context with `deadline` as well: the earlier of the two holds, so a sub-stage's bound never
        extends the run's."""
        return replace(self, deadline=earliest(self.deadline, deadline))


@dataclass
class StageResult:
    """A stage's model, its record, and every candidate it tried (HPO trials, probes of the automatic choice).

    A stage registered from outside the package may report its info as a plain mapping: it becomes a StageInfo
    whose typed fields are lifted from the mapping's keys, so the report reads every stage the same way.
    """

    model: onnx.ModelProto
    info: StageInfo = field(default_factory=StageInfo)
    candidates: list[Candidate] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.info, StageInfo):
            self.info = StageInfo.from_mapping(self.info)


class Stage(ABC):
    key: ClassVar[str]

    def __init__(self, config: CompressConfig):
        self.config = config
        self.section = config.strategies.get(self.key)

    @property
    def name(self) -> str:
        return self.key

    @abstractmethod
    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        """Compress `model` (a copy may be modified) and return the result."""


def stage_class(key: str) -> type[Stage]:
    """The Stage class of a registered strategy key, imported on first use (the stage modules pull in torch)."""
    spec = strategy_spec(key)
    if spec is None or spec.stage is None:
        available = [s.key for s in strategy_specs() if s.stage is not None]
        raise StrategyNotImplementedError(
            f"strategy {key!r} is not implemented in this version of autocompress; available: {available}"
        )
    stage = spec.stage if isinstance(spec.stage, type) else _import_stage(key, spec.stage)
    if not (isinstance(stage, type) and issubclass(stage, Stage)) or stage.key != spec.key:
        raise ConfigError(
            f"strategy {key!r} is registered with stage {stage!r}, which is not a Stage subclass whose key is {key!r}"
        )
    return stage


def _import_stage(key: str, path: str) -> object:
    """The object `path` ("package.module:Class") names; a missing module or name is a strategy this installation
    lacks."""
    module_name, _, class_name = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise StrategyNotImplementedError(
            f"strategy {key!r} is not implemented in this installation of autocompress: its stage {path!r} cannot "
            f"be imported ({exc})"
        ) from exc
