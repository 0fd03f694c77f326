"""The training loop driven by TrainConfig: optimizer and schedule, AMP, evaluation, checkpoints and resume.

Length: `train_iter` steps, or `epochs` passes over the batches; with neither,
clamp(DEFAULT_EPOCHS * len(batches), DEFAULT_MIN_STEPS, DEFAULT_MAX_STEPS) steps. Fine-tuning a compressed model
toward its teacher converges in a few passes; ACT's default of 100 epochs would take hours for no gain.

Determinism: everything is seeded from TrainConfig.seed, and each epoch starts by reseeding from (seed, epoch), so
a loader that shuffles draws the same order in an interrupted and an uninterrupted run. A checkpoint records the
epoch, the number of batches consumed in it and the RNG states; resuming re-creates the epoch's iterator, skips
the consumed batches, restores the RNG states and continues, reaching the same weights as a run never stopped.

Evaluation runs every `eval_iter` steps and after the last step (the caller writes the student back to ONNX and
measures it). The best state by metric is kept and loaded into the student at the end. Without an evaluate
callback the last state is the result. A NaN/Inf loss stops training and restores the best state (or the initial
one when nothing was evaluated yet); the result says diverged=True.

A deadline (Global.time_budget, as a time.perf_counter() instant) stops training after the step under way; no
evaluation starts after it, so the result is the best evaluated state (the last state when none was evaluated) and
says stopped_at_deadline=True with the steps run and the steps asked for.

Under torchrun with more than one process, training is data-parallel (see autocompress.train.distributed): each
rank trains on its slice of every global batch, only rank 0 evaluates and writes checkpoints, and its metric and
checkpoint are broadcast so that every rank takes the same decisions.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from autocompress import progress
from autocompress.config.train import TrainConfig
from autocompress.errors import ConfigError, DataError
from autocompress.train import distributed
from autocompress.train.amp import AmpPolicy, amp_policy
from autocompress.train.checkpoint import (
    CHECKPOINT_NAME,
    epoch_seed,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from autocompress.train.optim import build_optimizer
from autocompress.train.recompute import activation_checkpointing
from autocompress.train.schedules import Scheduler, build_scheduler, current_lr, is_plateau

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 3
DEFAULT_MIN_STEPS = 300
DEFAULT_MAX_STEPS = 5000
#: Batches read, at most, to learn the length of one pass of data without len() when TrainConfig.epochs needs it.
MAX_COUNTED_BATCHES = 1_000_000

Array = np.ndarray | torch.Tensor
Batch = tuple[dict[str, Array], Array | None]


class LossFunction(Protocol):
    """What the loop trains against: distill.Distiller, or any module returning (total loss, parts)."""

    def __call__(
        self, feeds: dict[str, torch.Tensor], label: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class TrainResult:
    steps: int
    best_metric: float | None
    best_step: int | None
    #: one dict per logging or evaluation step: step, loss (mean over the logging window), lr, losses (each loss
    #: term at that step), metric (None where not evaluated)
    history: list[dict[str, Any]] = field(default_factory=list)
    diverged: bool = False
    stopped_early: bool = False
    elapsed_s: float = 0.0
    #: number of data-parallel training processes
    world_size: int = 1
    #: steps the configuration asked for; fewer ran when the deadline stopped training
    total_steps: int = 0
    stopped_at_deadline: bool = False


def check_origin_metric(measured: float, origin_metric: float | None, tolerance: float) -> None:
    """ConfigError when the user's eval of the uncompressed model disagrees with origin_metric (relative tolerance)."""
    if origin_metric is None:
        return
    scale = max(abs(origin_metric), 1e-12)
    if not math.isfinite(measured) or abs(measured - origin_metric) / scale > tolerance:
        raise ConfigError(
            f"your eval function gives {measured:.6g} for the uncompressed model but origin_metric says "
            f"{origin_metric:.6g} (allowed relative difference {tolerance:g}); check the eval function and data, "
            f"or correct TrainConfig.origin_metric"
        )


def count_batches(batches: Iterable, cap: int | None = None) -> int:
    """Batches in one pass: the data's len() when it has one, else counted by reading at most `cap` of them."""
    try:
        n = len(batches)  # type: ignore[arg-type]
    except TypeError:
        n = sum(1 for _ in itertools.islice(batches, cap))
    if n == 0:
        raise DataError("the training data yields no batch")
    return n


