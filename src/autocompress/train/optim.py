"""TrainConfig.optimizer_builder (Paddle vocabulary) -> a torch optimizer plus gradient clipping and L1 decay.

    optimizer_builder:
      optimizer: {type: Momentum, momentum: 0.9, use_nesterov: false}
      weight_decay: 4.0e-05                      # or regularizer: {type: L2Decay|L1Decay, coeff: ...}
      grad_clip: {type: ClipGradByGlobalNorm, clip_norm: 1.0}

Optimizers and the Paddle argument names they take (mapped to torch's):

=========  ==================  ======================================================================
Paddle     torch               arguments (Paddle -> torch)
=========  ==================  ======================================================================
SGD        SGD                 -
Momentum   SGD                 momentum=0.9, use_nesterov -> nesterov
Adam       Adam                beta1, beta2 -> betas, epsilon -> eps, amsgrad
AdamW      AdamW               beta1, beta2 -> betas, epsilon -> eps, amsgrad; weight decay decoupled
Adamax     Adamax              beta1, beta2 -> betas, epsilon -> eps
Adagrad    Adagrad             epsilon -> eps, initial_accumulator_value
Adadelta   Adadelta            epsilon -> eps, rho
RMSProp    RMSprop             rho -> alpha, epsilon -> eps, momentum, centered (Paddle adds epsilon
                               inside the square root, torch outside: equal up to rounding for small eps)
=========  ==================  ======================================================================

Lamb is not available: torch ships no Lamb optimizer; use AdamW.
`multi_precision`, `use_multi_tensor` and `lazy_mode` are Paddle performance switches and are ignored.

Regularization follows Paddle: it applies to every trainable parameter, biases and normalization scales
included (Paddle has no default exclusion list). `weight_decay` (a float) and `L2Decay(coeff)` add coeff * w to
the gradient, which is torch's `weight_decay` argument (for AdamW: the decoupled decay, as Paddle's AdamW).
`L1Decay(coeff)` adds coeff * sign(w) to the gradient, the gradient of coeff * sum|w|. As in Paddle, gradients are
clipped first and regularized after.
Clipping: ClipGradByGlobalNorm(clip_norm) -> clip_grad_norm_ over all parameters; ClipGradByNorm(clip_norm) ->
clip_grad_norm_ per parameter; ClipGradByValue(max, min=-max) -> clip_grad_value_ (clamp when asymmetric).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError

log = logging.getLogger(__name__)

_IGNORED_ARGS = {"multi_precision", "use_multi_tensor", "lazy_mode", "name"}
_BUILDER_KEYS = {"optimizer", "weight_decay", "regularizer", "grad_clip"}


def _betas(args: dict[str, Any]) -> dict[str, Any]:
    out = dict(args)
    if "beta1" in out or "beta2" in out:
        out["betas"] = (float(out.pop("beta1", 0.9)), float(out.pop("beta2", 0.999)))
    return out


def _rename(args: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(k, k): v for k, v in args.items()}


@dataclass(frozen=True)
class _OptimizerSpec:
    torch_class: type[torch.optim.Optimizer]
    paddle_args: tuple[str, ...]
    translate: Callable[[dict[str, Any]], dict[str, Any]]
    decoupled_decay: bool = False


_EPS = {"epsilon": "eps"}
_OPTIMIZERS: dict[str, _OptimizerSpec] = {
    "SGD": _OptimizerSpec(torch.optim.SGD, (), dict),
    "Momentum": _OptimizerSpec(
        torch.optim.SGD,
        ("momentum", "use_nesterov"),
        lambda a: {"momentum": 0.9, **_rename(a, {"use_nesterov": "nesterov"})},
    ),
    "Adam": _OptimizerSpec(
        torch.optim.Adam, ("beta1", "beta2", "epsilon", "amsgrad"), lambda a: _rename(_betas(a), _EPS)
    ),
    "AdamW": _OptimizerSpec(
        torch.optim.AdamW, ("beta1", "beta2", "epsilon", "amsgrad"), lambda a: _rename(_betas(a), _EPS), True
    ),
    "Adamax": _OptimizerSpec(torch.optim.Adamax, ("beta1", "beta2", "epsilon"), lambda a: _rename(_betas(a), _EPS)),
    "Adagrad": _OptimizerSpec(
        torch.optim.Adagrad, ("epsilon", "initial_accumulator_value"), lambda a: _rename(a, _EPS)
    ),
    "Adadelta": _OptimizerSpec(torch.optim.Adadelta, ("epsilon", "rho"), lambda a: _rename(a, _EPS)),
    "RMSProp": _OptimizerSpec(
        torch.optim.RMSprop,
        ("rho", "epsilon", "momentum", "centered"),
        lambda a: _rename(a, {"rho": "alpha", "epsilon": "eps"}),
    ),
}
SUPPORTED_OPTIMIZERS = tuple(_OPTIMIZERS)


@dataclass
class GradientPolicy:
    """What happens to gradients between backward() and optimizer.step(): clipping, then L1 decay."""

    clip: Callable[[list[nn.Parameter]], None] | None = None
    l1_coeff: float = 0.0

    def apply(self, params: list[nn.Parameter]) -> None:
        if self.clip is not None:
            self.clip(params)
        if self.l1_coeff:
            with torch.no_grad():
                for p in params:
                    if p.grad is not None:
                        p.grad.add_(torch.sign(p), alpha=self.l1_coeff)


def _clip_each(max_norm: float) -> Callable[[list[nn.Parameter]], None]:
    def clip(params: list[nn.Parameter]) -> None:
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], max_norm)

    return clip


def _clip_global(max_norm: float) -> Callable[[list[nn.Parameter]], None]:
    return lambda params: torch.nn.utils.clip_grad_norm_(params, max_norm)


def _clip_value(high: float, low: float | None) -> Callable[[list[nn.Parameter]], None]:
    low = -high if low is None else low
    if low > high:
        raise ConfigError(f"optimizer_builder.grad_clip: min {low} is larger than max {high}")
    if low == -high:
        return lambda params: torch.nn.utils.clip_grad_value_(params, high)

    def clamp(params: list[nn.Parameter]) -> None:  # torch's helper only clips symmetrically
        for p in params:
            if p.grad is not None:
                p.grad.clamp_(low, high)

    return clamp


_REQUIRED = object()
_CLIPS: dict[str, tuple[dict[str, Any], Callable[..., Callable]]] = {
    # name: (allowed args with their defaults, factory)
    "ClipGradByGlobalNorm": (
        {"clip_norm": _REQUIRED, "group_name": "default_group", "auto_skip_clip": False},
        lambda clip_norm, **_: _clip_global(float(clip_norm)),
    ),
    "ClipGradByNorm": ({"clip_norm": _REQUIRED}, lambda clip_norm: _clip_each(float(clip_norm))),
    "ClipGradByValue": ({"max": _REQUIRED, "min": None}, lambda max, min=None: _clip_value(float(max), min)),
}


def _typed_args(section: str, spec: Any, allowed_types: list[str]) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"optimizer_builder.{section} must be a mapping with a 'type' (one of {allowed_types})")
    args = dict(spec)
    kind = args.pop("type")
    if kind not in allowed_types:
        raise ConfigError(f"optimizer_builder.{section}.type = {kind!r} is not supported; supported: {allowed_types}")
    return kind, args


def _build_clip(spec: Any) -> Callable[[list[nn.Parameter]], None]:
    kind, args = _typed_args("grad_clip", spec, list(_CLIPS))
    allowed, factory = _CLIPS[kind]
    for name in args:
        if name not in allowed:
            raise ConfigError(
                f"optimizer_builder.grad_clip ({kind}): unknown argument '{name}'; allowed {list(allowed)}"
            )
    missing = [k for k, default in allowed.items() if default is _REQUIRED and k not in args]
    if missing:
        raise ConfigError(f"optimizer_builder.grad_clip ({kind}): missing argument(s) {missing}")
    return factory(**args)


def _regularization(builder: dict[str, Any]) -> tuple[float, float]:
    """(L2 coefficient, L1 coefficient) from weight_decay or regularizer."""
    if "weight_decay" in builder and "regularizer" in builder:
        raise ConfigError("optimizer_builder: set weight_decay or regularizer, not both")
    if "regularizer" in builder:
        kind, args = _typed_args("regularizer", builder["regularizer"], ["L1Decay", "L2Decay"])
        unknown = set(args) - {"coeff"}
        if unknown:
            raise ConfigError(
                f"optimizer_builder.regularizer ({kind}): unknown argument(s) {sorted(unknown)}; allowed ['coeff']"
            )
        coeff = float(args.get("coeff", 0.0))
        return (coeff, 0.0) if kind == "L2Decay" else (0.0, coeff)
    decay = builder.get("weight_decay")
    if isinstance(decay, dict):  # weight_decay written as {type: L2Decay, coeff: ...}
        return _regularization({"regularizer": decay})
    return (float(decay), 0.0) if decay is not None else (None, 0.0)


def build_optimizer(
    parameters: Iterable[nn.Parameter], optimizer_builder: dict[str, Any]
) -> tuple[torch.optim.Optimizer, GradientPolicy]:
    """The optimizer and gradient policy of `optimizer_builder`; its lr is set by build_scheduler afterwards."""
    unknown = set(optimizer_builder) - _BUILDER_KEYS
    if unknown:
        raise ConfigError(
            f"optimizer_builder: unknown key(s) {sorted(unknown)}; allowed keys are {sorted(_BUILDER_KEYS)}"
        )
    kind, args = _typed_args("optimizer", optimizer_builder.get("optimizer"), list(SUPPORTED_OPTIMIZERS) + ["Lamb"])
    if kind == "Lamb":
        raise ConfigError("optimizer_builder.optimizer.type = 'Lamb': torch has no Lamb optimizer; use AdamW")
    spec = _OPTIMIZERS[kind]
    for name in list(args):
        if name in _IGNORED_ARGS:
            log.info("optimizer_builder.optimizer.%s is a Paddle performance switch; ignored", name)
            args.pop(name)
        elif name not in spec.paddle_args:
            raise ConfigError(
                f"optimizer_builder.optimizer ({kind}): unknown argument '{name}'; allowed {list(spec.paddle_args)}"
            )
    torch_args = spec.translate(args)
    l2, l1 = _regularization(optimizer_builder)
    if l2 is not None:
        torch_args["weight_decay"] = l2
    elif not spec.decoupled_decay:
        torch_args["weight_decay"] = 0.0
    clip = _build_clip(optimizer_builder["grad_clip"]) if optimizer_builder.get("grad_clip") else None
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters to optimize")
    optimizer = spec.torch_class(params, lr=1.0, **torch_args)
    return optimizer, GradientPolicy(clip=clip, l1_coeff=l1)
