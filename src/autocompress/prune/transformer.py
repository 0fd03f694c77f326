"""Structured pruning of transformer encoders: attention heads and FFN neurons.

Heads are found by pattern, starting from each Softmax: scores = MatMul(Q, K^T) (through scaling and
mask ops), context = MatMul(probs, V), and Q/K/V are traced up (through Transpose/Reshape/scaling) to
their constant projection weights and down to the output projection. The head count comes from the
split Reshape's target, so no hidden size is assumed. Removing head h removes columns h*d..h*d+d-1 of
Wq/Wk/Wv (and their biases), the same rows of Wo, and rewrites the Reshape targets holding num_heads
and num_heads*head_dim. FFN neurons are ordinary channel groups between two MatMuls and are pruned by
channel.prune_channels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx

from autocompress.errors import ConfigError, UnsupportedOpError
from autocompress.graph.index import GraphIndex
from autocompress.prune.channel import ChannelPruneReport, prune_channels
from autocompress.prune.constants import set_constant, set_node_input
from autocompress.prune.groups import find_channel_groups
from autocompress.prune.prepare import shape_inferred, static_shapes

logger = logging.getLogger(__name__)

_SCORE_OPS = {"Div", "Mul", "Add", "Sub", "Where", "Cast", "Identity", "Dropout"}
_HEAD_OPS = {"Transpose", "Div", "Mul", "Cast", "Identity"}


@dataclass
class Projection:
    weight: str  # constant MatMul B [in, out]
    bias: str | None  # constant added right after, [out]
    split_reshape: onnx.NodeProto  # [..., hidden] -> [..., heads, head_dim]


@dataclass
class AttentionBlock:
    name: str  # the Softmax node's name
    q: Projection
    k: Projection
    v: Projection
    out_weight: str  # [heads * head_dim, hidden_out]
    merge_reshape: onnx.NodeProto  # [..., heads, head_dim] -> [..., heads * head_dim]
    num_heads: int
    head_dim: int


@dataclass
class TransformerPruneReport:
    heads: dict[str, tuple[int, int]] = field(default_factory=dict)  # block -> (original, kept)
    ffn: ChannelPruneReport | None = None


class _Matcher:
    def __init__(self, model: onnx.ModelProto):
        self.index = GraphIndex(model)
        self.shapes = static_shapes(shape_inferred(model, None))

    def producer(self, name: str, ops: set[str]) -> onnx.NodeProto | None:
        node = self.index.producer.get(name)
        return node if node is not None and node.op_type in ops else None

    def runtime_input(self, node: onnx.NodeProto) -> str | None:
        """The one non-constant input of a unary-like node (scaling by a constant, transpose)."""
        runtime = [n for n in node.input if n and not self.index.is_constant(n)]
        return runtime[0] if len(runtime) == 1 else None

    def trace_projection(self, tensor: str) -> Projection | None:
        """Walks up from a per-head tensor to Reshape <- [Add bias] <- MatMul(x, W)."""
        reshape = None
        while reshape is None:
            node = self.index.producer.get(tensor)
            if node is None:
                return None
            if node.op_type == "Reshape":
                reshape, tensor = node, node.input[0]
            elif node.op_type in _HEAD_OPS and self.runtime_input(node):
                tensor = self.runtime_input(node)
            else:
                return None
        bias = None
        node = self.index.producer.get(tensor)
        if node is not None and node.op_type == "Add":
            constants = [n for n in node.input if self.index.is_constant(n)]
            if len(constants) != 1:
                return None
            bias, tensor = constants[0], self.runtime_input(node)
            node = self.index.producer.get(tensor)
        if node is None or node.op_type != "MatMul" or not self.index.is_constant(node.input[1]):
            return None
        return Projection(node.input[1], bias, reshape)

    def trace_output(self, context: str) -> tuple[onnx.NodeProto, str] | None:
        """Walks down from the per-head context to its merge Reshape and the output MatMul."""
        merge = None
        while True:
            readers = self.index.consumers.get(context, [])
            if len(readers) != 1:
                return None
            node = readers[0]
            if node.op_type == "Reshape" and merge is None:
                merge, context = node, node.output[0]
            elif node.op_type in ("Transpose", "Cast", "Identity"):
                context = node.output[0]
            elif node.op_type == "MatMul" and merge is not None and self.index.is_constant(node.input[1]):
                return merge, node.input[1]
            else:
                return None

    def block(self, softmax: onnx.NodeProto) -> AttentionBlock | None:
        scores = softmax.input[0]
        node = self.index.producer.get(scores)
        while node is not None and node.op_type in _SCORE_OPS:
            # a mask operand is a runtime input too; follow the one that comes from the Q.K^T chain
            producers = [self.index.producer.get(n) for n in node.input if n and not self.index.is_constant(n)]
            node = next((p for p in producers if p is not None and p.op_type in _SCORE_OPS | {"MatMul"}), None)
        if node is None or node.op_type != "MatMul":
            return None
        qk = node
        pv = [n for n in self.index.consumers.get(softmax.output[0], []) if n.op_type == "MatMul"]
        if len(pv) != 1 or pv[0].input[0] != softmax.output[0]:
            return None
        q, k, v = (self.trace_projection(t) for t in (qk.input[0], qk.input[1], pv[0].input[1]))
        out = self.trace_output(pv[0].output[0])
        if q is None or k is None or v is None or out is None:
            return None
        heads = self.head_count(q)
        if heads is None:
            return None
        hidden = self.index.constant_value(q.weight).shape[1]
        name = softmax.name or softmax.output[0]
        return AttentionBlock(name, q, k, v, out[1], out[0], heads, hidden // heads)

    def head_count(self, proj: Projection) -> int | None:
        shape = self.shapes.get(proj.split_reshape.output[0])
        hidden = self.index.constant_value(proj.weight).shape[1]
        if shape is not None and len(shape) >= 2 and shape[-2] and shape[-1] and shape[-2] * shape[-1] == hidden:
            return shape[-2]
        entries = target_entries(self.index, proj.split_reshape)
        values = [self.entry_value(e) for e in entries[-2:]] if entries else []
        if len(values) == 2 and values[0] and values[0] > 0:
            return int(values[0])
        if len(values) == 2 and values[1] and values[1] > 0:
            return hidden // int(values[1])
        return None

    def entry_value(self, entry) -> int | None:
        if entry is None:
            return None
        node, idx, pos = entry
        return int(self.index.constant_value(node.input[idx]).reshape(-1)[pos])


def target_entries(index: GraphIndex, reshape: onnx.NodeProto) -> list[tuple[onnx.NodeProto, int, int] | None] | None:
    """For each entry of a Reshape target: (reading node, input index, position in that constant), or None
    for an entry computed at run time. None overall when the target's structure is not understood."""
    target = reshape.input[1]
    if index.is_constant(target):
        return [(reshape, 1, i) for i in range(index.constant_value(target).size)]
    concat = index.producer.get(target)
    if concat is None or concat.op_type != "Concat":
        return None
    entries: list = []
    for i, name in enumerate(concat.input):
        if index.is_constant(name):
            entries += [(concat, i, j) for j in range(index.constant_value(name).size)]
            continue
        node = index.producer.get(name)
        if node is not None and node.op_type == "Unsqueeze" and index.is_constant(node.input[0]):
            entries.append((node, 0, 0))
        else:
            entries.append(None)  # one dynamic entry, e.g. Unsqueeze(Gather(Shape(x)))
    return entries