def training_steps(config: TrainConfig, batches: Iterable) -> int:
    """total_steps, reading the data only as far as the number depends on it: not at all with train_iter (an
    endless loader works), up to the batches that reach DEFAULT_MAX_STEPS without epochs."""
    if isinstance(batches, Iterator):
        raise DataError("the training data must be re-iterable (a list, a Dataset or a DataLoader), not an iterator")
    if config.train_iter is not None:
        return config.train_iter
    if config.epochs is None:
        return total_steps(config, count_batches(batches, math.ceil(DEFAULT_MAX_STEPS / DEFAULT_EPOCHS)))
    n = count_batches(batches, MAX_COUNTED_BATCHES + 1)
    if n > MAX_COUNTED_BATCHES:
        raise ConfigError(
            f"TrainConfig.epochs = {config.epochs} needs the length of one pass, but the training data has no len() "
            f"and yields more than {MAX_COUNTED_BATCHES} batches (an endless loader?); set TrainConfig.train_iter "
            "to the number of steps instead"
        )
    return total_steps(config, n)


def total_steps(config: TrainConfig, batches_per_epoch: int) -> int:
    if config.train_iter is not None:
        return config.train_iter
    if config.epochs is not None:
        return config.epochs * batches_per_epoch
    return min(max(DEFAULT_EPOCHS * batches_per_epoch, DEFAULT_MIN_STEPS), DEFAULT_MAX_STEPS)


def _to_tensor(value: Array, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return torch.from_numpy(np.require(value, requirements="C")).to(device)


def _split(batch: Any, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    if isinstance(batch, dict):
        feeds, label = batch, None
    elif isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], dict):
        feeds, label = batch
    else:
        raise DataError(
            f"a training batch must be (feeds dict, label or None) or a feeds dict; got {type(batch).__name__}"
        )
    tensors = {name: _to_tensor(value, device) for name, value in feeds.items()}
    return tensors, None if label is None else _to_tensor(label, device)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _improves(metric: float, best: float | None, higher_is_better: bool) -> bool:
    if best is None:
        return True
    return metric > best if higher_is_better else metric < best


def _reaches(metric: float, target: float | None, higher_is_better: bool) -> bool:
    return target is not None and (metric >= target if higher_is_better else metric <= target)


