"""QuantAware stage: quantization-aware training with distillation, exported as a QDQ model.

Flow: fold BN and constant scales into convs, as PTQ does (so the exported Conv feeds its Q directly and ORT
fuses the int8 kernel, and the trained graph is the exported graph) -> calibrate activation ranges on a few training batches with a few
range algorithms and keep the one whose PTQ model scores best (training starts where the best of them ends)
-> TorchGraph of the student with fake-quant on exactly what the QDQ writer quantizes
-> distil from the float model (or Distillation.teacher_model_dir) -> every evaluation exports the QDQ model
and scores it with the user's metric; the best is kept. The PTQ starting point is scored too and returned if
training never beats it.

Zeros of a sparse model (TrainConfig.sparse_model, or a preceding UnstructurePrune/ASPPrune stage) stay zeros.
`dtype` and `onnx_format` are accepted for PaddleSlim compatibility: the export is always ONNX QDQ, with U8
activations for ORT CPU and S8 for TensorRT (for_tensorrt or a gpu deploy target).
"""

from __future__ import annotations

import logging
from collections import Counter

import onnx

from autocompress.config.strategies import QuantAware
from autocompress.config.train import TrainConfig
from autocompress.errors import ConfigError
from autocompress.graph.prepare import simplify_for_quantization
from autocompress.quant.fold import fold_conv_affine
from autocompress.quant.qat import FakeQuantSettings, candidate_ranges, export_qat, insert_fake_quant
from autocompress.quant.qdq import QDQOptions, write_qdq_model
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.strategy.base import CompressionContext, Stage, StageResult
from autocompress.strategy.records import OPS_KEY, StageInfo, quantization_ops
from autocompress.strategy.training import fine_tune

log = logging.getLogger(__name__)

#: Stages that leave zeros in weights which quantization-aware training must keep.
SPARSE_KEYS = frozenset({"UnstructurePrune", "ASPPrune"})
#: Training batches whose statistics give the initial activation ranges.
CALIBRATION_BATCHES = 8
#: Range algorithms tried for the initial ranges, (algo, hist_percent): QuantPost's default first. One
#: calibration pass serves all; each costs one evaluation, and which suits a model varies (hist clips the
#: tails of wide activations, avg keeps ReLU6-bounded ones whole), so training starts from the best.
INITIAL_RANGES = (("hist", 0.999), ("avg", 0.999), ("mse", 0.999))


class QuantAwareStage(Stage):
    key = "QuantAware"

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        cfg: QuantAware = self.section
        if ctx.train_batches is None:
            raise ConfigError("QuantAware trains the quantized model: pass train_dataloader (batches of model inputs)")
        options = QDQOptions.from_section(cfg, ctx.hardware)
        keep_zeros = (ctx.config.train or TrainConfig()).sparse_model or bool(SPARSE_KEYS & set(self.config.strategies))
        settings = FakeQuantSettings(
            activation_quantize_type=cfg.activation_quantize_type,
            moving_rate=cfg.moving_rate,
            window_size=cfg.window_size,
            use_pact=cfg.use_pact,
            sparse_model=keep_zeros,
        )

        model = simplify_for_quantization(model, ctx.sample_feed)
        # the constant scales PTQ folds into convs (hardswish's /6, per-channel Mul/Add): without the fold the
        # int8 model keeps them as extra QLinearMul/Add kernels and runs slower than the PTQ model
        model, _ = fold_conv_affine(model, keep=options.skip_names)
        initial_algo, ranges, initial_model, initial_metric = self._best_initial_ranges(model, options, ctx)
        student = TorchGraph(model)
        handles = insert_fake_quant(student, model, options, ranges, settings)

        def export(graph: TorchGraph) -> onnx.ModelProto:
            return export_qat(model, graph, handles, options)

        evaluator = ctx.evaluator
        log.info("QuantAware starts from calibrated ranges: %s = %.6g", evaluator.name, initial_metric)
        outcome = fine_tune(model, ctx, self.key, export=export, student_graph=student)
        trained_metric = outcome.result.best_metric
        if trained_metric is None:
            trained_metric = evaluator(outcome.model)
        keep_trained = not evaluator.better(initial_metric, trained_metric)
        if not keep_trained:
            log.warning(
                "QuantAware: no evaluated training state beat the calibrated starting point (%.6g vs %.6g); "
                "returning the starting point",
                trained_metric,
                initial_metric,
            )
        details = {
            **outcome.info,
            "quantized_nodes": len(handles.plan.nodes),
            "quantized_op_counts": dict(Counter(p.node.op_type for p in handles.plan.nodes)),
            OPS_KEY: quantization_ops(handles.plan.decisions),
            "symmetric_activations": options.symmetric_activations,
            "keeps_zeros": settings.sparse_model,
            "activation_quantize_type": "pact" if cfg.use_pact else cfg.activation_quantize_type,
            "initial_ranges": initial_algo,
            "initial_metric": initial_metric,
            "trained_metric": trained_metric,
            "selected": "trained" if keep_trained else "initial",
        }
        info = StageInfo(metric=trained_metric if keep_trained else initial_metric, details=details)
        return StageResult(outcome.model if keep_trained else initial_model, info)

    @staticmethod
    def _best_initial_ranges(
        model: onnx.ModelProto, options: QDQOptions, ctx: CompressionContext
    ) -> tuple[str, dict, onnx.ModelProto, float]:
        """The INITIAL_RANGES candidate whose PTQ model the evaluator scores best (first one on ties): its label,
        ranges, model and metric. That model is also the untrained student's export (the same writer, ranges and
        abs-max weight scales), so it is the starting point without a second evaluation."""
        candidates = candidate_ranges(
            model,
            options,
            ctx.train_batches.feeds(),
            INITIAL_RANGES,
            batch_nums=CALIBRATION_BATCHES,
            cache_dir=ctx.config.global_.resolved_cache_dir(),
            deadline=ctx.deadline,
        )
        best = None
        for (algo, percent), ranges in zip(INITIAL_RANGES, candidates):
            label = f"{algo} {percent}" if algo == "hist" else algo
            quantized = write_qdq_model(model, ranges, options)[0]
            metric = ctx.evaluator(quantized)
            log.info("QuantAware initial ranges %s: %s = %.6g", label, ctx.evaluator.name, metric)
            if best is None or ctx.evaluator.better(metric, best[3]):
                best = (label, ranges, quantized, metric)
        return best