def find_attention_blocks(model: onnx.ModelProto) -> list[AttentionBlock]:
    matcher = _Matcher(model)
    blocks = []
    for node in model.graph.node:
        if node.op_type == "Softmax":
            block = matcher.block(node)
            if block is None:
                logger.info("Softmax %s is not part of a recognised attention pattern", node.name)
            else:
                blocks.append(block)
    return blocks


def head_importance(model: onnx.ModelProto, block: AttentionBlock) -> np.ndarray:
    """Data-free importance per head: L1 of its Q/K/V columns and its output-projection rows."""
    index = GraphIndex(model)
    d = block.head_dim
    score = np.zeros(block.num_heads)
    for proj in (block.q, block.k, block.v):
        w = np.abs(index.constant_value(proj.weight))
        score += w.reshape(w.shape[0], block.num_heads, d).sum(axis=(0, 2))
    wo = np.abs(index.constant_value(block.out_weight))
    score += wo.reshape(block.num_heads, d, -1).sum(axis=(1, 2))
    return score


def _rewrite_entry(index: GraphIndex, entry, old: int, new: int) -> GraphIndex:
    if entry is None:
        raise UnsupportedOpError("a Reshape target entry holding the head count is computed at run time")
    node, idx, pos = entry
    value = index.constant_value(node.input[idx]).copy()
    flat = value.reshape(-1)
    if flat[pos] == old:
        flat[pos] = new
        return set_node_input(index, node, idx, value)
    if flat[pos] not in (-1, 0):
        raise UnsupportedOpError(f"Reshape target entry {flat[pos]} is not the expected {old}")
    return index


