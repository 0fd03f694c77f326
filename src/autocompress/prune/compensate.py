"""Mean compensation: a removed channel's average contribution moves into the next layer's bias.

A channel with small weights can still carry a large offset: a folded BatchNorm shift passes through ReLU6 and
depthwise convolutions as a near-constant map, so dropping the channel shifts every activation after it (on
EfficientNet-Lite0, removing 16 of 144 expansion channels by L1 norm changes a quarter of the top-1 classes).
Each removed channel's mean activation, measured on calibration data, times the consumer's weights is added to the
consumer's bias. That is exact for a constant channel read by a 1x1 convolution or a Gemm and the expected-value
correction otherwise; for k x k convolutions it assumes the channel's mean at the padded borders too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from autocompress.errors import DataError
from autocompress.graph.index import GraphIndex, attribute
from autocompress.prune.constants import set_constant
from autocompress.prune.groups import ChannelAnalysis, GroupMember, node_label, removed_indices
from autocompress.runtime.ort import create_session

logger = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]


def _consumers(analysis: ChannelAnalysis, keep: dict[int, np.ndarray]) -> list[tuple[onnx.NodeProto, GroupMember]]:
    """(node, consumer weight member) of every Conv/Gemm that reads a channel `keep` removes."""
    nodes = {node_label(n): n for n in analysis.model.graph.node}
    found = []
    for member in analysis.constant_members:
        if member.role == "consumer" and len(removed_indices([member.segment], keep)):
            node = nodes[member.node]
            if node.op_type == "Conv" or (node.op_type == "Gemm" and not attribute(node, "transA", 0)):
                found.append((node, member))
            else:
                logger.debug("no mean compensation for %s: only Conv and Gemm consumers are compensated", member.node)
    return found


def with_user_inputs(model: onnx.ModelProto, inputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    """A copy of the analysis model with the user's (possibly dynamic) input declarations and no stale shapes:
    the analysis fixed its inputs to one shape, calibration batches may have another batch size."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    return out


@dataclass(frozen=True)
class Moments:
    """Per-channel mean and variance of one activation over the calibration batches."""

    mean: np.ndarray
    var: np.ndarray


def channel_moments(
    analysis: ChannelAnalysis, inputs: list[onnx.ValueInfoProto], tensors: list[str], feeds: Iterable[Feed]
) -> dict[str, Moments]:
    """Mean and variance of each tensor along its channel axis over calibration batches, in ONNX Runtime."""
    probe = with_user_inputs(analysis.model, inputs)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors)
    session = create_session(probe)
    names = {i.name for i in session.get_inputs()}
    sums: dict[str, np.ndarray] = {}
    squares: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(tensors, 0)
    for feed in feeds:
        outputs = session.run(tensors, {k: v for k, v in feed.items() if k in names})
        for name, value in zip(tensors, outputs):
            rows = np.moveaxis(value.astype(np.float64), analysis.layouts[name].axis, -1)
            rows = rows.reshape(-1, rows.shape[-1])
            sums[name] = sums.get(name, 0.0) + rows.sum(axis=0)
            squares[name] = squares.get(name, 0.0) + np.square(rows).sum(axis=0)
            counts[name] += len(rows)
    if not sums:
        raise DataError("channel statistics need at least one calibration batch")
    found = {}
    for name in tensors:
        mean = sums[name] / counts[name]
        found[name] = Moments(mean, np.maximum(squares[name] / counts[name] - np.square(mean), 0.0))
    return found


def _shift(node: onnx.NodeProto, member: GroupMember, weight: np.ndarray, removed: np.ndarray, mean: np.ndarray):
    """What the removed inputs added, on average, to each output channel of `node`."""
    if node.op_type == "Conv":
        taps = weight[:, removed].reshape(weight.shape[0], len(removed), -1).sum(axis=2)
        return taps @ mean[removed]
    picked = np.take(weight, removed, axis=member.axis)
    shift = picked.T @ mean[removed] if member.axis == 0 else picked @ mean[removed]
    return shift * attribute(node, "alpha", 1.0) / attribute(node, "beta", 1.0)


def consumer_moments(
    analysis: ChannelAnalysis,
    inputs: list[onnx.ValueInfoProto],
    feeds: Iterable[Feed],
    gids: Iterable[int] | None = None,
) -> dict[str, Moments]:
    """Channel moments of the inputs of every Conv/Gemm/MatMul that reads a channel of the groups `gids`
    (default: every prunable group)."""
    wanted = set(gids) if gids is not None else {g.id for g in analysis.groups if g.prunable}
    labels = {m.node for m in analysis.constant_members if m.role == "consumer" and m.segment.group in wanted}
    tensors = sorted({n.input[0] for n in analysis.model.graph.node if node_label(n) in labels})
    return channel_moments(analysis, inputs, tensors, feeds) if tensors else {}


def apply_compensation(analysis: ChannelAnalysis, keep: dict[int, np.ndarray], moments: dict[str, Moments]) -> int:
    """Adds the mean contribution of every channel `keep` removes to its consumers' biases (in analysis.model,
    before slicing; a missing bias is created and registered for slicing). Returns the layers compensated."""
    consumers = [(n, m) for n, m in _consumers(analysis, keep) if _bias_writable(analysis, n)]
    index = GraphIndex(analysis.model)
    for node, member in consumers:
        weight = index.constant_value(member.tensor)
        removed = removed_indices([member.segment], keep)
        shift = _shift(node, member, weight.astype(np.float64), removed, moments[node.input[0]].mean)
        if len(node.input) > 2 and node.input[2]:
            bias = index.constant_value(node.input[2])
            set_constant(index, node.input[2], (bias + shift).astype(bias.dtype))
        else:
            _add_bias(analysis, node, member.tensor, shift.astype(weight.dtype))
            index = GraphIndex(analysis.model)
    return len(consumers)


def _bias_writable(analysis: ChannelAnalysis, node: onnx.NodeProto) -> bool:
    """The bias can take the shift: a per-output-channel constant that only this node reads, or none at all."""
    if len(node.input) < 3 or not node.input[2]:
        return node.op_type == "Conv" or attribute(node, "beta", 1.0) != 0.0
    index = GraphIndex(analysis.model)
    bias = index.constant_value(node.input[2])
    weight = index.constant_value(node.input[1])
    out_axis = 0 if node.op_type == "Conv" or attribute(node, "transB", 0) else 1
    writable = bias is not None and bias.ndim == 1 and bias.shape[0] == weight.shape[out_axis]
    if not (writable and len(index.consumers[node.input[2]]) == 1):
        logger.debug("no mean compensation for %s: its bias is shared or not per channel", node_label(node))
        return False
    return True


def _add_bias(analysis: ChannelAnalysis, node: onnx.NodeProto, weight: str, value: np.ndarray) -> None:
    """Gives `node` a bias input and makes it follow the node's output channels when they are sliced."""
    names = GraphIndex(analysis.model).tensor_names()
    name, n = f"{node.output[0]}_bias", 0
    while name in names:
        n += 1
        name = f"{node.output[0]}_bias_{n}"
    analysis.model.graph.initializer.append(numpy_helper.from_array(value, name))
    while len(node.input) < 3:
        node.input.append("")
    node.input[2] = name
    label = node_label(node)
    for member in list(analysis.constant_members):
        if member.role == "producer" and member.tensor == weight and member.node == label:
            analysis.constant_members.append(GroupMember(name, 0, "producer_bias", label, member.segment))