@dataclass
class _Progress:
    """Everything a checkpoint restores besides the student, optimizer, scheduler and scaler."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches consumed in `epoch`
    best_metric: float | None = None
    best_step: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # losses since the last log line
    finished: bool = False
    diverged: bool = False
    stopped_early: bool = False
    evaluated_step: int = -1
    stopped_at_deadline: bool = False


class _Trainer:
    def __init__(
        self,
        student: nn.Module,
        loss_fn: LossFunction,
        batches: Iterable,
        config: TrainConfig,
        evaluate: Callable[[], float] | None,
        higher_is_better: bool,
        work_dir: Path,
        on_step: Callable[[int], None] | None,
        device: torch.device,
        dist: distributed.DistributedContext | None = None,
        deadline: float | None = None,
    ):
        self.student, self.loss_fn, self.batches, self.config = student, loss_fn, batches, config
        self.dist, self.deadline = dist, deadline
        self.forward = self._parallel_loss() if dist is not None else loss_fn
        self.evaluate, self.higher_is_better, self.on_step, self.device = evaluate, higher_is_better, on_step, device
        self.checkpoint_path = Path(work_dir) / CHECKPOINT_NAME
        self.total = training_steps(config, batches)
        self.params = [p for p in student.parameters() if p.requires_grad]
        self.optimizer, self.gradients = build_optimizer(self.params, config.optimizer_builder)
        self.scheduler: Scheduler = build_scheduler(self.optimizer, config.learning_rate)
        self.amp: AmpPolicy = amp_policy(config.amp_config, device)
        self.progress = _Progress()
        self.initial_state = _cpu_state(student)
        self.resume_rng: dict[str, Any] | None = None

    def _parallel_loss(self) -> LossFunction:
        if not isinstance(self.loss_fn, nn.Module):
            raise ConfigError(
                "data-parallel training needs the loss to be an nn.Module that runs the student (such as Distiller), "
                f"got {type(self.loss_fn).__name__}"
            )
        return self.dist.wrap(self.loss_fn, frozen=list(getattr(self.loss_fn, "teachers", [])))

    # ---------------------------------------------------------------------------------------- checkpoints

    def _save(self) -> None:
        if self.dist is not None and not self.dist.primary:
            return
        p = self.progress
        save_checkpoint(
            self.checkpoint_path,
            {
                "total_steps": self.total,
                "seed": self.config.seed,
                "student": _cpu_state(self.student),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.amp.scaler.state_dict(),
                "rng": rng_state(),
                "progress": {k: getattr(p, k) for k in p.__dataclass_fields__},
            },
        )

    def _load_compatible(self) -> dict[str, Any] | None:
        if not (self.config.resume and self.checkpoint_path.exists()):
            return None
        state = load_checkpoint(self.checkpoint_path)
        reason = self._mismatch(state)
        if reason is not None:
            log.warning("not resuming from checkpoint %s: %s; training starts over", self.checkpoint_path, reason)
            return None
        return state

    def _mismatch(self, state: dict[str, Any]) -> str | None:
        """Why a checkpoint cannot continue this training (None when it can): another length or seed, or a student
        with other tensors (another model), which loading would fail on."""
        if state.get("total_steps") != self.total or state.get("seed") != self.config.seed:
            return (
                f"it was made for {state.get('total_steps')} steps with seed {state.get('seed')}, this run has "
                f"{self.total} steps and seed {self.config.seed}"
            )
        saved, current = state.get("student") or {}, self.student.state_dict()
        if saved.keys() != current.keys():
            return "its student has other tensors than this run's model"
        for name, tensor in current.items():
            if tuple(saved[name].shape) != tuple(tensor.shape):
                return (
                    f"its tensor {name!r} has shape {tuple(saved[name].shape)}, this run's model {tuple(tensor.shape)}"
                )
        return None

    def restore(self) -> None:
        """Resume from rank 0's checkpoint (every rank receives the same state)."""
        if self.dist is None:
            state = self._load_compatible()
        else:
            state = self.dist.broadcast(self._load_compatible() if self.dist.primary else None)
        if state is None:
            return
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.amp.scaler.load_state_dict(state["scaler"])
        self.progress = _Progress(**state["progress"])
        self.resume_rng = state["rng"]
        log.info("resumed training from %s at step %d/%d", self.checkpoint_path, self.progress.step, self.total)

    # ------------------------------------------------------------------------------------------ steps

    def _train_step(self, batch: Any) -> tuple[float, dict[str, float]] | None:
        """One optimizer step; None when the loss is not finite."""
        feeds, label = _split(batch, self.device)
        if self.dist is not None:
            feeds, label = self.dist.shard(feeds, label)
        with self.amp.autocast():
            total, parts = self.forward(feeds, label)
        loss = float(total.detach())
        if self.dist is not None:  # the global loss, so that every rank stops on a NaN/Inf in any of them
            loss = self.dist.mean(loss)
        if not math.isfinite(loss):
            return None
        scaler = self.amp.scaler
        scaler.scale(total).backward()
        scaler.unscale_(self.optimizer)
        self.gradients.apply(self.params)
        scaler.step(self.optimizer)
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if not is_plateau(self.scheduler):
            self.scheduler.step()
        return loss, parts

    def _log(self, parts: dict[str, float]) -> None:
        p = self.progress
        mean = float(np.mean(p.window))
        lr = current_lr(self.optimizer)
        if is_plateau(self.scheduler):
            self.scheduler.step(mean)
        detail = ", ".join(f"{k}={v:.6g}" for k, v in parts.items())
        log.info("step %d/%d  loss %.6g  lr %.6g  (%s)", p.step, self.total, mean, lr, detail)
        p.history.append({"step": p.step, "loss": mean, "lr": lr, "losses": dict(parts), "metric": None})
        p.window = []

    def _evaluate_and_checkpoint(self) -> None:
        p = self.progress
        p.evaluated_step = p.step
        if self.evaluate is None:
            p.best_state, p.best_step = _cpu_state(self.student), p.step
        else:
            metric = self._metric()
            log.info("step %d: metric %.6g (best %s)", p.step, metric, p.best_metric)
            if p.history and p.history[-1]["step"] == p.step:
                p.history[-1]["metric"] = metric
            else:
                p.history.append(
                    {"step": p.step, "loss": None, "lr": current_lr(self.optimizer), "losses": {}, "metric": metric}
                )
            if math.isfinite(metric) and _improves(metric, p.best_metric, self.higher_is_better):
                p.best_metric, p.best_step, p.best_state = metric, p.step, _cpu_state(self.student)
            if _reaches(metric, self.config.target_metric, self.higher_is_better):
                log.info("target_metric %s reached at step %d; stopping", self.config.target_metric, p.step)
                p.stopped_early = True
        self._save()

    def _metric(self) -> float:
        """The evaluation result, computed on rank 0 only and shared with the others."""
        if self.dist is None:
            return float(self.evaluate())
        return self.dist.broadcast(float(self.evaluate()) if self.dist.primary else None)

    def _diverge(self) -> None:
        p = self.progress
        restored = "the best saved state" if p.best_state is not None else "the initial weights"
        log.error(
            "loss is NaN/Inf at step %d; training stopped and %s (step %s) restored",
            p.step + 1,
            restored,
            p.best_step if p.best_state is not None else 0,
        )
        p.diverged = True
        self.student.load_state_dict(p.best_state if p.best_state is not None else self.initial_state)

    def _epoch_iterator(self):
        p = self.progress
        seed_everything(epoch_seed(self.config.seed, p.epoch))
        iterator = iter(self.batches)
        for _ in range(p.position):
            if next(iterator, None) is None:
                break
        if self.resume_rng is not None:
            set_rng_state(self.resume_rng)
            self.resume_rng = None
        return iterator

    def _done(self) -> bool:
        p = self.progress
        return p.step >= self.total or p.stopped_early or p.diverged or p.stopped_at_deadline

    def _check_deadline(self) -> None:
        """Stop after this step once the deadline is past; under torchrun the ranks stop together when any of them
        is past it (their clocks start apart), so that none waits in a collective for the others."""
        if self.deadline is None or self.progress.step >= self.total:
            return
        past = time.perf_counter() >= self.deadline
        if self.dist is not None:
            past = self.dist.mean(float(past)) > 0
        if past:
            p = self.progress
            log.warning("training stopped at the time budget after %d of %d steps", p.step, self.total)
            p.stopped_at_deadline = True

    def _train_mode(self) -> None:
        self.student.train()
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.train()

    def _show(self, bar: progress.Bar, loss: float, seconds: float) -> None:
        """The step on the bar (tqdm gives the ETA) with its loss, learning rate and time."""
        bar.set_postfix(
            loss=f"{loss:.4g}", lr=f"{current_lr(self.optimizer):.3g}", step=f"{seconds * 1000:.0f}ms", refresh=False
        )
        bar.update()

    def run(self, bar: progress.Bar) -> None:
        p = self.progress
        self._train_mode()
        while not self._done():
            consumed = False
            for batch in self._epoch_iterator():
                consumed = True
                started = time.perf_counter()
                outcome = self._train_step(batch)
                if outcome is None:
                    self._diverge()
                    break
                p.step += 1
                p.position += 1
                p.window.append(outcome[0])
                self._show(bar, outcome[0], time.perf_counter() - started)
                if self.on_step is not None:
                    self.on_step(p.step)
                if p.step % self.config.logging_iter == 0:
                    self._log(outcome[1])
                if p.step % self.config.eval_iter == 0 or p.step == self.total:
                    self._evaluate_and_checkpoint()
                    self._train_mode()
                self._check_deadline()
                if self._done():
                    break
            else:
                if not consumed and p.position == 0:
                    raise DataError(f"the training data yielded no batch in epoch {p.epoch}")
                p.epoch, p.position = p.epoch + 1, 0
        p.finished = True
        # past the deadline no evaluation starts: the best evaluated state, or the last one, is the result
        if not p.diverged and not p.stopped_at_deadline and p.evaluated_step != p.step:
            self._evaluate_and_checkpoint()
        if not p.diverged and self.evaluate is not None and p.best_state is not None:
            self.student.load_state_dict(p.best_state)
        self._save()


