"""TrainConfig: how compressed models are fine-tuned (PaddleSlim's TrainConfig fields, typed)."""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import Field, model_validator

from autocompress.config.base import Section


class TrainConfig(Section):
    epochs: Optional[int] = Field(None, ge=1)
    train_iter: Optional[int] = Field(None, ge=1)
    #: A float, or {type: <Paddle LR scheduler name>, ...its arguments}; see autocompress.train.schedules.
    learning_rate: Union[float, dict[str, Any]] = 0.02
    #: {optimizer: {type: SGD|Momentum|Adam|AdamW|..., ...}, weight_decay, regularizer: {type, coeff}, grad_clip: {type, ...}}
    optimizer_builder: dict[str, Any] = Field(default_factory=lambda: {"optimizer": {"type": "SGD"}})
    eval_iter: int = Field(1000, ge=1)
    logging_iter: int = Field(10, ge=1)
    origin_metric: Optional[float] = None
    #: Allowed relative difference between origin_metric and the measured metric of the uncompressed model.
    origin_metric_tolerance: float = Field(0.02, ge=0.0)
    target_metric: Optional[float] = None
    use_fleet: bool = False
    amp_config: Optional[dict[str, Any]] = None
    recompute_config: Optional[dict[str, Any]] = None
    sharding_config: Optional[dict[str, Any]] = None
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

    @model_validator(mode="after")
    def _one_length(self):
        if self.epochs is not None and self.train_iter is not None:
            raise ValueError("set epochs or train_iter, not both")
        opt = self.optimizer_builder.get("optimizer")
        if not isinstance(opt, dict) or "type" not in opt:
            raise ValueError("optimizer_builder.optimizer must be a mapping with a 'type', e.g. {type: SGD}")
        return self