def prune_heads(model: onnx.ModelProto, keep: dict[str, list[int]]) -> onnx.ModelProto:
    """A copy of `model` keeping only the listed heads (by index) of each named attention block."""
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    blocks = {b.name: b for b in find_attention_blocks(pruned)}
    unknown = set(keep) - set(blocks)
    if unknown:
        raise ConfigError(f"unknown attention blocks {sorted(unknown)}; found: {sorted(blocks)}")
    index = GraphIndex(pruned)
    for name, heads in keep.items():
        block = blocks[name]
        heads = sorted(set(heads))
        if not heads or heads[0] < 0 or heads[-1] >= block.num_heads:
            raise ConfigError(f"heads to keep in {name} must be a non-empty subset of 0..{block.num_heads - 1}")
        d = block.head_dim
        columns = np.concatenate([np.arange(h * d, (h + 1) * d) for h in heads])
        for proj in (block.q, block.k, block.v):
            set_constant(index, proj.weight, index.constant_value(proj.weight)[:, columns])
            if proj.bias is not None:
                set_constant(index, proj.bias, index.constant_value(proj.bias)[..., columns])
            index = _rewrite_entry(index, target_entries(index, proj.split_reshape)[-2], block.num_heads, len(heads))
        set_constant(index, block.out_weight, index.constant_value(block.out_weight)[columns])
        merge_entries = target_entries(index, block.merge_reshape)
        index = _rewrite_entry(index, merge_entries[-1], block.num_heads * d, len(heads) * d)
    del pruned.graph.value_info[:]
    onnx.checker.check_model(pruned)
    return pruned


def ffn_weights(model: onnx.ModelProto) -> list[str]:
    """First-layer weights of FFN blocks: prunable channel groups that both start and end in MatMul/Gemm."""
    analysis = find_channel_groups(model)
    index = GraphIndex(analysis.model)
    names = []
    for group in analysis.groups:
        layer_ops = {
            n.op_type for m in group.members if m.role in ("producer", "consumer") for n in index.consumers[m.tensor]
        }
        if group.prunable and layer_ops <= {"MatMul", "Gemm"} and any(m.role == "consumer" for m in group.members):
            names += group.weights
    return names


def prune_transformer(
    model: onnx.ModelProto,
    pruned_ratio: float,
    head_scores: dict[str, np.ndarray] | None = None,
    round_to: int = 1,
) -> tuple[onnx.ModelProto, TransformerPruneReport]:
    """Removes `pruned_ratio` of the heads of every attention block (lowest head_scores, default
    head_importance; at least one head stays) and of the neurons of every FFN block."""
    if not 0.0 <= pruned_ratio < 1.0:
        raise ConfigError(f"TransformerPrune.pruned_ratio={pruned_ratio} must be in [0, 1)")
    report = TransformerPruneReport()
    keep = {}
    for block in find_attention_blocks(model):
        scores = (head_scores or {}).get(block.name)
        scores = head_importance(model, block) if scores is None else np.asarray(scores)
        if scores.shape != (block.num_heads,):
            raise ConfigError(f"head_scores[{block.name!r}] needs {block.num_heads} values, got {scores.shape}")
        kept = max(1, int(round(block.num_heads * (1.0 - pruned_ratio))))
        keep[block.name] = np.sort(np.argsort(-scores, kind="stable")[:kept]).tolist()
        report.heads[block.name] = (block.num_heads, kept)
    pruned = prune_heads(model, keep) if keep else model
    ffn = ffn_weights(pruned)
    if ffn:
        pruned, report.ffn = prune_channels(pruned, pruned_ratio, prune_params_name=ffn, round_to=round_to)
    return pruned, report
