"""Learning-rate schedules written with Paddle's scheduler names, built on torch.optim.lr_scheduler.

Configs come from PaddleSlim users, so `TrainConfig.learning_rate` is either a float (constant) or
``{type: <Paddle scheduler name>, <its Paddle arguments>}``. Every schedule is stepped once per iteration
(Paddle's ACT does the same), except ReduceOnPlateau, which the loop steps with the mean training loss of
each logging window.

=====================  ====================================================  ==========================================
Paddle name            Paddle arguments                                      torch
=====================  ====================================================  ==========================================
StepDecay              learning_rate, step_size, gamma=0.1                   StepLR
MultiStepDecay         learning_rate, milestones, gamma=0.1                  MultiStepLR
ExponentialDecay       learning_rate, gamma                                  ExponentialLR
NaturalExpDecay        learning_rate, gamma                                  ExponentialLR(gamma=exp(-gamma))
CosineAnnealingDecay   learning_rate, T_max, eta_min=0                       CosineAnnealingLR
LinearLR               learning_rate, total_steps, start_factor=1/3,         LinearLR
                       end_factor=1.0
OneCycleLR             max_learning_rate, total_steps, divide_factor=25,     OneCycleLR(cycle_momentum=False,
                       end_learning_rate=1e-4, phase_pct=0.3,                final_div_factor from end_learning_rate)
                       anneal_strategy='cos', three_phase=False
CyclicLR               base_learning_rate, max_learning_rate,                CyclicLR(cycle_momentum=False);
                       step_size_up, step_size_down=None,                    scale_fn cannot be written in a config
                       mode='triangular', exp_gamma=1.0
ReduceOnPlateau        learning_rate, mode='min', factor=0.1, patience=10,   ReduceLROnPlateau (stepped with the mean
                       threshold=1e-4, threshold_mode='rel', cooldown=0,     loss of each logging window)
                       min_lr=0, epsilon=1e-8
PiecewiseDecay         boundaries, values                                    LambdaLR with Paddle's formula
PolynomialDecay        learning_rate, decay_steps, end_lr=1e-4, power=1.0,   LambdaLR with Paddle's formula (torch's
                       cycle=False                                           PolynomialLR cannot end at end_lr)
InverseTimeDecay       learning_rate, gamma                                  LambdaLR: lr / (1 + gamma * step)
NoamDecay              d_model, warmup_steps, learning_rate=1.0              LambdaLR with Paddle's formula
LinearWarmup           learning_rate (float or a nested schedule dict),      LinearWarmupLR below: linear from start_lr
                       warmup_steps, start_lr, end_lr                        to end_lr, then the nested schedule from
                                                                             its step 0
=====================  ====================================================  ==========================================

`verbose` is accepted and ignored everywhere. LambdaDecay / MultiplicativeDecay take Python callables and cannot be
written in a config.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from torch.optim import Optimizer
from torch.optim import lr_scheduler as tls

from autocompress.errors import ConfigError

Scheduler = tls.LRScheduler | tls.ReduceLROnPlateau

_IGNORED_ARGS = {"verbose"}


def _set_base_lr(optimizer: Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["initial_lr"] = lr


# --- Paddle formulas without an exact torch class: absolute lr as a function of the step -----------------------


def _piecewise(step: int, boundaries: list, values: list) -> float:
    for boundary, value in zip(boundaries, values):
        if step < boundary:
            return value
    return values[-1]


def _polynomial(step: int, learning_rate: float, decay_steps: int, end_lr: float, power: float, cycle: bool) -> float:
    if cycle:
        decay_steps = decay_steps * max(1, math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    return (learning_rate - end_lr) * (1 - step / decay_steps) ** power + end_lr


def _inverse_time(step: int, learning_rate: float, gamma: float) -> float:
    return learning_rate / (1 + gamma * step)


def _noam(step: int, d_model: int, warmup_steps: int, learning_rate: float) -> float:
    a = 1.0 if step == 0 else step**-0.5
    return learning_rate * d_model**-0.5 * min(a, step * warmup_steps**-1.5)


def _constant(step: int, learning_rate: float) -> float:
    return learning_rate


def _linear_warmup(step: int, warmup_steps: int, start_lr: float, end_lr: float, learning_rate: float) -> float:
    if step < warmup_steps:
        return start_lr + (end_lr - start_lr) * step / warmup_steps
    return learning_rate


_FORMULAS: dict[str, Callable[..., float]] = {
    "PiecewiseDecay": _piecewise,
    "PolynomialDecay": _polynomial,
    "InverseTimeDecay": _inverse_time,
    "NoamDecay": _noam,
    "Constant": _constant,
    "LinearWarmup": _linear_warmup,
}


class _Formula:
    """A picklable lr(step): LambdaLR saves its __dict__ (a name and plain numbers) in the checkpoint."""

    def __init__(self, name: str, args: dict[str, Any]):
        self.name = name
        self.args = args

    def __call__(self, step: int) -> float:
        return _FORMULAS[self.name](step, **self.args)


def _formula_schedule(optimizer: Optimizer, name: str, **args) -> tls.LambdaLR:
    _set_base_lr(optimizer, 1.0)  # the formula gives the absolute lr, so the base is 1
    return tls.LambdaLR(optimizer, _Formula(name, args))


class LinearWarmupLR(tls.LRScheduler):
    """Paddle's LinearWarmup around another scheduler: linear ramp, then `after` from its own step 0.

    torch's SequentialLR shares one base lr between its schedulers, which cannot express a ramp from
    start_lr to end_lr followed by a schedule with its own learning_rate, hence this small class.
    """

    def __init__(self, optimizer: Optimizer, after: tls.LRScheduler, warmup_steps: int, start_lr: float, end_lr: float):
        self.after = after
        self.warmup_steps = warmup_steps
        self.start_lr = start_lr
        self.end_lr = end_lr
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step < self.warmup_steps:
            lr = self.start_lr + (self.end_lr - self.start_lr) * step / self.warmup_steps
            return [lr for _ in self.optimizer.param_groups]
        if step > self.warmup_steps:
            self.after.step()
        return list(self.after.get_last_lr())

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "after")}
        state["after"] = self.after.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.after.load_state_dict(state.pop("after"))
        self.__dict__.update(state)


# --- builders, one per Paddle name, with Paddle's argument names and defaults --------------------------------------


def _step_decay(opt, learning_rate: float, step_size: int, gamma: float = 0.1):
    _set_base_lr(opt, learning_rate)
    return tls.StepLR(opt, step_size=step_size, gamma=gamma)


def _multi_step_decay(opt, learning_rate: float, milestones: list, gamma: float = 0.1):
    _set_base_lr(opt, learning_rate)
    return tls.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)


def _exponential_decay(opt, learning_rate: float, gamma: float):
    _set_base_lr(opt, learning_rate)
    return tls.ExponentialLR(opt, gamma=gamma)


def _natural_exp_decay(opt, learning_rate: float, gamma: float):
    _set_base_lr(opt, learning_rate)
    return tls.ExponentialLR(opt, gamma=math.exp(-gamma))


def _cosine_annealing_decay(opt, learning_rate: float, T_max: int, eta_min: float = 0.0):
    _set_base_lr(opt, learning_rate)
    return tls.CosineAnnealingLR(opt, T_max=T_max, eta_min=eta_min)


def _linear_lr(opt, learning_rate: float, total_steps: int, start_factor: float = 1.0 / 3, end_factor: float = 1.0):
    _set_base_lr(opt, learning_rate)
    return tls.LinearLR(opt, start_factor=start_factor, end_factor=end_factor, total_iters=total_steps)


def _one_cycle_lr(
    opt,
    max_learning_rate: float,
    total_steps: int,
    divide_factor: float = 25.0,
    end_learning_rate: float = 0.0001,
    phase_pct: float = 0.3,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
):
    initial = max_learning_rate / divide_factor
    return tls.OneCycleLR(
        opt,
        max_lr=max_learning_rate,
        total_steps=total_steps,
        pct_start=phase_pct,
        anneal_strategy=anneal_strategy,
        div_factor=divide_factor,
        final_div_factor=initial / end_learning_rate,
        three_phase=three_phase,
        cycle_momentum=False,
    )


def _cyclic_lr(
    opt,
    base_learning_rate: float,
    max_learning_rate: float,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    exp_gamma: float = 1.0,
    scale_fn: None = None,
    scale_mode: str = "cycle",
):
    if scale_fn is not None:
        raise ConfigError("learning_rate.scale_fn: a Python function cannot be given in a config; use mode instead")
    _set_base_lr(opt, base_learning_rate)
    return tls.CyclicLR(
        opt,
        base_lr=base_learning_rate,
        max_lr=max_learning_rate,
        step_size_up=step_size_up,
        step_size_down=step_size_down,
        mode=mode,
        gamma=exp_gamma,
        scale_mode=scale_mode,
        cycle_momentum=False,
    )


def _reduce_on_plateau(
    opt,
    learning_rate: float,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float = 0.0,
    epsilon: float = 1e-8,
):
    _set_base_lr(opt, learning_rate)
    return tls.ReduceLROnPlateau(
        opt,
        mode=mode,
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode=threshold_mode,
        cooldown=cooldown,
        min_lr=min_lr,
        eps=epsilon,
    )


def _piecewise_decay(opt, boundaries: list, values: list):
    if len(values) != len(boundaries) + 1:
        raise ConfigError(
            f"learning_rate: PiecewiseDecay needs one more value than boundaries, "
            f"got {len(boundaries)} boundaries and {len(values)} values"
        )
    return _formula_schedule(opt, "PiecewiseDecay", boundaries=list(boundaries), values=list(values))


def _polynomial_decay(
    opt, learning_rate: float, decay_steps: int, end_lr: float = 0.0001, power: float = 1.0, cycle: bool = False
):
    return _formula_schedule(
        opt,
        "PolynomialDecay",
        learning_rate=learning_rate,
        decay_steps=decay_steps,
        end_lr=end_lr,
        power=power,
        cycle=cycle,
    )


def _inverse_time_decay(opt, learning_rate: float, gamma: float):
    return _formula_schedule(opt, "InverseTimeDecay", learning_rate=learning_rate, gamma=gamma)


def _noam_decay(opt, d_model: int, warmup_steps: int, learning_rate: float = 1.0):
    return _formula_schedule(opt, "NoamDecay", d_model=d_model, warmup_steps=warmup_steps, learning_rate=learning_rate)


def _linear_warmup_builder(opt, learning_rate: float | dict, warmup_steps: int, start_lr: float, end_lr: float):
    if not isinstance(learning_rate, dict):
        return _formula_schedule(
            opt,
            "LinearWarmup",
            warmup_steps=warmup_steps,
            start_lr=start_lr,
            end_lr=end_lr,
            learning_rate=float(learning_rate),
        )
    after = build_scheduler(opt, learning_rate)
    if isinstance(after, tls.ReduceLROnPlateau):
        raise ConfigError("learning_rate: LinearWarmup cannot wrap ReduceOnPlateau, which is stepped by a metric")
    return LinearWarmupLR(opt, after, warmup_steps=warmup_steps, start_lr=start_lr, end_lr=end_lr)


_BUILDERS: dict[str, Callable[..., Scheduler]] = {
    "StepDecay": _step_decay,
    "MultiStepDecay": _multi_step_decay,
    "ExponentialDecay": _exponential_decay,
    "NaturalExpDecay": _natural_exp_decay,
    "CosineAnnealingDecay": _cosine_annealing_decay,
    "LinearLR": _linear_lr,
    "OneCycleLR": _one_cycle_lr,
    "CyclicLR": _cyclic_lr,
    "ReduceOnPlateau": _reduce_on_plateau,
    "PiecewiseDecay": _piecewise_decay,
    "PolynomialDecay": _polynomial_decay,
    "InverseTimeDecay": _inverse_time_decay,
    "NoamDecay": _noam_decay,
    "LinearWarmup": _linear_warmup_builder,
}

SUPPORTED_SCHEDULES = tuple(sorted(_BUILDERS))


def check_arguments(kind: str, builder: Callable, args: dict[str, Any], skip: int = 1) -> None:
    """ConfigError naming an unknown or missing argument of `builder` (its first `skip` parameters are internal)."""
    params = list(inspect.signature(builder).parameters.values())[skip:]
    allowed = [p.name for p in params]
    for name in args:
        if name not in allowed:
            raise ConfigError(f"{kind}: unknown argument '{name}'; allowed arguments are {allowed}")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in args]
    if missing:
        raise ConfigError(f"{kind}: missing required argument(s) {missing}; arguments are {allowed}")


def build_scheduler(optimizer: Optimizer, learning_rate: float | dict[str, Any]) -> Scheduler:
    """The scheduler for TrainConfig.learning_rate; it also sets the optimizer's lr (so build it right after)."""
    if not isinstance(learning_rate, dict):
        return _formula_schedule(optimizer, "Constant", learning_rate=float(learning_rate))
    args = {k: v for k, v in learning_rate.items() if k not in _IGNORED_ARGS}
    kind = args.pop("type", None)
    if kind not in _BUILDERS:
        raise ConfigError(
            f"learning_rate.type = {kind!r} is not a supported schedule; supported: {list(SUPPORTED_SCHEDULES)}"
        )
    builder = _BUILDERS[kind]
    check_arguments(f"learning_rate ({kind})", builder, args)
    return builder(optimizer, **args)


def is_plateau(scheduler: Scheduler) -> bool:
    """ReduceOnPlateau is stepped with a loss value instead of once per iteration."""
    return isinstance(scheduler, tls.ReduceLROnPlateau)


def current_lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


__all__ = ["build_scheduler", "is_plateau", "current_lr", "LinearWarmupLR", "SUPPORTED_SCHEDULES", "check_arguments"]