def train_loop(
    student: nn.Module,
    distiller: LossFunction,
    batches: Iterable[Batch],
    config: TrainConfig,
    evaluate: Callable[[], float] | None,
    higher_is_better: bool,
    work_dir: Path,
    on_step: Callable[[int], None] | None = None,
    device: str | torch.device = "cpu",
    deadline: float | None = None,
) -> TrainResult:
    """Train `student` against `distiller`'s loss as TrainConfig says (see the module docstring).

    Under torchrun with several processes, `evaluate` is called on rank 0 only. Past `deadline` (a
    time.perf_counter() instant) training stops after the step under way, as at its normal end but without
    another evaluation.
    """
    start = time.perf_counter()
    device = torch.device(device)
    dist = distributed.setup(config.use_fleet, config.sharding_config, device)
    if dist is not None:
        device = dist.device
    seed_everything(config.seed)
    student.to(device)
    if isinstance(distiller, nn.Module):
        distiller.to(device)
    trainer = _Trainer(
        student, distiller, batches, config, evaluate, higher_is_better, work_dir, on_step, device, dist, deadline
    )
    trainer.restore()
    if not trainer.progress.finished:
        with (
            activation_checkpointing(student, config.recompute_config),
            progress.bar(desc="training", total=trainer.total, unit="step", initial=trainer.progress.step) as bar,
        ):
            trainer.run(bar)
    elif trainer.progress.best_state is not None and evaluate is not None:
        student.load_state_dict(trainer.progress.best_state)
    p = trainer.progress
    return TrainResult(
        steps=p.step,
        best_metric=p.best_metric,
        best_step=p.best_step,
        history=list(p.history),
        diverged=p.diverged,
        stopped_early=p.stopped_early,
        elapsed_s=time.perf_counter() - start,
        world_size=1 if dist is None else dist.world_size,
        total_steps=trainer.total,
        stopped_at_deadline=p.stopped_at_deadline,
    )
