"""Turn the strategy keys of a config into the ordered list of stages to run."""

from __future__ import annotations

from autocompress.config.loader import CompressConfig
from autocompress.config.registry import strategy_spec
from autocompress.strategy.base import Stage, stage_class


def plan_stages(config: CompressConfig) -> list[Stage]:
    """One stage per strategy key in execution order; no strategy at all means the automatic choice.

    A distillation paired with a training strategy (a prune stage or QuantAware) is that stage's loss, not a stage
    of its own; a part_of section (HyperParameterOptimization) belongs to its strategy's stage.
    """
    keys = config.stage_keys
    if not keys:
        from autocompress.strategy.auto import AutoStage  # noqa: PLC0415 - pulls in torch

        return [AutoStage(config)]
    specs = [strategy_spec(key) for key in keys]
    trains = any(spec.trains for spec in specs)
    return [stage_class(spec.key)(config) for spec in specs if not (spec.distils and trains)]
