"""QuantAware stage: quantization-aware training with distillation, exported as a QDQ model.

Flow: fold BN into convs (so the exported Conv feeds its Q directly and ORT fuses the int8 kernel, and the
trained graph is the exported graph) -> calibrate activation ranges on a few training batches (training
starts where PTQ ends) -> TorchGraph of the student with fake-quant on exactly what the QDQ writer quantizes
-> distil from the float model (or Distillation.teacher_model_dir) with train_loop -> every evaluation
exports the QDQ model and scores it with the user's metric; the best is kept. The PTQ starting point is
scored too and returned if training never beats it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import onnx
import torch

from autocompress.config.strategies import Distillation, QuantAware
from autocompress.config.train import TrainConfig
from autocompress.distill import Distiller
from autocompress.errors import ConfigError
from autocompress.graph.load import load_model
from autocompress.graph.prepare import prepare_model, simplify
from autocompress.quant.qat import FakeQuantSettings, calibrated_ranges, export_qat, insert_fake_quant
from autocompress.quant.qdq import QDQOptions
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.strategy.base import CompressionContext, Stage, StageResult, register
from autocompress.train import train_loop

log = logging.getLogger(__name__)

#: Training batches whose statistics give the initial activation ranges.
CALIBRATION_BATCHES = 8
#: Range algorithm of the initial ranges: QuantPost's default, so the starting point is the default PTQ model.
INITIAL_RANGE_ALGO, INITIAL_HIST_PERCENT = "hist", 0.999


def qdq_options(section: QuantAware, ctx: CompressionContext) -> QDQOptions:
    """TensorRT (for_tensorrt or a gpu deploy target) wants symmetric S8 activations; ORT CPU asymmetric U8."""
    return QDQOptions(
        quantize_op_types=tuple(section.quantize_op_types),
        is_full_quantize=section.is_full_quantize,
        not_quant_pattern=tuple(section.not_quant_pattern),
        activation_bits=section.activation_bits,
        weight_bits=section.weight_bits,
        weight_quantize_type=section.weight_quantize_type,
        symmetric_activations=section.for_tensorrt or ctx.hardware.name == "gpu",
    )


def training_device(devices: str) -> torch.device:
    if devices.lower() in ("gpu", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.warning("devices=%r but torch sees no CUDA device; training on the CPU", devices)
    return torch.device("cpu")


def _teacher(ctx: CompressionContext, section: Distillation) -> onnx.ModelProto:
    """The float model, or the configured teacher prepared like the student's source."""
    if section.teacher_model_dir is None:
        return ctx.original
    loaded = load_model(section.teacher_model_dir, section.teacher_model_filename, section.teacher_params_filename)
    return prepare_model(loaded, ctx.config.global_.input_shapes)


@register
class QuantAwareStage(Stage):
    key = "QuantAware"
    consumes = ("Distillation",)

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        cfg: QuantAware = self.section
        if ctx.train_batches is None:
            raise ConfigError("QuantAware trains the quantized model: pass train_dataloader (batches of model inputs)")
        train_config = ctx.config.train or TrainConfig()
        distillation = self.config.strategies.get("Distillation") or Distillation()
        options = qdq_options(cfg, ctx)
        settings = FakeQuantSettings(
            activation_quantize_type=cfg.activation_quantize_type, moving_rate=cfg.moving_rate,
            window_size=cfg.window_size, use_pact=cfg.use_pact, sparse_model=train_config.sparse_model,
        )  # fmt: skip

        model = simplify(model, fold_batch_norm=True)
        ranges = calibrated_ranges(
            model, options, ctx.train_batches.feeds(), INITIAL_RANGE_ALGO, INITIAL_HIST_PERCENT,
            batch_nums=CALIBRATION_BATCHES, cache_dir=ctx.config.global_.resolved_cache_dir(),
        )  # fmt: skip
        student = TorchGraph(model)
        handles = insert_fake_quant(student, model, options, ranges, settings)
        teacher_model = _teacher(ctx, distillation)
        distiller = Distiller.from_config(distillation, student, model, [(TorchGraph(teacher_model), teacher_model)])

        def export() -> onnx.ModelProto:
            return export_qat(model, student, handles, options)

        evaluator = ctx.evaluator
        initial_model = export()
        initial_metric = evaluator(initial_model)
        log.info("QuantAware starts from calibrated ranges: %s = %.6g", evaluator.name, initial_metric)

        result = train_loop(
            student, distiller, ctx.train_batches, train_config, lambda: evaluator(export()),
            evaluator.higher_is_better, ctx.work_dir / self.key, device=training_device(ctx.config.global_.devices),
        )  # fmt: skip
        student.eval()
        trained_model = export()
        trained_metric = result.best_metric if result.best_metric is not None else evaluator(trained_model)
        keep_trained = not evaluator.better(initial_metric, trained_metric)
        info: dict[str, Any] = {
            "quantized_nodes": len(handles.plan.nodes),
            "quantized_op_counts": dict(Counter(p.node.op_type for p in handles.plan.nodes)),
            "symmetric_activations": options.symmetric_activations,
            "activation_quantize_type": "pact" if cfg.use_pact else cfg.activation_quantize_type,
            "initial_metric": initial_metric,
            "trained_metric": trained_metric,
            "metric": trained_metric if keep_trained else initial_metric,
            "selected": "trained" if keep_trained else "initial",
            "steps": result.steps,
            "best_step": result.best_step,
            "diverged": result.diverged,
            "train_seconds": round(result.elapsed_s, 3),
            "history": result.history,
        }
        if not keep_trained:
            log.warning(
                "QuantAware: no evaluated training state beat the calibrated starting point (%.6g vs %.6g); "
                "returning the starting point", trained_metric, initial_metric,
            )  # fmt: skip
        return StageResult(trained_model if keep_trained else initial_model, info)

