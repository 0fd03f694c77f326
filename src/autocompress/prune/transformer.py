"""Structured pruning of transformer encoders: attention heads and FFN neurons, never the hidden width.

Heads are found by pattern, starting from each Softmax: scores = MatMul(Q, K^T) (through scaling and mask ops),
context = MatMul(probs, V). Q, K and V are traced up through data-movement ops (Reshape, Transpose, Squeeze,
Gather, Split, scaling by a scalar) to their constant projection, which may be one projection per operand or one
packed projection ([hidden, 3 * hidden], as torch's nn.MultiheadAttention exports it); the context is traced down
the same way to the output projection. Which projection column reaches which head is not guessed from the
exporter's layout: an array of column numbers is moved through the traced ops exactly as the graph moves the
activations, so the head count, each head's columns and the Reshape axes that carry heads are read off the result.
Removing a head removes its columns of the Q/K/V weights and biases, its rows of the output projection, and
scales the head-carrying entry of every Reshape target (and Split size) on those paths. FFN neurons are channel
groups produced by one MatMul/Gemm and read only by MatMul/Gemm, pruned by channel.prune_channels; the hidden
width (embedding, LayerNorm parameters, residual stream) is left as it is, as in PaddleSlim's TransformerPrune.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx

from autocompress.errors import ConfigError, UnsupportedOpError
from autocompress.graph.index import GraphIndex, attribute
from autocompress.graph.op_facts import weight_axes
from autocompress.prune.channel import ChannelPruneReport, prune_channels
from autocompress.prune.constants import set_constant, set_node_input
from autocompress.prune.groups import ChannelGroup, find_channel_groups
from autocompress.prune.prepare import shape_inferred, static_shapes

logger = logging.getLogger(__name__)

_SCORE_OPS = {"Div", "Mul", "Add", "Sub", "Where", "Cast", "Identity", "Dropout"}
#: Ops that only move, select or scale activations between a projection and the attention MatMuls.
_VIEW_OPS = {"Reshape", "Transpose", "Unsqueeze", "Squeeze", "Identity", "Cast", "Dropout", "Gather", "Split"}
_SCALE_OPS = {"Mul", "Div"}
_PROJECTION_OPS = ("MatMul", "Gemm")


class _NoMatch(Exception):
    """The ops around a Softmax are not an attention block this module can prune."""


@dataclass
class Projection:
    weight: str  # constant of a MatMul ([in, out]) or Gemm ([in, out] or [out, in] with transB)
    bias: str | None  # constant [out] added by the Gemm or right after the MatMul
    axis: int  # the weight's output-column axis
    offset: int  # first column of this operand's heads (0, or hidden / 2 * hidden in a packed projection)
    width: int  # heads * head_dim


@dataclass
class Step:
    """One op on a path between a projection and the attention, and the output the path continues with."""

    node: onnx.NodeProto
    output: str


@dataclass
class AttentionBlock:
    name: str  # the Softmax node's name
    q: Projection
    k: Projection
    v: Projection
    out_weight: str  # rows (out_axis) are heads * head_dim
    out_axis: int
    num_heads: int
    head_dim: int
    #: what holds the head count: (node, input index, position) in a Reshape target, or (Split node, None, None)
    rewrites: list[tuple] = field(default_factory=list)

    def head_columns(self, heads: list[int], offset: int = 0) -> np.ndarray:
        d = self.head_dim
        return np.asarray([offset + h * d + i for h in heads for i in range(d)], dtype=np.int64)


@dataclass
class TransformerPruneReport:
    heads: dict[str, tuple[int, int]] = field(default_factory=dict)  # block -> (original, kept)
    ffn: ChannelPruneReport | None = None


def _analysis_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Static shapes with every dynamic input dim fixed (to 2, 3, 5, ...): only the data movement is read."""
    sizes = iter([2, 3, 5, 7, 11, 13, 17, 19, 23, 29] * 8)
    fixed = {}
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        fixed[inp.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else next(sizes) for d in dims]
    return static_shapes(shape_inferred(model, fixed))


