"""TransformerPrune: remove the least important attention heads and FFN neurons, then fine-tune with distillation.

Head importance is measured under the distillation objective without labels: the mean squared change of the
model outputs when that head alone is silenced (its slice of the context zeroed before the output projection),
on a few training batches. FFN neurons are ranked by the L1 norm of their weights.
"""

from __future__ import annotations

import logging
from itertools import islice

import numpy as np
import onnx
import torch
from torch import nn

from autocompress.config.strategies import TransformerPrune
from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.transformer import AttentionBlock, find_attention_blocks, prune_transformer
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.strategy.base import CompressionContext, Stage, StageResult
from autocompress.strategy.records import StageInfo
from autocompress.strategy.training import fine_tune

log = logging.getLogger(__name__)

#: Training batches used to score heads.
IMPORTANCE_BATCHES = 4


class HeadMask(nn.Module):
    """Scales each head's slice of a [..., heads * head_dim] context tensor."""

    def __init__(self, num_heads: int, head_dim: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.register_buffer("scale", torch.ones(num_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        heads = x.reshape(*shape[:-1], self.num_heads, self.head_dim) * self.scale[:, None].to(x.dtype)
        return heads.reshape(shape)


def _out_projection(index: GraphIndex, block: AttentionBlock) -> onnx.NodeProto:
    for node in index.consumers.get(block.out_weight, []):
        if node.op_type in ("MatMul", "Gemm") and node.input[1] == block.out_weight:
            return node
    raise ConfigError(f"attention block {block.name!r}: no MatMul reads its output projection {block.out_weight!r}")


def head_ablation_importance(
    model: onnx.ModelProto, blocks: list[AttentionBlock], feeds: list[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    graph = TorchGraph(model).eval()
    index = GraphIndex(model)
    masks = {}
    for block in blocks:
        masks[block.name] = HeadMask(block.num_heads, block.head_dim)
        graph.set_input_transform(_out_projection(index, block).name, 0, masks[block.name])
    batches = [{k: torch.from_numpy(v) for k, v in feed.items()} for feed in feeds]
    scores: dict[str, np.ndarray] = {}
    with torch.no_grad():
        reference = [graph(feed) for feed in batches]

        def change() -> float:
            total = 0.0
            for feed, ref in zip(batches, reference):
                out = graph(feed)
                total += sum(float(torch.mean((out[k] - ref[k]) ** 2)) for k in ref if ref[k].is_floating_point())
            return total / len(batches)

        for block in blocks:
            mask = masks[block.name]
            values = np.zeros(block.num_heads)
            for h in range(block.num_heads):
                mask.scale[h] = 0.0
                values[h] = change()
                mask.scale[h] = 1.0
            scores[block.name] = values
    return scores


class TransformerPruneStage(Stage):
    key = "TransformerPrune"

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        cfg: TransformerPrune = self.section
        blocks = find_attention_blocks(model)
        if not blocks:
            raise ConfigError(
                "TransformerPrune found no multi-head attention block (Q/K/V projections -> Softmax -> output "
                "projection) in this model; use ChannelPrune for CNNs"
            )
        if ctx.train_batches is None:
            raise ConfigError("TransformerPrune needs train_dataloader (head importance and fine-tuning)")
        feeds = list(islice(iter(ctx.train_batches.feeds()), IMPORTANCE_BATCHES))
        scores = head_ablation_importance(model, blocks, feeds)
        pruned, report = prune_transformer(model, cfg.pruned_ratio, head_scores=scores)
        outcome = fine_tune(pruned, ctx, self.key)
        info = {
            "heads": {name: {"original": o, "kept": k} for name, (o, k) in report.heads.items()},
            "head_importance": {name: [round(float(v), 8) for v in s] for name, s in scores.items()},
            "ffn_params_before": report.ffn.params_before if report.ffn else None,
            "ffn_params_after": report.ffn.params_after if report.ffn else None,
            **outcome.info,
        }
        return StageResult(outcome.model, StageInfo(details=info))
