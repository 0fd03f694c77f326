"""ChannelPrune: remove whole channels (physically: the exported model is smaller), then fine-tune with distillation."""

from __future__ import annotations

import onnx

from autocompress.config.strategies import ChannelPrune
from autocompress.prune.channel import prune_channels
from autocompress.strategy.base import CompressionContext, Stage, StageResult, register
from autocompress.strategy.training import fine_tune


@register
class ChannelPruneStage(Stage):
    key = "ChannelPrune"

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        cfg: ChannelPrune = self.section
        pruned, report = prune_channels(
            model, cfg.pruned_ratio, criterion=cfg.criterion, prune_params_name=cfg.prune_params_name,
            round_to=cfg.round_to, input_shapes=_static_shapes(ctx),
        )
        outcome = fine_tune(pruned, ctx, self.key)
        info = {
            "params_before": report.params_before,
            "params_after": report.params_after,
            "macs_before": report.macs_before,
            "macs_after": report.macs_after,
            "prunable_groups": report.prunable_groups,
            "pruned_groups": [vars(g) for g in report.pruned],
            "unprunable_groups": [vars(g) for g in report.unprunable],
            **outcome.info,
        }
        return StageResult(outcome.model, info)


def _static_shapes(ctx: CompressionContext) -> dict[str, list[int]]:
    """Input shapes of the calibration sample, so Flatten->Gemm expansion knows the spatial size."""
    return {name: list(value.shape) for name, value in ctx.sample_feed.items()}