class _Matcher:
    def __init__(self, model: onnx.ModelProto):
        self.index = GraphIndex(model)
        self.shapes = _analysis_shapes(model)
        self._shape_only: dict[str, bool] = {}

    # --- ops that read shapes only -------------------------------------------------------------
    def shape_derived(self, name: str, depth: int = 0) -> bool:
        """True for constants and values computed from tensor shapes alone (torch's sqrt(head_dim) scaling),
        looking at most 16 ops up."""
        if name not in self._shape_only:
            node = self.index.producer.get(name)
            self._shape_only[name] = self.index.is_constant(name) or (
                node is not None
                and depth < 16
                and (
                    node.op_type in ("Shape", "Size") or all(self.shape_derived(n, depth + 1) for n in node.input if n)
                )
            )
        return self._shape_only[name]

    def data_input(self, node: onnx.NodeProto) -> str | None:
        """The activation a view or scaling op moves; None for any other op."""
        if node.op_type in _VIEW_OPS:
            return node.input[0]
        if node.op_type in _SCALE_OPS:
            scalars = [n for n in node.input if np.prod(self.shapes.get(n) or [2]) == 1 and self.shape_derived(n)]
            data = [n for n in node.input if n not in scalars]
            if len(scalars) == 1 and len(data) == 1 and (node.op_type == "Mul" or node.input[0] == data[0]):
                return data[0]
        return None

    # --- paths ------------------------------------------------------------------------------------
    def projection_of(self, tensor: str) -> tuple[onnx.NodeProto, str | None] | None:
        """(MatMul/Gemm with a constant weight, its bias) when `tensor` is that projection's output."""
        node = self.index.producer.get(tensor)
        if node is None:
            return None
        if node.op_type == "Add":
            bias = [n for n in node.input if self.index.is_constant(n)]
            rest = [n for n in node.input if n not in bias]
            found = self.projection_of(rest[0]) if len(bias) == 1 and len(rest) == 1 else None
            if found is None or found[1] is not None or self.index.constant_value(bias[0]).ndim != 1:
                return None
            return found[0], bias[0]
        if node.op_type in _PROJECTION_OPS and self.index.is_constant(node.input[1]):
            if node.op_type == "Gemm" and attribute(node, "transA", 0):
                return None
            bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
            return node, bias
        return None

    def trace_up(self, tensor: str) -> tuple[str, onnx.NodeProto, str | None, list[Step]]:
        """Walks from an attention operand up to its projection: (projection output, node, bias, steps down)."""
        steps: list[Step] = []
        while (found := self.projection_of(tensor)) is None:
            node = self.index.producer.get(tensor)
            data = self.data_input(node) if node is not None else None
            if data is None:
                raise _NoMatch(f"{tensor!r} is not moved from a constant projection")
            steps.append(Step(node, tensor))
            tensor = data
        return tensor, found[0], found[1], steps[::-1]

    def trace_down(self, context: str) -> tuple[onnx.NodeProto, list[Step]]:
        """Walks from the attention context down to the output projection that reads it."""
        steps: list[Step] = []
        while True:
            readers = self.index.consumers.get(context, [])
            if len(readers) != 1:
                raise _NoMatch(f"context {context!r} is not read by one chain of ops")
            node = readers[0]
            if node.op_type in _PROJECTION_OPS and node.input[0] == context and self.projection_of(node.output[0]):
                return node, steps
            if self.data_input(node) != context or len(node.output) != 1:
                raise _NoMatch(f"{node.op_type} between the context and the output projection")
            steps.append(Step(node, node.output[0]))
            context = node.output[0]

    # --- moving column numbers --------------------------------------------------------------------
    def static_shape(self, name: str) -> list[int]:
        shape = self.shapes.get(name)
        if shape is None or None in shape:
            raise _NoMatch(f"shape of {name!r} is unknown")
        return shape

    def move(self, values: np.ndarray, step: Step) -> np.ndarray:
        """What `step` makes of an activation whose elements are `values` (pure data movement)."""
        node, op = step.node, step.node.op_type
        if op in ("Reshape", "Unsqueeze", "Squeeze"):
            return values.reshape(self.static_shape(step.output))
        if op == "Transpose":
            return np.transpose(values, attribute(node, "perm"))
        if op == "Gather":
            indices = self.index.constant_value(node.input[1])
            if indices is None:
                raise _NoMatch("Gather indices are not constants")
            return np.take(values, indices, axis=attribute(node, "axis", 0))
        if op == "Split":
            return self.split(values, node)[list(node.output).index(step.output)]
        return values  # Identity, Cast, Dropout, scaling

    def split(self, values: np.ndarray, node: onnx.NodeProto) -> list[np.ndarray]:
        axis = attribute(node, "axis", 0)
        sizes = attribute(node, "split")
        if sizes is None and len(node.input) > 1 and node.input[1]:
            sizes = self.index.constant_value(node.input[1])
        if sizes is None:
            return np.array_split(values, len(node.output), axis=axis)
        return np.split(values, np.cumsum(sizes)[:-1], axis=axis)

    def walk(self, values: np.ndarray, steps: list[Step]) -> list[np.ndarray]:
        """The values before each step, then the values at the end of the path."""
        walked = [values]
        for step in steps:
            walked.append(self.move(walked[-1], step))
        return walked

    def head_rewrites(self, steps: list[Step], walked: list[np.ndarray], heads_of) -> list[tuple]:
        """Entries that hold the head count on a walked path: (node, input index, position) of a Reshape target
        constant, or (Split node, None, None). heads_of maps moved values to their head."""
        found: list[tuple] = []
        for step, before, after in zip(steps, walked, walked[1:]):
            op = step.node.op_type
            axis = attribute(step.node, "axis", 0) % before.ndim if op in ("Gather", "Split") else None
            if axis is not None and axis in _head_axes(heads_of(before)):
                if op == "Gather":
                    raise _NoMatch("Gather selects single heads")
                found.append((step.node, None, None))
            elif op == "Reshape":
                axes = _head_axes(heads_of(after))
                if len(axes) > 1:
                    raise _NoMatch("a Reshape spreads heads over several axes")
                entries = self.target_entries(step.node) if axes else []
                if axes and (entries is None or len(entries) <= axes[0] or entries[axes[0]] is None):
                    raise _NoMatch(f"the head count in Reshape {step.node.name!r} is computed at run time")
                found += [entries[axes[0]]] if axes else []
        return found

    def target_entries(self, reshape: onnx.NodeProto) -> list[tuple[onnx.NodeProto, int, int] | None] | None:
        """For each entry of a Reshape target: (node, input index, position in that constant), or None for an
        entry computed at run time; None overall when the target's length is unknown."""
        if self.index.is_constant(reshape.input[1]):
            return [(reshape, 1, i) for i in range(self.index.constant_value(reshape.input[1]).size)]
        node = self.index.producer.get(reshape.input[1])
        return self.concat_entries(node) if node is not None and node.op_type == "Concat" else None

    def concat_entries(self, concat: onnx.NodeProto) -> list | None:
        parts = [self.concat_part(concat, i) for i in range(len(concat.input))]
        return None if any(p is None for p in parts) else [e for p in parts for e in p]

    def concat_part(self, concat: onnx.NodeProto, i: int) -> list | None:
        """Entries of one Concat input. Unsqueeze(Mul(x, constant)) (batch * heads in a dynamic-batch export)
        points at the constant."""
        name = concat.input[i]
        if self.index.is_constant(name):
            return [(concat, i, j) for j in range(self.index.constant_value(name).size)]
        node = self.index.producer.get(name)
        if node is not None and node.op_type == "Concat":
            return self.concat_entries(node)
        inner = self.index.producer.get(node.input[0]) if node is not None and node.op_type == "Unsqueeze" else None
        if inner is not None and inner.op_type == "Mul" and any(self.index.is_constant(n) for n in inner.input):
            return [(inner, next(j for j, n in enumerate(inner.input) if self.index.is_constant(n)), 0)]
        shape = self.shapes.get(name)
        return None if shape is None or len(shape) != 1 or shape[0] is None else [None] * shape[0]

    # --- one block --------------------------------------------------------------------------------
    def operands(self, softmax: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
        """The Q.K^T and probs.V MatMuls around a Softmax."""
        node = self.index.producer.get(softmax.input[0])
        while node is not None and node.op_type in _SCORE_OPS:
            # a mask operand is a runtime input too; follow the one that comes from the Q.K^T chain
            producers = [self.index.producer.get(n) for n in node.input if n and not self.index.is_constant(n)]
            node = next((p for p in producers if p is not None and p.op_type in _SCORE_OPS | {"MatMul"}), None)
        pv = [n for n in self.index.consumers.get(softmax.output[0], []) if n.op_type == "MatMul"]
        if node is None or node.op_type != "MatMul" or len(pv) != 1 or pv[0].input[0] != softmax.output[0]:
            raise _NoMatch("no MatMul(Q, K^T) -> Softmax -> MatMul(probs, V)")
        return node, pv[0]

    def block(self, softmax: onnx.NodeProto) -> AttentionBlock:
        qk, pv = self.operands(softmax)
        head_dim = self.static_shape(qk.input[0])[-1]
        found = [
            self.operand_heads(self.trace_up(t), axis, head_dim)
            for t, axis in ((qk.input[0], -1), (qk.input[1], -2), (pv.input[1], -1))
        ]
        (q, q_heads, _), (k, k_heads, _), (v, v_heads, _) = found
        if not (np.array_equal(q_heads, k_heads) and np.array_equal(q_heads, v_heads)):
            raise _NoMatch("Q, K and V do not pair the same heads")
        num_heads = int(q_heads.max()) + 1
        out, out_steps = self.trace_down(pv.output[0])
        context = q_heads[..., None, None] * head_dim + np.arange(head_dim)  # [batch..., 1, head_dim]
        context = np.broadcast_to(context, self.static_shape(pv.output[0]))
        walked = self.walk(context, out_steps)
        if not np.array_equal(walked[-1], np.broadcast_to(np.arange(walked[-1].shape[-1]), walked[-1].shape)):
            raise _NoMatch("the output projection reads the heads in another order")
        w = self.index.constant_value(out.input[1])
        out_axis = weight_axes(out, w.ndim).input
        if w.shape[out_axis] != num_heads * head_dim or any(p.width != num_heads * head_dim for p in (q, k, v)):
            raise _NoMatch("the projections do not hold every head")
        rewrites = [e for _, _, found_entries in found for e in found_entries]
        rewrites += self.head_rewrites(out_steps, walked, lambda values: values // head_dim)
        name = softmax.name or softmax.output[0]
        unique = list({(id(e[0]), e[1], e[2]): e for e in rewrites}.values())
        return AttentionBlock(name, q, k, v, out.input[1], out_axis, num_heads, head_dim, unique)

    def operand_heads(self, traced, d_axis: int, head_dim: int) -> tuple[Projection, np.ndarray, list]:
        """The projection columns an attention operand reads, its head per batch position, and the entries to
        rewrite on its path. d_axis is the operand's head_dim axis (-2 for K^T)."""
        start, node, bias, steps = traced
        w = self.index.constant_value(node.input[1])
        axis = weight_axes(node, w.ndim).output
        walked = self.walk(np.broadcast_to(np.arange(w.shape[axis]), self.static_shape(start)), steps)
        rows = np.moveaxis(walked[-1], d_axis, -1)
        offset, width = int(rows.min()), int(rows.max()) + 1 - int(rows.min())
        if rows.shape[-1] != head_dim or offset % head_dim or width % head_dim:
            raise _NoMatch("an operand's head_dim axis is not one head's columns")
        if not np.array_equal(rows, rows[..., :1] + np.arange(head_dim)):
            raise _NoMatch("an operand mixes the columns of several heads")
        heads = (rows[..., 0] - offset) // head_dim
        if not (heads == heads[..., :1]).all():
            raise _NoMatch("the head changes along the sequence")
        entries = self.head_rewrites(steps, walked, lambda values: (values - offset) % width // head_dim)
        return Projection(node.input[1], bias, axis, offset, width), heads[..., 0], entries


def _head_axes(heads: np.ndarray) -> list[int]:
    """Axes along which the head (a value of `heads`) changes."""
    return [ax for ax in range(heads.ndim) if heads.shape[ax] > 1 and (np.diff(heads, axis=ax) != 0).any()]


def find_attention_blocks(model: onnx.ModelProto) -> list[AttentionBlock]:
    matcher = _Matcher(model)
    blocks = []
    for node in model.graph.node:
        if node.op_type == "Softmax":
            try:
                blocks.append(matcher.block(node))
            except _NoMatch as exc:
                logger.info("Softmax %s is not part of a recognised attention pattern: %s", node.name, exc)
    return blocks


def head_importance(model: onnx.ModelProto, block: AttentionBlock) -> np.ndarray:
    """Data-free importance per head: L1 of its Q/K/V columns and its output-projection rows."""
    index = GraphIndex(model)
    score = np.zeros(block.num_heads)
    for h in range(block.num_heads):
        for proj in (block.q, block.k, block.v):
            score[h] += np.abs(
                np.take(index.constant_value(proj.weight), block.head_columns([h], proj.offset), axis=proj.axis)
            ).sum()
        score[h] += np.abs(
            np.take(index.constant_value(block.out_weight), block.head_columns([h]), axis=block.out_axis)
        ).sum()
    return score


def _rewrite(index: GraphIndex, entry: tuple, heads: int, kept: int) -> GraphIndex:
    """Scales a head-carrying Reshape target entry, or a Split's sizes, by kept / heads."""
    node, idx, pos = entry
    if node.op_type == "Split":
        sizes = attribute(node, "split")
        if sizes is not None:
            del node.attribute[[a.name for a in node.attribute].index("split")]
            node.attribute.append(onnx.helper.make_attribute("split", [s // heads * kept for s in sizes]))
        elif len(node.input) > 1 and node.input[1]:
            index = set_node_input(index, node, 1, index.constant_value(node.input[1]) // heads * kept)
        return index
    value = index.constant_value(node.input[idx]).copy()
    flat = value.reshape(-1)
    if flat[pos] in (-1, 0):
        return index
    if flat[pos] % heads:
        raise UnsupportedOpError(
            f"Reshape target entry {flat[pos]} of {node.name!r} is not a multiple of the {heads} heads"
        )
    flat[pos] = flat[pos] // heads * kept
    return set_node_input(index, node, idx, value)


def _drop_columns(index: GraphIndex, drops: dict[tuple[str, int], set[int]]) -> None:
    for (name, axis), columns in drops.items():
        set_constant(index, name, np.delete(index.constant_value(name), sorted(columns), axis=axis))


def prune_heads(model: onnx.ModelProto, keep: dict[str, list[int]]) -> onnx.ModelProto:
    """A copy of `model` keeping only the listed heads (by index) of each named attention block."""
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    blocks = {b.name: b for b in find_attention_blocks(pruned)}
    unknown = set(keep) - set(blocks)
    if unknown:
        raise ConfigError(f"unknown attention blocks {sorted(unknown)}; found: {sorted(blocks)}")
    index = GraphIndex(pruned)
    drops: dict[tuple[str, int], set[int]] = {}
    for name, heads in keep.items():
        block, heads = blocks[name], sorted(set(heads))
        if not heads or heads[0] < 0 or heads[-1] >= block.num_heads:
            raise ConfigError(f"heads to keep in {name} must be a non-empty subset of 0..{block.num_heads - 1}")
        gone = [h for h in range(block.num_heads) if h not in heads]
        for proj in (block.q, block.k, block.v):
            drops.setdefault((proj.weight, proj.axis), set()).update(block.head_columns(gone, proj.offset).tolist())
            if proj.bias is not None:
                drops.setdefault((proj.bias, 0), set()).update(block.head_columns(gone, proj.offset).tolist())
        drops.setdefault((block.out_weight, block.out_axis), set()).update(block.head_columns(gone).tolist())
        for entry in block.rewrites:
            index = _rewrite(index, entry, block.num_heads, len(heads))
    _drop_columns(index, drops)
    del pruned.graph.value_info[:]
    onnx.checker.check_model(pruned)
    return pruned


def _is_ffn(group: ChannelGroup, index: GraphIndex) -> bool:
    """An FFN's inner width: one MatMul/Gemm makes it and only MatMul/Gemm read it. The hidden width (produced by
    the embedding and every block's output projections, normalised by LayerNorm) never qualifies."""
    layers = {m.tensor for m in group.members if m.role in ("producer", "consumer")}
    readers = {n.op_type for tensor in layers for n in index.consumers[tensor]}
    roles = {m.role for m in group.members}
    return (
        group.prunable
        and len(group.weights) == 1
        and readers <= set(_PROJECTION_OPS)
        and "consumer" in roles
        and roles <= {"producer", "producer_bias", "consumer", "activation", "channel_constant"}
    )


def ffn_weights(model: onnx.ModelProto) -> list[str]:
    """First-layer weights of FFN blocks."""
    analysis = find_channel_groups(model)
    index = GraphIndex(analysis.model)
    return [w for group in analysis.groups if _is_ffn(group, index) for w in group.weights]


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
