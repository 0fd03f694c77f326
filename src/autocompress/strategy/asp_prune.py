"""ASPPrune: 2:4 semi-structured sparsity along the input dimension, held while fine-tuning with distillation.

The speedup needs sparse tensor cores (NVIDIA Ampere or newer) with TensorRT's sparse kernels; ONNX Runtime on CPU
runs the model dense, so on CPU the gain is only in compressed size.
"""

from __future__ import annotations

import onnx

from autocompress.config.strategies import ASPPrune
from autocompress.graph.stats import weight_op_types
from autocompress.prune.asp import asp_masks
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.strategy.base import CompressionContext, Stage, StageResult
from autocompress.strategy.masking import MaskedWeights, compressed_size_mb
from autocompress.strategy.records import OPS_KEY, StageInfo, sparsity_ops
from autocompress.strategy.training import fine_tune


class ASPPruneStage(Stage):
    key = "ASPPrune"

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        cfg: ASPPrune = self.section
        masks, plan = asp_masks(model, cfg.prune_params_name)
        masked = MaskedWeights(model, masks)
        outcome = fine_tune(
            model, ctx, self.key, prepare_student=masked.attach, export=masked.export, student_graph=TorchGraph(model)
        )
        info = {
            "sparse_weights": dict(plan.eligible),  # weight -> input axis the 2:4 groups run along
            "dense_weights": dict(plan.skipped),
            "sparsity": {name: 0.5 for name in plan.eligible},
            "compressed_size_mb": round(compressed_size_mb(outcome.model), 4),
            OPS_KEY: sparsity_ops(dict.fromkeys(plan.eligible, 0.5), plan.skipped, weight_op_types(outcome.model)),
            **outcome.info,
        }
        return StageResult(outcome.model, StageInfo(details=info))
