"""UnstructurePrune: magnitude masks (ratio or threshold, local or global, optionally on the GMP schedule), held
while fine-tuning with distillation; exported as a dense ONNX model with zeros, reported with per-layer sparsity."""

from __future__ import annotations

import logging

import onnx

from autocompress.config.strategies import UnstructurePrune
from autocompress.config.train import TrainConfig
from autocompress.errors import ConfigError
from autocompress.graph.stats import model_size_mb, weight_op_types
from autocompress.prune.unstructured import GMPSchedule, sparsity_report, unstructured_masks
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.strategy.base import CompressionContext, Stage, StageResult
from autocompress.strategy.masking import MaskedWeights, compressed_size_mb
from autocompress.strategy.records import OPS_KEY, StageInfo, sparsity_ops
from autocompress.strategy.training import fine_tune
from autocompress.train.loop import training_steps

log = logging.getLogger(__name__)


class UnstructurePruneStage(Stage):
    key = "UnstructurePrune"

    def _masks(self, model: onnx.ModelProto, ratio: float):
        cfg: UnstructurePrune = self.section
        return unstructured_masks(
            model,
            cfg.prune_mode,
            ratio=ratio,
            threshold=cfg.threshold,
            prune_params_type=cfg.prune_params_type,
            local_sparsity=cfg.local_sparsity,
        )

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        cfg: UnstructurePrune = self.section
        schedule = None
        if cfg.prune_strategy == "gmp":
            schedule = GMPSchedule.from_config(cfg.prune_ratio, cfg.gmp_config)
            _check_training_reaches_target(schedule, ctx)
        start_ratio = schedule.ratio_at(schedule.first_iteration) if schedule else cfg.prune_ratio
        masked = MaskedWeights(model, self._masks(model, start_ratio))
        graph = TorchGraph(model)

        def on_step(step: int) -> None:
            # GMP raises the ratio at stage boundaries; masks are recomputed from the current trained weights.
            iteration = step + schedule.first_iteration if schedule is not None else step
            if schedule is not None and schedule.mask_update_due(iteration):
                ratio = schedule.ratio_at(iteration)
                masked.update(self._masks(masked.export(graph), ratio))
                log.info("GMP iteration %d: sparsity ratio %.4f", iteration, ratio)

        outcome = fine_tune(
            model,
            ctx,
            self.key,
            prepare_student=masked.attach,
            export=masked.export,
            on_step=on_step,
            student_graph=graph,
        )
        report = sparsity_report(outcome.model, cfg.prune_params_type)
        info = {
            "sparsity": {k: round(v, 4) for k, v in report.per_layer.items()},
            "total_sparsity": round(report.total, 4),
            "compressed_size_mb": round(compressed_size_mb(outcome.model), 4),
            "dense_size_mb": round(model_size_mb(outcome.model), 4),
            **outcome.info,
        }
        info[OPS_KEY] = sparsity_ops(report.per_layer, {}, weight_op_types(outcome.model))
        return StageResult(outcome.model, StageInfo.from_mapping(info))


def _check_training_reaches_target(schedule: GMPSchedule, ctx: CompressionContext) -> None:
    """A GMP ramp longer than the training would export a model sparser than the start but short of prune_ratio
    with no sign of it; refuse up front, naming both lengths."""
    if ctx.train_batches is None:
        return  # fine_tune names the missing dataloader
    train_config = ctx.config.train or TrainConfig()
    steps = training_steps(train_config, ctx.train_batches)
    if schedule.first_iteration + steps < schedule.target_iteration:
        resumed = f" from resume_iteration {schedule.first_iteration}" if schedule.first_iteration else ""
        raise ConfigError(
            f"UnstructurePrune.gmp_config reaches prune_ratio={schedule.target_ratio} only at iteration "
            f"{schedule.target_iteration} (stable_iterations + pruning_iterations), but TrainConfig trains "
            f"{steps} steps{resumed} (train_iter={train_config.train_iter}, epochs={train_config.epochs}); "
            "raise TrainConfig.train_iter or epochs, or shorten gmp_config"
        )
