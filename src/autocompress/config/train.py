"""TrainConfig: how compressed models are fine-tuned (PaddleSlim's TrainConfig fields, typed)."""

from __future__ import annotations

import logging
import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from autocompress.config.base import Section

log = logging.getLogger(__name__)

#: Keys of a learning_rate schedule that are the rate it trains with: a rate <= 0 leaves the weights as they are or
#: climbs the loss.
_POSITIVE_RATES = ("learning_rate", "max_learning_rate")
#: Keys that are bounds a schedule may start from or decay to, where 0 is meaningful.
_NON_NEGATIVE_RATES = ("base_learning_rate", "end_learning_rate", "eta_min", "start_lr", "end_lr", "min_lr")


#: The seed's AMP-O1/O2 keys that torch.autocast has no equivalent for: key -> what training does instead. A key
#: set to a value that asks for something (a non-empty list, True) is warned about once.
AMP_UNAPPLIED_KEYS = {
    "custom_white_list": "torch autocast chooses each op's precision itself",
    "custom_black_list": "torch autocast chooses each op's precision itself",
    "custom_black_varnames": "torch autocast cannot keep named variables in float32",
    "use_pure_fp16": "training runs mixed precision (autocast, O1); pure fp16 (O2) is not available",
    "use_fp16_guard": "it only applies to pure fp16 (O2), which is not available",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_rate(key: str, value: Any, positive: bool) -> None:
    """ValueError naming `key` (empty for the scalar learning_rate, which the error's prefix names) when a number is
    out of range; other types are left to the schedule builder."""
    if not _is_number(value):
        return
    if not math.isfinite(value) or (value <= 0 if positive else value < 0):
        allowed = "a finite number > 0" if positive else "a finite number >= 0"
        where = f"{key} = {value!r}: " if key else ""
        raise ValueError(f"{where}a learning rate must be {allowed}")


def check_learning_rate(value: Any, key: str = "") -> None:
    """Every rate in a float or a schedule dict (a nested LinearWarmup schedule and PiecewiseDecay's values too)."""
    if not isinstance(value, dict):
        _check_rate(key, value, positive=True)
        return
    key = key or "learning_rate"
    for name in _POSITIVE_RATES + _NON_NEGATIVE_RATES:
        if isinstance(value.get(name), dict):
            check_learning_rate(value[name], f"{key}.{name}")
        elif name in value:
            _check_rate(f"{key}.{name}", value[name], positive=name in _POSITIVE_RATES)
    values = value.get("values")
    for index, rate in enumerate(values if isinstance(values, list) else []):
        _check_rate(f"{key}.values[{index}]", rate, positive=False)


class TrainConfig(Section):
    epochs: int | None = Field(None, ge=1)
    train_iter: int | None = Field(None, ge=1)
    #: A float, or {type: <Paddle LR scheduler name>, ...its arguments}; see autocompress.train.schedules.
    learning_rate: float | dict[str, Any] = 0.02
    #: {optimizer: {type: SGD|Momentum|Adam|AdamW|..., ...}, weight_decay, regularizer: {type, coeff}, grad_clip: {type, ...}}
    optimizer_builder: dict[str, Any] = Field(default_factory=lambda: {"optimizer": {"type": "SGD"}})
    eval_iter: int = Field(1000, ge=1)
    logging_iter: int = Field(10, ge=1)
    origin_metric: float | None = None
    #: Allowed relative difference between origin_metric and the measured metric of the uncompressed model.
    origin_metric_tolerance: float = Field(0.02, ge=0.0)
    target_metric: float | None = None
    use_fleet: bool = False
    amp_config: dict[str, Any] | None = None
    recompute_config: dict[str, Any] | None = None
    sharding_config: dict[str, Any] | None = None
    sparse_model: bool = False
    seed: int = 0
    #: Resume from the last checkpoint in save_dir's work area after an interruption.
    resume: bool = True

    @model_validator(mode="before")
    @classmethod
    def _legacy_optimizer(cls, data: Any) -> Any:
        """ACT 2.x wrote `optimizer: SGD` and `optim_args: {weight_decay: ...}`; fold them into optimizer_builder."""
        if not isinstance(data, dict) or ("optimizer" not in data and "optim_args" not in data):
            return data
        data = dict(data)
        if "optimizer_builder" in data:
            raise ValueError("set either optimizer_builder or the legacy optimizer/optim_args, not both")
        builder: dict[str, Any] = {"optimizer": {"type": data.pop("optimizer", "SGD")}}
        args = data.pop("optim_args", None) or {}
        if not isinstance(args, dict):
            raise ValueError(f"optim_args must be a mapping such as {{weight_decay: 0.0001}}, got {args!r}")
        args = dict(args)
        if "weight_decay" in args:
            builder["weight_decay"] = args.pop("weight_decay")
        builder["optimizer"].update(args)
        data["optimizer_builder"] = builder
        return data

    @field_validator("optimizer_builder", mode="before")
    @classmethod
    def _seed_clip_name(cls, value: Any) -> Any:
        """The seed spells the gradient clipping key grid_clip; it is grad_clip."""
        if not isinstance(value, dict) or "grid_clip" not in value:
            return value
        if "grad_clip" in value:
            raise ValueError("both 'grid_clip' and its current name 'grad_clip' are set; keep only 'grad_clip'")
        log.info("TrainConfig.optimizer_builder: key 'grid_clip' read as 'grad_clip'")
        return {("grad_clip" if k == "grid_clip" else k): v for k, v in value.items()}

    @field_validator("amp_config")
    @classmethod
    def _warn_unapplied_amp_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, instead in AMP_UNAPPLIED_KEYS.items():
            if (value or {}).get(key):
                log.warning("TrainConfig.amp_config.%s = %r is not applied: %s", key, value[key], instead)
        return value

    @field_validator("learning_rate")
    @classmethod
    def _rates_in_range(cls, value: float | dict[str, Any]) -> float | dict[str, Any]:
        check_learning_rate(value)
        return value

    @model_validator(mode="after")
    def _one_length(self):
        if self.epochs is not None and self.train_iter is not None:
            raise ValueError("set epochs or train_iter, not both")
        opt = self.optimizer_builder.get("optimizer")
        if not isinstance(opt, dict) or "type" not in opt:
            raise ValueError("optimizer_builder.optimizer must be a mapping with a 'type', e.g. {type: SGD}")
        return self
