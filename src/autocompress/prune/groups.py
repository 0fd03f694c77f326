"""Channel dependency groups of an ONNX graph.

Removing output channel c of a convolution only keeps the graph valid if every tensor axis that carries
that channel loses the same index: the bias, the following BatchNorm, channel-wise constants, depthwise
convolutions, the next layer's input axis, and every branch joined to it by a residual Add or Mul.
This module walks the graph once in topological order and tracks, for each activation tensor, which
group channels lie along its channel axis (a `ChannelLayout`). Ops it does not understand mark the
groups they touch unprunable with a reason instead of failing, so pruning stays safe on any graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from autocompress.graph.index import GraphIndex, attribute
from autocompress.graph.naming import name_nodes
from autocompress.graph.op_facts import LAYER_OP_TYPES, weight_axes
from autocompress.prune.prepare import shape_inferred, static_shapes

logger = logging.getLogger(__name__)

# Ops whose output has the input's shape along every axis and that mix no channels.
_PASS_THROUGH = {
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Clip",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Gelu",
    "Erf",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Identity",
    "Dropout",
    "Cast",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "Mish",
    "ThresholdedRelu",
    "Softmax",
    "LogSoftmax",
    "LRN",
    "Resize",
    "Upsample",
    "Pad",
}
# Pass-through ops that normalise across one axis (the channel axis for LRN): removing a channel there
# changes every other channel's value, so a group reaching that axis is not prunable.
_ACROSS_AXIS = {"Softmax": None, "LogSoftmax": None, "LRN": 1}
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "PRelu", "Where"}
_REDUCE = {
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
}
# Reductions to which a zero channel contributes nothing: removing a channel equals silencing it, as for the
# next layer's input axis. Mean, max, min, product and log-sum-exp over the channel axis change when a channel
# goes away even if it is zero, so they make the group unprunable.
_SUM_REDUCE = {"ReduceSum", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum"}
# Ops that read a channel tensor only for its shape; their outputs carry no channels.
_SHAPE_ONLY = {"Shape", "Size"}


@dataclass(frozen=True)
class Segment:
    """A run of channels on a tensor axis: group channels [start, start+length) of `group` lie at
    axis indices offset + i*expand ... offset + i*expand + expand - 1 (expand > 1 after a flatten).
    group None means channels that no group owns; they are always kept."""

    group: int | None
    start: int
    length: int
    offset: int
    expand: int = 1


def removed_indices(segments: tuple[Segment, ...] | list[Segment], keep: dict[int, np.ndarray]) -> np.ndarray:
    """Axis indices that disappear when the groups in `keep` keep only their listed channels."""
    removed = []
    for seg in segments:
        if seg.group not in keep:
            continue
        channels = np.arange(seg.start, seg.start + seg.length)
        dropped = channels[~np.isin(channels, keep[seg.group])] - seg.start
        for c in dropped:
            base = seg.offset + c * seg.expand
            removed.extend(range(base, base + seg.expand))
    return np.asarray(sorted(removed), dtype=np.int64)


@dataclass(frozen=True)
class ChannelLayout:
    """Which channels lie along `axis` of a tensor of rank `rank`."""

    axis: int
    rank: int
    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(s.length * s.expand for s in self.segments)


@dataclass(frozen=True)
class GroupMember:
    """One tensor axis that follows a group. role is one of: producer (weight output axis),
    producer_bias, consumer (next layer's input axis), norm_scale / norm_bias / norm_stat (gamma, beta,
    running mean and variance of normalisations), depthwise, channel_constant, activation."""

    tensor: str
    axis: int
    role: str
    node: str
    segment: Segment


@dataclass
class ChannelGroup:
    id: int
    channels: int
    members: list[GroupMember] = field(default_factory=list)
    prunable: bool = True
    reason: str | None = None

    @property
    def weights(self) -> list[str]:
        """Names of the weights whose output channels define the group."""
        return sorted({m.tensor for m in self.members if m.role == "producer"})


@dataclass
class NodeRewrite:
    """A node whose attributes or constant inputs depend on channel counts (Split sizes, Slice bounds,
    Reshape targets, Resize sizes, depthwise group)."""

    node: onnx.NodeProto
    kind: str
    data: dict = field(default_factory=dict)


@dataclass
class ChannelAnalysis:
    model: onnx.ModelProto  # the analysed, shape-inferred copy; rewrites refer to its nodes
    groups: list[ChannelGroup]
    layouts: dict[str, ChannelLayout]
    constant_members: list[GroupMember]
    rewrites: list[NodeRewrite]

    def group(self, gid: int) -> ChannelGroup:
        return self._by_id[gid]

    def __post_init__(self) -> None:
        self._by_id = {g.id: g for g in self.groups}


def node_label(node: onnx.NodeProto) -> str:
    """The name members and reasons give a node of ChannelAnalysis.model, whose nodes all have their stable name."""
    return node.name


class _Tracker:
    """Walks the graph and builds groups with a union-find over group ids."""

    def __init__(self, model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None):
        self.model = name_nodes(shape_inferred(model, input_shapes))
        self.index = GraphIndex(self.model)
        self.shapes = static_shapes(self.model)
        self.layouts: dict[str, ChannelLayout] = {}
        self.parent: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.reasons: dict[int, list[str]] = {}
        self.members: list[GroupMember] = []
        self.rewrites: list[NodeRewrite] = []

    # --- union-find -------------------------------------------------------------------------
    def new_group(self, channels: int) -> int:
        gid = len(self.parent)
        self.parent[gid] = gid
        self.sizes[gid] = channels
        self.reasons[gid] = []
        return gid

    def find(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.reasons[ra] += self.reasons.pop(rb)

    def block(self, layout: ChannelLayout | None, reason: str) -> None:
        if layout is None:
            return
        for seg in layout.segments:
            if seg.group is not None:
                root = self.find(seg.group)
                if reason not in self.reasons[root]:
                    self.reasons[root].append(reason)

    # --- helpers ------------------------------------------------------------------------------
    def shape(self, name: str) -> list[int | None] | None:
        return self.shapes.get(name)

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def member(self, tensor: str, axis: int, role: str, node: onnx.NodeProto, layout: ChannelLayout) -> None:
        for seg in layout.segments:
            if seg.group is not None:
                self.members.append(GroupMember(tensor, axis, role, node_label(node), seg))

    def activation(self, tensor: str, layout: ChannelLayout | None, node: onnx.NodeProto) -> None:
        if layout is None:
            return
        self.layouts[tensor] = layout
        self.member(tensor, layout.axis, "activation", node, layout)

    def fresh_layout(self, gid: int, axis: int, rank: int) -> ChannelLayout:
        return ChannelLayout(axis, rank, (Segment(gid, 0, self.sizes[gid], 0),))

    # --- walk ---------------------------------------------------------------------------------
    def run(self) -> ChannelAnalysis:
        for node in self.model.graph.node:
            inputs = [self.layouts.get(n) if n else None for n in node.input]
            if all(lay is None for lay in inputs):
                self.visit_source(node)
                continue
            if node.domain not in ("", "ai.onnx"):
                self.unsupported(node, inputs, f"custom-domain op {node.domain}.{node.op_type}")
                continue
            if node.op_type in LAYER_OP_TYPES and any(lay is not None for lay in inputs[1:]):
                self.unsupported(node, inputs, f"{node.op_type} takes channel tensors as weights")
                continue
            handler = getattr(self, f"visit_{node.op_type}", None)
            if handler is None and node.op_type in _PASS_THROUGH:
                handler = self.visit_pass_through
            elif handler is None and node.op_type in _ELEMENTWISE:
                handler = self.visit_elementwise
            elif handler is None and node.op_type in _REDUCE:
                handler = self.visit_reduce
            elif handler is None and node.op_type in _SHAPE_ONLY:
                continue
            if handler is None:
                self.unsupported(node, inputs, f"op {node.op_type} is not understood by channel analysis")
            else:
                handler(node, inputs)
        for out in self.index.graph_outputs:
            self.block(self.layouts.get(out), f"channels reach graph output {out!r}")
        return self.finish()

    def unsupported(self, node: onnx.NodeProto, inputs: list[ChannelLayout | None], reason: str) -> None:
        text = f"{reason} (node {node_label(node)})"
        for lay in inputs:
            self.block(lay, text)
        logger.debug("channel analysis: %s", text)

    def visit_source(self, node: onnx.NodeProto) -> None:
        """A node none of whose inputs carry tracked channels: weighted layers start new groups."""
        if node.op_type in LAYER_OP_TYPES and node.domain in ("", "ai.onnx"):
            getattr(self, f"visit_{node.op_type}")(node, [None] * len(node.input))

    def weight(self, node: onnx.NodeProto, idx: int) -> np.ndarray | None:
        if len(node.input) <= idx or not node.input[idx]:
            return None
        return self.index.constant_value(node.input[idx])

    def _producer(self, node, out_axis, w_axis, bias_axis, channels, rank) -> ChannelLayout:
        gid = self.new_group(channels)
        layout = self.fresh_layout(gid, out_axis, rank)
        self.member(node.input[1], w_axis, "producer", node, layout)
        if len(node.input) > 2 and node.input[2] and bias_axis is not None:
            self.member(node.input[2], bias_axis, "producer_bias", node, layout)
        return layout

    def visit_Conv(self, node, inputs) -> None:
        self._conv(node, inputs, transposed=False)

    def visit_ConvTranspose(self, node, inputs) -> None:
        self._conv(node, inputs, transposed=True)

    def _conv(self, node, inputs, transposed: bool) -> None:
        x_layout = inputs[0]
        w = self.weight(node, 1)
        out = node.output[0]
        if w is None:
            self.unsupported(node, inputs, "convolution weight is not a constant")
            return
        if x_layout is not None and x_layout.axis != 1:
            self.unsupported(node, inputs, "convolution input channels are not on axis 1")
            return
        group = attribute(node, "group", 1)
        axes = weight_axes(node, w.ndim)
        in_axis, out_axis = axes.input, axes.output
        in_channels = w.shape[0] if transposed else w.shape[1] * group
        out_channels = w.shape[1] * group if transposed else w.shape[0]
        if group == 1:
            if x_layout is not None:
                self.member(node.input[1], in_axis, "consumer", node, x_layout)
            self.activation(out, self._producer(node, 1, out_axis, 0, out_channels, w.ndim), node)
            return
        if group == in_channels == out_channels:
            # depthwise: channel i only reads channel i, so the group runs straight through
            if x_layout is None:
                return
            self.member(node.input[1], 0, "depthwise", node, x_layout)
            if len(node.input) > 2 and node.input[2]:
                self.member(node.input[2], 0, "producer_bias", node, x_layout)
            self.rewrites.append(NodeRewrite(node, "depthwise_group", {"tensor": out}))
            self.activation(out, x_layout, node)
            return
        reason = f"grouped convolution with group={group} (node {node_label(node)})"
        self.block(x_layout, reason)
        layout = self._producer(node, 1, out_axis, 0, out_channels, w.ndim)
        self.block(layout, reason)
        self.activation(out, layout, node)

    def visit_Gemm(self, node, inputs) -> None:
        w = self.weight(node, 1)
        if w is None or attribute(node, "transA", 0):
            self.unsupported(node, inputs, "Gemm with a non-constant B or transA=1")
            return
        axes = weight_axes(node, w.ndim)
        in_axis, out_axis = axes.input, axes.output
        if inputs[0] is not None:
            if inputs[0].axis != 1:
                self.unsupported(node, inputs, "Gemm input channels are not on axis 1")
                return
            self.member(node.input[1], in_axis, "consumer", node, inputs[0])
        bias = self.weight(node, 2)
        bias_axis = None
        if bias is not None and bias.ndim >= 1 and bias.shape[-1] == w.shape[out_axis] > 1:
            bias_axis = bias.ndim - 1
        layout = self._producer(node, 1, out_axis, bias_axis, w.shape[out_axis], 2)
        self.activation(node.output[0], layout, node)

    def visit_MatMul(self, node, inputs) -> None:
        w = self.weight(node, 1)
        a_layout = inputs[0]
        if w is None or w.ndim != 2:
            self.unsupported(node, inputs, "MatMul whose second operand is not a constant matrix")
            return
        rank = self.rank(node.output[0])
        axes = weight_axes(node, w.ndim)
        if rank is None:
            self.unsupported(node, inputs, "MatMul output rank is unknown")
            layout = self.fresh_layout(self.new_group(w.shape[axes.output]), 0, 1)
            self.member(node.input[1], axes.output, "producer", node, layout)
            self.block(layout, "MatMul output rank is unknown")
            return
        if a_layout is not None:
            if a_layout.axis != a_layout.rank - 1:
                self.unsupported(node, inputs, "MatMul reads channels that are not on the last axis")
                return
            self.member(node.input[1], axes.input, "consumer", node, a_layout)
        gid = self.new_group(w.shape[axes.output])
        layout = self.fresh_layout(gid, rank - 1, rank)
        self.member(node.input[1], axes.output, "producer", node, layout)
        self.activation(node.output[0], layout, node)

    def _norm_params(self, node, layout, roles: dict[int, str]) -> None:
        for idx, role in roles.items():
            if idx < len(node.input) and node.input[idx]:
                if not self.index.is_constant(node.input[idx]):
                    self.unsupported(node, [layout], "normalisation parameter is not a constant")
                    return
                self.member(node.input[idx], 0, role, node, layout)
        self.activation(node.output[0], layout, node)

    def visit_BatchNormalization(self, node, inputs) -> None:
        if inputs[0] is None or inputs[0].axis != 1:
            self.unsupported(node, inputs, "BatchNormalization channels are not on axis 1")
            return
        roles = {1: "norm_scale", 2: "norm_bias", 3: "norm_stat", 4: "norm_stat"}
        self._norm_params(node, inputs[0], roles)

    def visit_InstanceNormalization(self, node, inputs) -> None:
        if inputs[0] is None or inputs[0].axis != 1:
            self.unsupported(node, inputs, "InstanceNormalization channels are not on axis 1")
            return
        self._norm_params(node, inputs[0], {1: "norm_scale", 2: "norm_bias"})

    def visit_LayerNormalization(self, node, inputs) -> None:
        """The mean and variance over axes [axis, rank) count every channel there, zero or not: a group on
        those axes is not prunable. Channels on an earlier axis are normalised one by one."""
        lay = inputs[0]
        if lay is None or any(x is not None for x in inputs[1:]):
            self.unsupported(node, inputs, "LayerNormalization parameters depend on a channel tensor")
        elif lay.axis >= attribute(node, "axis", -1) % lay.rank:
            self.unsupported(node, inputs, "LayerNormalization normalises across channels")
        else:
            self.activation(node.output[0], lay, node)

    def visit_pass_through(self, node, inputs) -> None:
        lay = inputs[0]
        if lay is None or any(x is not None for x in inputs[1:]):
            self.unsupported(node, inputs, f"{node.op_type} mixes channel tensors in secondary inputs")
            return
        if node.op_type == "Pad" and not self._pad_keeps_channels(node, lay):
            self.unsupported(node, inputs, "Pad pads the channel axis")
            return
        if node.op_type in _ACROSS_AXIS:
            axis = _ACROSS_AXIS[node.op_type]
            if (attribute(node, "axis", -1) if axis is None else axis) % lay.rank == lay.axis:
                self.unsupported(node, inputs, f"{node.op_type} normalises across channels")
                return
        if node.op_type in ("Resize", "Upsample"):
            if not self._resize_keeps_channels(node, lay):
                self.unsupported(node, inputs, "Resize scales the channel axis")
                return
        self.activation(node.output[0], lay, node)

    def _pad_keeps_channels(self, node, lay: ChannelLayout) -> bool:
        pads = attribute(node, "pads") if len(node.input) < 2 else self.index.constant_value(node.input[1])
        if pads is None:
            return False
        pads = np.asarray(pads).reshape(-1)
        return pads[lay.axis] == 0 and pads[lay.axis + lay.rank] == 0

    def _resize_keeps_channels(self, node, lay: ChannelLayout) -> bool:
        scale_idx = 1 if node.op_type == "Upsample" or len(node.input) == 2 else 2
        scales = self.weight(node, scale_idx)
        if scales is not None and scales.size:
            return scales[lay.axis] == 1
        sizes = self.weight(node, 3)
        if sizes is not None and sizes.size:
            self.rewrites.append(NodeRewrite(node, "resize_sizes", {"tensor": node.output[0], "axis": lay.axis}))
            return True
        return False

    def visit_elementwise(self, node, inputs) -> None:
        out = node.output[0]
        out_rank = self.rank(out)
        tracked = [lay for lay in inputs if lay is not None]
        if out_rank is None:
            self.unsupported(node, inputs, "elementwise output rank is unknown")
            return
        base = tracked[0]
        out_axis = out_rank - (base.rank - base.axis)
        for lay in tracked[1:]:
            if out_rank - (lay.rank - lay.axis) != out_axis:
                self.unsupported(node, inputs, "elementwise operands carry channels on different axes")
                return
            self._join(base, lay, node)
        channels = base.size
        for idx, name in enumerate(node.input):
            if not name or inputs[idx] is not None:
                continue
            shape = self.shape(name)
            if shape is None:
                self.unsupported(node, inputs, f"shape of operand {name!r} is unknown")
                return
            pos = out_axis - (out_rank - len(shape))
            dim = shape[pos] if pos >= 0 else 1
            if dim == 1:
                continue
            if dim != channels:
                self.unsupported(node, inputs, f"operand {name!r} does not broadcast over channels")
                return
            if self.index.is_constant(name):
                self.member(name, pos, "channel_constant", node, replace(base, axis=pos, rank=len(shape)))
            else:
                self.unsupported(node, inputs, f"operand {name!r} has channels no group tracks")
                return
        self.activation(out, replace(base, axis=out_axis, rank=out_rank), node)

    def _join(self, a: ChannelLayout, b: ChannelLayout, node) -> None:
        """Residual joins: both sides must lose the same indices, so their groups merge."""
        if [(s.offset, s.length, s.expand) for s in a.segments] != [(s.offset, s.length, s.expand) for s in b.segments]:
            reason = f"operands of {node.op_type} have differently split channels (node {node_label(node)})"
            self.block(a, reason)
            self.block(b, reason)
            return
        for sa, sb in zip(a.segments, b.segments):
            if sa.group is None or sb.group is None:
                if sa.group != sb.group:
                    reason = f"combined with channels no group tracks (node {node_label(node)})"
                    self.block(a, reason)
                    self.block(b, reason)
            elif sa.start == sb.start and self.sizes[self.find(sa.group)] == self.sizes[self.find(sb.group)]:
                self.union(sa.group, sb.group)
            else:
                reason = f"operands of {node.op_type} align different channel ranges (node {node_label(node)})"
                self.block(a, reason)
                self.block(b, reason)

    def visit_Concat(self, node, inputs) -> None:
        out_rank = self.rank(node.output[0])
        axis = attribute(node, "axis") % out_rank if out_rank else None
        tracked = [lay for lay in inputs if lay is not None]
        if axis is None or any(lay.axis != axis for lay in tracked):
            # concatenation along another axis: every operand keeps its channels aligned
            if axis is not None and all(lay.axis == tracked[0].axis for lay in tracked) and len(tracked) == len(inputs):
                for lay in tracked[1:]:
                    self._join(tracked[0], lay, node)
                self.activation(node.output[0], tracked[0], node)
            else:
                self.unsupported(node, inputs, "Concat mixes channel and non-channel axes")
            return
        segments, offset = [], 0
        for name, lay in zip(node.input, inputs):
            if lay is None:
                shape = self.shape(name)
                if shape is None or shape[axis] is None:
                    self.unsupported(node, inputs, f"Concat operand {name!r} has unknown size")
                    return
                segments.append(Segment(None, 0, shape[axis], offset))
                offset += shape[axis]
                continue
            for seg in lay.segments:
                segments.append(replace(seg, offset=offset + seg.offset))
            offset += lay.size
        self.activation(node.output[0], ChannelLayout(axis, out_rank, tuple(segments)), node)

    def _cut(self, lay: ChannelLayout, begin: int, end: int) -> ChannelLayout | None:
        """The channels at axis indices [begin, end), or None when the cut splits an expanded channel."""
        segments = []
        for seg in lay.segments:
            lo, hi = max(begin, seg.offset), min(end, seg.offset + seg.length * seg.expand)
            if lo >= hi:
                continue
            if (lo - seg.offset) % seg.expand or (hi - seg.offset) % seg.expand:
                return None
            first = (lo - seg.offset) // seg.expand
            count = (hi - lo) // seg.expand
            start = seg.start + first if seg.group is not None else 0
            segments.append(Segment(seg.group, start, count, lo - begin, seg.expand))
        return ChannelLayout(lay.axis, lay.rank, tuple(segments))

    def visit_Split(self, node, inputs) -> None:
        lay = inputs[0]
        axis = attribute(node, "axis", 0) % lay.rank
        if axis != lay.axis:
            for out in node.output:
                self.activation(out, lay, node)
            return
        sizes = self.weight(node, 1) if len(node.input) > 1 else attribute(node, "split")
        if sizes is None or len(sizes) == 0:
            sizes = [lay.size // len(node.output)] * len(node.output)
        begin = 0
        for out, size in zip(node.output, [int(s) for s in sizes]):
            part = self._cut(lay, begin, begin + size)
            if part is None:
                self.unsupported(node, inputs, "Split cuts through a flattened channel")
                return
            self.activation(out, part, node)
            begin += size
        self.rewrites.append(NodeRewrite(node, "split_sizes"))

    def visit_Slice(self, node, inputs) -> None:
        lay = inputs[0]
        if any(lay_ is not None for lay_ in inputs[1:]):
            self.unsupported(node, inputs, "Slice bounds depend on a channel tensor")
            return
        values = [self.weight(node, i) for i in range(1, 5)]
        starts, ends, axes, steps = values
        if starts is None or ends is None or (len(node.input) > 3 and node.input[3] and axes is None):
            self.unsupported(node, inputs, "Slice bounds are not constants")
            return
        axes = list(range(len(starts))) if axes is None else [int(a) % lay.rank for a in axes]
        if lay.axis not in axes:
            self.activation(node.output[0], lay, node)
            return
        pos = axes.index(lay.axis)
        if steps is not None and int(steps[pos]) != 1:
            self.unsupported(node, inputs, "Slice along channels with a step other than 1")
            return
        size = lay.size
        begin, end, _ = slice(int(starts[pos]), int(ends[pos])).indices(size)
        part = self._cut(lay, begin, max(begin, end))
        if part is None:
            self.unsupported(node, inputs, "Slice cuts through a flattened channel")
            return
        self.rewrites.append(NodeRewrite(node, "slice_bounds", {"pos": pos, "begin": begin}))
        self.activation(node.output[0], part, node)

    def visit_Transpose(self, node, inputs) -> None:
        lay = inputs[0]
        perm = attribute(node, "perm") or list(reversed(range(lay.rank)))
        self.activation(node.output[0], replace(lay, axis=list(perm).index(lay.axis)), node)

    def _axes(self, node, input_idx: int) -> list[int] | None:
        axes = attribute(node, "axes")
        if axes is None and len(node.input) > input_idx and node.input[input_idx]:
            axes = self.index.constant_value(node.input[input_idx])
        return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]

    def visit_Squeeze(self, node, inputs) -> None:
        lay = inputs[0]
        axes = self._axes(node, 1)
        if axes is None:
            shape = self.shape(node.input[0])
            axes = None if shape is None else [i for i, d in enumerate(shape) if d == 1]
        if axes is None:
            self.unsupported(node, inputs, "Squeeze axes are unknown")
            return
        axes = [a % lay.rank for a in axes]
        new_axis = lay.axis - sum(a < lay.axis for a in axes)
        self.activation(node.output[0], replace(lay, axis=new_axis, rank=lay.rank - len(axes)), node)

    def visit_Unsqueeze(self, node, inputs) -> None:
        lay = inputs[0]
        axes = self._axes(node, 1)
        if axes is None:
            self.unsupported(node, inputs, "Unsqueeze axes are not constants")
            return
        rank = lay.rank + len(axes)
        inserted = sorted(a % rank for a in axes)
        kept_positions = [i for i in range(rank) if i not in inserted]
        self.activation(node.output[0], replace(lay, axis=kept_positions[lay.axis], rank=rank), node)

    def visit_Flatten(self, node, inputs) -> None:
        self._reshape(node, inputs, explicit_shape=False)

    def visit_Reshape(self, node, inputs) -> None:
        if inputs[1] is not None:
            self.unsupported(node, inputs, "Reshape target depends on a channel tensor")
            return
        self._reshape(node, inputs, explicit_shape=True)

    def _reshape(self, node, inputs, explicit_shape: bool) -> None:
        """Supports reshapes that keep the dims before the channel axis and either keep the channel
        dim (merging trailing dims) or fold the channel with all trailing dims into one."""
        lay = inputs[0]
        in_shape, out_shape = self.shape(node.input[0]), self.shape(node.output[0])
        if in_shape is None or out_shape is None or None in in_shape[lay.axis :] or None in out_shape[lay.axis :]:
            self.unsupported(node, inputs, f"{node.op_type} shapes are not static")
            return
        ax = lay.axis
        if in_shape[:ax] != out_shape[:ax] or len(out_shape) <= ax:
            self.unsupported(node, inputs, f"{node.op_type} moves the channel axis")
            return
        trailing = int(np.prod(in_shape[ax + 1 :], dtype=np.int64))
        if out_shape[ax] == in_shape[ax]:
            new_layout = replace(lay, rank=len(out_shape))
        elif out_shape[ax] == in_shape[ax] * trailing and len(out_shape) == ax + 1:
            segments = tuple(replace(s, offset=s.offset * trailing, expand=s.expand * trailing) for s in lay.segments)
            new_layout = ChannelLayout(ax, len(out_shape), segments)
        else:
            self.unsupported(node, inputs, f"{node.op_type} splits the channel axis")
            return
        if explicit_shape:
            if not self.index.is_constant(node.input[1]):
                self.unsupported(node, inputs, "Reshape target is not a constant")
                return
            self.rewrites.append(NodeRewrite(node, "reshape_target", {"axis": ax}))
        self.activation(node.output[0], new_layout, node)

    def visit_reduce(self, node, inputs) -> None:
        lay = inputs[0]
        axes = self._axes(node, 1)
        if axes is None and attribute(node, "noop_with_empty_axes", 0):
            self.activation(node.output[0], lay, node)
            return
        axes = list(range(lay.rank)) if axes is None else [a % lay.rank for a in axes]
        if lay.axis in axes:
            if node.op_type not in _SUM_REDUCE:
                self.unsupported(node, inputs, f"{node.op_type} reduces across channels")
            return  # a sum over channels: the result has no channels, and a zero channel adds nothing
        if attribute(node, "keepdims", 1):
            self.activation(node.output[0], lay, node)
        else:
            new_axis = lay.axis - sum(a < lay.axis for a in axes)
            self.activation(node.output[0], replace(lay, axis=new_axis, rank=lay.rank - len(axes)), node)

    # --- result ---------------------------------------------------------------------------------
    def finish(self) -> ChannelAnalysis:
        resolve = lambda seg: replace(seg, group=self.find(seg.group)) if seg.group is not None else seg  # noqa: E731
        members = [replace(m, segment=resolve(m.segment)) for m in self.members]
        layouts = {
            name: replace(lay, segments=tuple(resolve(s) for s in lay.segments)) for name, lay in self.layouts.items()
        }
        constants = [m for m in members if m.role != "activation"]
        self._block_shared_constants(constants)
        groups = {root: ChannelGroup(root, self.sizes[root]) for root in self.parent if self.find(root) == root}
        for m in members:
            groups[m.segment.group].members.append(m)
        for root, group in groups.items():
            group.members = list(dict.fromkeys(group.members))
            reasons = self.reasons[root]
            if reasons:
                group.prunable = False
                group.reason = "; ".join(reasons)
                logger.info("channel group %d (%s) is not prunable: %s", root, group.weights, group.reason)
        unique_constants = list(dict.fromkeys(constants))
        return ChannelAnalysis(self.model, list(groups.values()), layouts, unique_constants, self.rewrites)

    def _block_shared_constants(self, constants: list[GroupMember]) -> None:
        """A constant can only be sliced one way: if its readers see it with different channel layouts,
        or a reader outside the analysis also uses it, the groups involved stay as they are."""
        views: dict[str, dict[str, set]] = {}
        for m in constants:
            seg = replace(m.segment, group=self.find(m.segment.group))
            views.setdefault(m.tensor, {}).setdefault(m.node, set()).add((m.axis, seg))
        for tensor, per_node in views.items():
            readers = {node_label(n) for n in self.index.consumers.get(tensor, [])}
            distinct = {frozenset(v) for v in per_node.values()}
            if len(distinct) > 1 or not readers <= set(per_node):
                reason = f"constant {tensor!r} is shared by nodes with different channel layouts"
                for view in per_node.values():
                    for _, seg in view:
                        if reason not in self.reasons[seg.group]:
                            self.reasons[seg.group].append(reason)


def find_channel_groups(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None) -> ChannelAnalysis:
    """Channel dependency groups of `model`. input_shapes fixes dynamic input dims (needed when a
    flatten's spatial size is only known for a given input size)."""
    return _Tracker(model, input_shapes).run()
