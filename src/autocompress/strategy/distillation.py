"""Distillation alone (single or multi-teacher): fine-tune the model toward its teacher(s), no structural change."""

from __future__ import annotations

import onnx

from autocompress.strategy.base import CompressionContext, Stage, StageResult
from autocompress.strategy.records import StageInfo
from autocompress.strategy.training import fine_tune


class DistillationStage(Stage):
    key = "Distillation"

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        outcome = fine_tune(model, ctx, self.key)
        return StageResult(outcome.model, StageInfo(details=outcome.info))


class MultiTeacherDistillationStage(DistillationStage):
    key = "MultiTeacherDistillation"
