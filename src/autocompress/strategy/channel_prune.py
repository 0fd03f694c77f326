"""ChannelPrune: remove whole channels (physically: the exported model is smaller), then fine-tune with distillation."""

from __future__ import annotations

import itertools

import onnx

from autocompress.config.strategies import ChannelPrune
from autocompress.errors import ConfigError
from autocompress.graph.stats import weight_op_types
from autocompress.prune.channel import ChannelPruneReport, prune_channels
from autocompress.prune.criteria import DATA_CRITERIA
from autocompress.prune.sensitivity import sensitivity_ratios
from autocompress.strategy.base import CompressionContext, Stage, StageResult
from autocompress.strategy.records import OPS_KEY, OpRecord, StageInfo
from autocompress.strategy.training import fine_tune


class ChannelPruneStage(Stage):
    key = "ChannelPrune"

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        cfg: ChannelPrune = self.section
        shapes = _static_shapes(ctx)
        calibration = _calibration(cfg, ctx)
        ratios = cfg.pruned_ratio
        if cfg.ratio_allocation == "sensitivity":
            ratios = sensitivity_ratios(
                model,
                cfg.pruned_ratio,
                calibration,
                criterion=cfg.criterion,
                prune_params_name=cfg.prune_params_name,
                round_to=cfg.round_to,
                input_shapes=shapes,
                compensate=cfg.mean_compensation,
            )
        pruned, report = prune_channels(
            model,
            ratios,
            criterion=cfg.criterion,
            prune_params_name=cfg.prune_params_name,
            round_to=cfg.round_to,
            input_shapes=shapes,
            calibration=calibration,
            compensate=cfg.mean_compensation,
        )
        outcome = fine_tune(pruned, ctx, self.key)
        info = {
            "params_before": report.params_before,
            "params_after": report.params_after,
            "macs_before": report.macs_before,
            "macs_after": report.macs_after,
            "prunable_groups": report.prunable_groups,
            "compensated_layers": report.compensated,
            "pruned_groups": [vars(g) for g in report.pruned],
            "unprunable_groups": [vars(g) for g in report.unprunable],
            **({"warnings": report.warnings} if report.warnings else {}),
            **({"allocated_ratios": ratios} if cfg.ratio_allocation == "sensitivity" else {}),
            **outcome.info,
        }
        info[OPS_KEY] = channel_ops(report, weight_op_types(model))
        return StageResult(outcome.model, StageInfo.from_mapping(info))


def channel_ops(report: ChannelPruneReport, op_types: dict[str, str]) -> list[OpRecord]:
    """One row per weight of every channel group: its kept and original output channels, and why a group the
    pruner could not touch stayed whole."""
    rows = [
        OpRecord(name, op_types.get(name, ""), "pruned", kept=group.kept, original=group.original)
        for group in report.pruned
        for name in group.weights
    ]
    rows += [
        OpRecord(name, op_types.get(name, ""), "kept", group.reason, kept=group.channels, original=group.channels)
        for group in report.unprunable
        for name in group.weights
    ]
    return rows


def _calibration(cfg: ChannelPrune, ctx: CompressionContext) -> list[dict] | None:
    """The batches activation statistics are measured on, when the configuration reads activations at all."""
    if not (cfg.mean_compensation or cfg.criterion in DATA_CRITERIA or cfg.ratio_allocation == "sensitivity"):
        return None
    if ctx.train_batches is None:
        if cfg.criterion in DATA_CRITERIA or cfg.ratio_allocation == "sensitivity":
            raise ConfigError(
                f"ChannelPrune criterion {cfg.criterion!r} with ratio_allocation {cfg.ratio_allocation!r} measures "
                "activations: give a train_dataloader, or use a weight criterion (l1_norm, bn_scale, "
                "geometry_median) with ratio_allocation 'uniform'"
            )
        return None
    return list(itertools.islice(ctx.train_batches.feeds(), cfg.batch_nums))


def _static_shapes(ctx: CompressionContext) -> dict[str, list[int]]:
    """Input shapes of the calibration sample, so Flatten->Gemm expansion knows the spatial size."""
    return {name: list(value.shape) for name, value in ctx.sample_feed.items()}
