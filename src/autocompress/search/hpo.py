"""Hyperparameter search over post-training quantization settings with Optuna's TPE sampler (a grid when the
space is finite and no larger than the trial count).

The seed's search space: ptq_algo, bias_correct, weight_quantize_type (categorical), hist_percent (uniform in
[min, max], asked only when the algo is 'hist'), batch_num (integer in [min, max]). Trials with settings already
tried reuse their score instead of quantizing again. Seeded, so a rerun tries the same settings.

With `journal_path`, every finished trial is appended to an Optuna journal file as it completes; a search that
is killed and started again loads it and only runs the trials still missing, so no finished trial is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autocompress import progress
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


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, round(v, 6) if isinstance(v, float) else v) for k, v in params.items()))


def grid(space: HyperParameterOptimization) -> dict[str, list[Any]] | None:
    """The search space as a grid when it is finite and no larger than max_quant_count (no range to sample in
    batch_num, nor in hist_percent where 'hist' is searched), else None: a space that small is searched whole,
    each setting once, where TPE's random start could draw one setting twice and miss another."""
    if min(space.batch_num) != max(space.batch_num):
        return None
    if "hist" in space.ptq_algo and min(space.hist_percent) != max(space.hist_percent):
        return None
    points = {
        "algo": list(dict.fromkeys(space.ptq_algo)),
        "bias_correct": list(dict.fromkeys(space.bias_correct)),
        "weight_quantize_type": list(dict.fromkeys(space.weight_quantize_type)),
    }
    size = len(points["algo"]) * len(points["bias_correct"]) * len(points["weight_quantize_type"])
    return points if size <= space.max_quant_count else None


def _study(space: HyperParameterOptimization, journal_path: Path | None) -> optuna.Study:
    points = grid(space)
    sampler = (
        optuna.samplers.GridSampler(points, seed=space.seed) if points else optuna.samplers.TPESampler(seed=space.seed)
    )
    if journal_path is None:
        return optuna.create_study(direction="minimize", sampler=sampler)
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    # One process at a time writes a run's journal, so a lock already there was left by a run killed while it
    # wrote; Optuna would wait for it (30 s) on every restart.
    Path(f"{journal_path}.lock").unlink(missing_ok=True)
    storage = JournalStorage(JournalFileBackend(str(journal_path)))
    return optuna.create_study(
        study_name="ptq", storage=storage, direction="minimize", sampler=sampler, load_if_exists=True
    )


def _record(trial: optuna.trial.FrozenTrial) -> Trial:
    attrs = trial.user_attrs
    return Trial(
        trial.number, attrs["params"], float(trial.value), attrs["metric"], attrs["seconds"], extra=attrs["extra"]
    )


def _show_best(bar: progress.Bar, study: optuna.Study) -> None:
    """One finished trial on the bar, with the best score so far and that trial's metric."""
    best = study.best_trial
    bar.set_postfix(best_score=f"{best.value:.4g}", metric=f"{best.user_attrs['metric']:.4g}", refresh=False)
    bar.update()


def _stop_at(deadline: float | None) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """An Optuna callback that stops the study once `deadline` (a time.perf_counter() instant) is past: the trial
    under way finishes, no other starts. Optuna's own `timeout` counts from optimize() and only in wall-clock."""

    def stop(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if deadline is not None and time.perf_counter() >= deadline:
            study.stop()

    return stop


def search_ptq(
    space: HyperParameterOptimization,
    evaluate: Callable[[dict[str, Any]], tuple[float, float, dict[str, Any]]],
    journal_path: Path | None = None,
    deadline: float | None = None,
) -> list[Trial]:
    """Run max_quant_count trials; `evaluate(params) -> (score, metric, extra)` with JSON-able extra.

    Returns every finished trial in order, including those a previous, interrupted run finished. Past `deadline`
    (a time.perf_counter() instant) no trial starts, except a first one when none has finished, so that the
    search always has a best trial; fewer than max_quant_count trials then come back.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(space, journal_path)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    seen = {_key(t.user_attrs["params"]): t for t in finished}
    if finished:
        log.info("resuming the PTQ search: %d of %d trials already finished", len(finished), space.max_quant_count)

    def objective(trial: optuna.Trial) -> float:
        params = suggest_ptq_params(trial, space)
        key = _key(params)
        if key in seen:  # TPE may propose settings already tried: reuse, do not re-quantize
            previous = seen[key]
            for name, value in previous.user_attrs.items():
                trial.set_user_attr(name, value)
            return float(previous.value)
        start = time.perf_counter()
        score, metric, extra = evaluate(params)
        trial.set_user_attr("params", params)
        trial.set_user_attr("metric", float(metric))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        trial.set_user_attr("extra", extra)
        log.info("trial %d %s: score %.6g (metric %.6g)", trial.number, params, score, metric)
        return float(score)

    remaining = space.max_quant_count - len(finished)
    if finished and deadline is not None and time.perf_counter() >= deadline:
        remaining = 0
    if remaining > 0:
        with progress.bar(desc="PTQ search", total=space.max_quant_count, unit="trial", initial=len(finished)) as bar:
            callbacks = [lambda s, _: _show_best(bar, s), _stop_at(deadline)]
            study.optimize(objective, n_trials=remaining, callbacks=callbacks)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < space.max_quant_count:
        log.warning("PTQ search stopped at the time budget after %d of %d trials", len(complete), space.max_quant_count)
    return [_record(t) for t in complete]
