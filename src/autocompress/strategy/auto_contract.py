"""What the automatic choice promises whatever the model: no crash, a bounded run time, never a slower result.

Each plan runs under `guarded`: a failure becomes a rejected Candidate with its reason and the next plan is tried.
`Budget` tracks the time since the automatic stage started; a plan whose estimated cost exceeds what is left is
not started (`OverBudget`). `speed_figures` measures the float model and a candidate in alternating rounds at 1
thread, at all cores and at Global.latency_threads, so that a change of machine load during the measurement affects
both alike, until the speedup's interval settles it against the threshold or a time cap says undecided.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch

from autocompress.config.train import TrainConfig
from autocompress.errors import ConfigError
from autocompress.quant.mixed_precision import MIN_SPEEDUP
from autocompress.runtime.latency import all_cores, compare_latency, resolve_threads
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.strategy.base import CompressionContext
from autocompress.strategy.records import Candidate
from autocompress.train.loop import training_steps

log = logging.getLogger(__name__)

#: One training step (student forward and backward, teacher forward, optimizer, fake-quant or masks) costs about
#: this many plain forward-and-backward passes of the student.
TRAIN_STEP_FACTOR = 3.0
#: Fixed start-up of the training loop (optimizer construction, whose first call imports much of torch.optim).
TRAINING_START_S = 2.0


class OverBudget(Exception):
    """A plan that was not started because its estimated cost exceeds the time left."""


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if abs(value) >= 10 else f"{value:.1f} s"


@dataclass
class Budget:
    """The seconds the automatic stage may take, counted from its start."""

    seconds: float
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return max(0.0, self.seconds - self.elapsed())

    def require(self, estimate: float) -> None:
        """Raise OverBudget when a plan estimated at `estimate` seconds does not fit in what is left."""
        left = self.left()
        if estimate > left:
            raise OverBudget(f"skipped: estimated {_seconds(estimate)}, {_seconds(left)} left")


def rejected(label: str, reason: str) -> Candidate:
    """The record of a plan that produced no model."""
    return Candidate(label=label, params={"variant": label}, accepted=False, reason=reason)


def guarded(label: str, plan: Callable[[], Candidate]) -> Candidate:
    """Run one plan. A plan that does not fit the budget or fails (an unsupported op, a pass that raises, a stage
    with nothing to do) becomes a rejected candidate with its reason, so the automatic choice goes on with the next
    one; only errors that leave the process unable to go on (out of memory, interrupts) pass through."""
    try:
        return plan()
    except OverBudget as exc:
        log.info("automatic choice: plan %r %s", label, exc)
        return rejected(label, str(exc))
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a pass leaves the other plans worth trying
        reason = f"failed: {type(exc).__name__}: {exc}"
        log.warning("automatic choice: plan %r %s; trying the next plan", label, reason)
        return rejected(label, reason)


def speed_figures(
    float_model: onnx.ModelProto, model: onnx.ModelProto, ctx: CompressionContext, threshold: float | None = None
) -> dict[str, dict]:
    """The float model's and `model`'s latency (median, p10, p90 of round medians) and the speedup (float ms / ms),
    at 1 thread, at all cores and at Global.latency_threads (keyed by count). `interval` is that of the median
    paired round ratio, and `decided` whether it lies wholly on one side of `threshold` (default:
    MIN_SPEEDUP); when not, the time cap came first and the speedup is no better than a guess."""
    threshold = MIN_SPEEDUP if threshold is None else threshold
    figures = {}
    # A context built without a thread count (tests, callers outside a run) measures at 1 thread and all cores only.
    for threads in sorted({1, all_cores(), resolve_threads(getattr(ctx, "threads", 1))}):
        result = compare_latency([float_model, model], ctx.sample_feed, ctx.hardware, threads, threshold=threshold)
        (base, measured), (ratio,) = result.models, result.ratios
        figures[str(threads)] = {
            "float_ms": round(base.median_ms, 4),
            "ms": round(measured.median_ms, 4),
            "speedup": round(base.median_ms / measured.median_ms, 3),
            "float_p10": round(base.p10_ms, 4),
            "float_p90": round(base.p90_ms, 4),
            "p10": round(measured.p10_ms, 4),
            "p90": round(measured.p90_ms, 4),
            "interval": [round(v, 3) for v in ratio.interval] if ratio.interval else None,
            "decided": ratio.decided,
        }
    return figures


def probe_training(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """Seconds to set up training (the torch graph built and its first forward and backward pass) and of one
    training step, from a second such pass scaled by TRAIN_STEP_FACTOR, on one batch."""
    started = time.perf_counter()
    graph = TorchGraph(model).train()
    inputs = {name: torch.from_numpy(np.require(value, requirements="C")) for name, value in feed.items()}
    ends = []
    for _ in range(2):
        outputs = [out for out in graph(inputs).values() if out.is_floating_point() and out.requires_grad]
        if outputs:
            torch.stack([out.float().pow(2).mean() for out in outputs]).sum().backward()
        ends.append(time.perf_counter())
    return ends[0] - started, (ends[1] - ends[0]) * TRAIN_STEP_FACTOR


def training_seconds(model: onnx.ModelProto, ctx: CompressionContext, evaluation_seconds: float) -> float:
    """The estimated cost of fine-tuning `model` under TrainConfig: the setup of the student and of the teacher,
    its steps at the probed step time, and one evaluation every eval_iter steps and one at the end."""
    if ctx.train_batches is None:
        raise ConfigError("training plans (QAT, pruning with distillation) need train_dataloader; pass one")
    config = ctx.config.train or TrainConfig()
    steps = training_steps(config, ctx.train_batches)
    evaluations = steps // config.eval_iter + 1
    setup_s, step_s = probe_training(model, ctx.train_batches.first()[0])
    log.info(
        "training estimate: setup %.3f s, %d steps of %.3f s, %d evaluations of %.3f s",
        setup_s,
        steps,
        step_s,
        evaluations,
        evaluation_seconds,
    )
    return TRAINING_START_S + 2 * setup_s + steps * step_s + evaluations * evaluation_seconds
