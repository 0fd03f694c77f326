"""Fine-tuning a compressed ONNX model with distillation: the part every training stage shares.

The student graph is executed by TorchGraph; a stage may add transforms (fake-quant, masks) before training and
decide how the trained graph is exported. Teachers are the original model unless Distillation names others.
Evaluation during training exports the student and scores it in ONNX Runtime with the user's metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx
import torch

from autocompress.config.strategies import Distillation, MultiTeacherDistillation
from autocompress.config.train import TrainConfig
from autocompress.distill.distiller import Distiller
from autocompress.errors import ConfigError
from autocompress.graph.load import load_model
from autocompress.graph.prepare import prepare_model
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.strategy.base import CompressionContext
from autocompress.strategy.deadline import stopped_note
from autocompress.train.loop import TrainResult, train_loop

log = logging.getLogger(__name__)

#: History entries kept in the report (the loop logs every step it evaluates).
HISTORY_IN_REPORT = 200


@dataclass
class FineTuneOutcome:
    model: onnx.ModelProto
    result: TrainResult
    info: dict[str, Any] = field(default_factory=dict)


def training_device(ctx: CompressionContext) -> torch.device:
    devices = (ctx.config.global_.devices or "cpu").lower()
    if devices.startswith("gpu") or devices.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"devices={devices!r} but torch sees no CUDA device; use devices: cpu")
        return torch.device("cuda")
    return torch.device("cpu")


def distillation_section(ctx: CompressionContext) -> Distillation | MultiTeacherDistillation:
    strategies = ctx.config.strategies
    return strategies.get("MultiTeacherDistillation") or strategies.get("Distillation") or Distillation()


def load_teachers(section, ctx: CompressionContext) -> list[tuple[TorchGraph, onnx.ModelProto]]:
    shapes = ctx.config.global_.input_shapes
    if isinstance(section, MultiTeacherDistillation):
        specs = list(
            zip(
                section.teacher_model_dir,
                section.teacher_model_filename or [None] * len(section.teacher_model_dir),
                section.teacher_params_filename or [None] * len(section.teacher_model_dir),
            )
        )
        models = [prepare_model(load_model(d, f, p), shapes) for d, f, p in specs]
    elif section.teacher_model_dir:
        models = [
            prepare_model(
                load_model(section.teacher_model_dir, section.teacher_model_filename, section.teacher_params_filename),
                shapes,
            )
        ]
    else:
        models = [ctx.original]
    return [(TorchGraph(m).eval(), m) for m in models]


def fine_tune(
    student_model: onnx.ModelProto,
    ctx: CompressionContext,
    stage_name: str,
    prepare_student: Callable[[TorchGraph], None] | None = None,
    export: Callable[[TorchGraph], onnx.ModelProto] | None = None,
    on_step: Callable[[int], None] | None = None,
    student_graph: TorchGraph | None = None,
) -> FineTuneOutcome:
    """Train `student_model` toward the teachers and return the exported best model.

    `prepare_student(graph)` adds transforms before training; `export(graph)` turns the trained graph into the
    ONNX model to score and return (default: write the weights back into `student_model`).
    """
    if ctx.train_batches is None:
        raise ConfigError(f"{stage_name} trains the model: pass train_dataloader")
    train_config = ctx.config.train or TrainConfig()
    device = training_device(ctx)
    student = student_graph or TorchGraph(student_model)
    if prepare_student is not None:
        prepare_student(student)
    export = export or (lambda graph: graph.write_back(student_model))
    section = distillation_section(ctx)
    distiller = Distiller.from_config(section, student, student_model, load_teachers(section, ctx))

    def evaluate() -> float:
        student.eval()
        with torch.no_grad():
            candidate = export(student)
        return ctx.evaluator(candidate)

    result = train_loop(
        student,
        distiller,
        ctx.train_batches,
        train_config,
        evaluate,
        ctx.evaluator.higher_is_better,
        ctx.work_dir / stage_name,
        on_step=on_step,
        device=device,
        deadline=ctx.deadline,
    )
    student.eval()
    with torch.no_grad():
        model = export(student.cpu())
    if result.diverged:
        log.warning("%s: training diverged (NaN/Inf loss); the best state before it is used", stage_name)
    return FineTuneOutcome(model, result, _training_record(result, distiller))


def _training_record(result: TrainResult, distiller: Distiller) -> dict[str, Any]:
    """What a training stage's record says of its training; where the deadline cut it short, how far it got."""
    info = {
        "steps": result.steps,
        "best_metric": result.best_metric,
        "best_step": result.best_step,
        "diverged": result.diverged,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.elapsed_s, 3),
        "world_size": result.world_size,
        "history": result.history[-HISTORY_IN_REPORT:],
        "distillation": {"terms": [t.label for t in distiller.terms]},
    }
    if result.stopped_at_deadline:
        info["stopped"] = stopped_note(result.steps, result.total_steps, "steps")
    return info
