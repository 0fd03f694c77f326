"""Hyperparameter search over post-training quantization settings with Optuna's TPE sampler.

The seed's search space: ptq_algo, bias_correct, weight_quantize_type (categorical), hist_percent (uniform in
[min, max], asked only when the algo is 'hist'), batch_num (integer in [min, max]). Trials with settings already
tried reuse their score instead of quantizing again. Seeded, so a rerun tries the same settings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import optuna

from autocompress.config.strategies import HyperParameterOptimization

log = logging.getLogger(__name__)


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    score: float  # lower is better: metric drop, or EMD to the float model
    metric: float
    seconds: float
    latency_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest_ptq_params(trial: optuna.Trial, space: HyperParameterOptimization) -> dict[str, Any]:
    params: dict[str, Any] = {
        "algo": trial.suggest_categorical("algo", list(dict.fromkeys(space.ptq_algo))),
        "bias_correct": trial.suggest_categorical("bias_correct", list(dict.fromkeys(space.bias_correct))),
        "weight_quantize_type": trial.suggest_categorical(
            "weight_quantize_type", list(dict.fromkeys(space.weight_quantize_type))
        ),
    }
    lo, hi = min(space.batch_num), max(space.batch_num)
    params["batch_num"] = trial.suggest_int("batch_num", lo, hi) if lo < hi else lo
    if params["algo"] == "hist":
        lo_p, hi_p = min(space.hist_percent), max(space.hist_percent)
        params["hist_percent"] = trial.suggest_float("hist_percent", lo_p, hi_p) if lo_p < hi_p else lo_p
    return params


def search_ptq(
    space: HyperParameterOptimization,
    evaluate: Callable[[dict[str, Any]], tuple[float, float, dict[str, Any]]],
) -> list[Trial]:
    """Run max_quant_count trials; `evaluate(params) -> (score, metric, extra)`. Returns every trial in order."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=space.seed))
    trials: list[Trial] = []
    seen: dict[tuple, Trial] = {}

    def objective(trial: optuna.Trial) -> float:
        params = suggest_ptq_params(trial, space)
        key = tuple(sorted((k, round(v, 6) if isinstance(v, float) else v) for k, v in params.items()))
        if key in seen:
            return seen[key].score
        start = time.perf_counter()
        score, metric, extra = evaluate(params)
        record = Trial(trial.number, params, float(score), float(metric), round(time.perf_counter() - start, 3), extra=extra)
        log.info("trial %d %s: score %.6g (metric %.6g)", trial.number, params, score, metric)
        trials.append(record)
        seen[key] = record
        return record.score

    study.optimize(objective, n_trials=space.max_quant_count)
    return trials
