"""Turn the strategy keys of a config into the ordered list of stages to run."""

from __future__ import annotations

from autocompress.config.combinations import DISTILL_KEYS, PRUNE_KEYS
from autocompress.config.loader import CompressConfig
from autocompress.strategy.base import Stage, stage_class


def plan_stages(config: CompressConfig) -> list[Stage]:
    """One stage per strategy key in execution order; no strategy at all means the automatic choice.

    Distillation paired with a training strategy (a prune stage or QuantAware) is that stage's loss, not a stage
    of its own; HyperParameterOptimization belongs to QuantPost.
    """
    keys = config.stage_keys
    if not keys:
        from autocompress.strategy.auto import AutoStage  # noqa: PLC0415 - pulls in torch

        return [AutoStage(config)]
    trains = [k for k in keys if k in PRUNE_KEYS or k == "QuantAware"]
    stages = []
    for key in keys:
        if key in DISTILL_KEYS and trains:
            continue
        stages.append(stage_class(key)(config))
    return stages
