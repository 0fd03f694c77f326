"""Fold constant per-channel scales and offsets into neighbouring Convs before quantization.

PP-OCRv4 det (PPLCNetV3) follows most convolutions with a learnable scalar scale and offset, and its
hardswish ends in x/6 followed by another learnable scale; PP-OCR cls feeds x/6 straight into the next
Conv. Left in the graph, each is a float op (or, quantized as ONNX Runtime's quantizer does, an int8
kernel with its own rounding) reading and writing a whole feature map. Folded, they cost nothing:
  Conv -> Mul/Add/Sub/Div by a per-output-channel constant: into the Conv's weight and bias;
  Mul/Div by a constant -> Mul/Div by a constant: one Mul (t/6*a -> t*(a/6));
  Mul/Div by a per-input-channel constant -> Conv: into the Conv's weight (zero padding stays zero).
Exact up to float rounding. The last op's output name is kept; the tensors in between disappear. The node that
remains keeps its name, and the names of the nodes folded into it stay its aliases (graph/naming.py).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx
from onnx import numpy_helper

from autocompress.graph.index import GraphIndex, attribute
from autocompress.graph.large import copy_model
from autocompress.graph.naming import record_fold

_FOLDABLE = ("Mul", "Add", "Sub", "Div")


def _channel_vector(value: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """value as one number per output channel, when it broadcasts against [N, channels, ...] that way."""
    if value.ndim > rank or not np.issubdtype(value.dtype, np.floating):
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1).astype(np.float64), (channels,))


def _sole_use(index: GraphIndex, name: str) -> bool:
    return name in index.initializers and len(index.consumers.get(name, [])) == 1 and name not in index.graph_outputs


def _fold(index: GraphIndex, conv: onnx.NodeProto, consumer: onnx.NodeProto) -> bool:
    """Fold consumer into conv in place (weights, bias, output name); False when it does not apply."""
    x = conv.output[0]
    other = [name for name in consumer.input if name != x]
    if len(other) != 1 or (consumer.op_type in ("Sub", "Div") and consumer.input[0] != x):
        return False
    weight_name = conv.input[1]
    bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
    constant = index.constant_value(other[0])
    if constant is None or not _sole_use(index, weight_name) or (bias_name and not _sole_use(index, bias_name)):
        return False
    weight = index.constant_value(weight_name)
    vector = _channel_vector(constant, weight.ndim, weight.shape[0])
    if vector is None or not np.issubdtype(weight.dtype, np.floating):
        return False
    if consumer.op_type == "Div" and not np.all(vector):
        return False
    bias = np.zeros(len(vector)) if bias_name is None else index.constant_value(bias_name)
    bias = bias.astype(np.float64)
    if consumer.op_type in ("Mul", "Div"):
        factor = vector if consumer.op_type == "Mul" else 1.0 / vector
        weight = weight * factor.reshape((-1,) + (1,) * (weight.ndim - 1))
        bias = bias * factor
    else:
        bias = bias + (vector if consumer.op_type == "Add" else -vector)
    dtype = index.initializers[weight_name].data_type
    weight = weight.astype(onnx.helper.tensor_dtype_to_np_dtype(dtype))
    index.initializers[weight_name].CopyFrom(numpy_helper.from_array(weight, weight_name))
    if bias_name is None:
        bias_name = f"{conv.name or x}_folded_bias"
        index.model.graph.initializer.append(numpy_helper.from_array(bias.astype(weight.dtype), bias_name))
        conv.input.append(bias_name)
    else:
        index.initializers[bias_name].CopyFrom(numpy_helper.from_array(bias.astype(weight.dtype), bias_name))
    conv.output[0] = consumer.output[0]
    record_fold(conv, consumer)
    return True


def _scale_factor(index: GraphIndex, node: onnx.NodeProto, data: str | None = None) -> tuple[str, np.ndarray] | None:
    """(data input, constant factor) of a Mul or Div by a float constant (x*c, c*x, x/c), else None."""
    if node.op_type not in ("Mul", "Div") or len(node.input) != 2:
        return None
    positions = (0, 1) if node.op_type == "Mul" else (0,)
    for i in positions:
        if data is not None and node.input[i] != data:
            continue
        constant = index.constant_value(node.input[1 - i])
        if constant is None or not np.issubdtype(constant.dtype, np.floating) or index.is_constant(node.input[i]):
            continue
        if node.op_type == "Div":
            return (node.input[0], 1.0 / constant.astype(np.float64)) if np.all(constant) else None
        return node.input[i], constant.astype(np.float64)
    return None


def _merge_scales(index: GraphIndex, first: onnx.NodeProto, second: onnx.NodeProto) -> bool:
    """Turn first -> second, both scaling by constants, into one Mul in first's place (t/6*a -> t*(a/6))."""
    head, tail = _scale_factor(index, first), _scale_factor(index, second, first.output[0])
    if head is None or tail is None:
        return False
    name = f"{second.output[0]}_merged_scale"
    dtype = index.constant_value(first.input[1] if first.input[0] == head[0] else first.input[0]).dtype
    index.model.graph.initializer.append(numpy_helper.from_array((head[1] * tail[1]).astype(dtype), name))
    first.op_type = "Mul"
    del first.input[:]
    first.input.extend([head[0], name])
    first.output[0] = second.output[0]
    record_fold(first, second)
    return True


def _scale_into_conv(index: GraphIndex, node: onnx.NodeProto, conv: onnx.NodeProto) -> bool:
    """Fold node, a constant scale of the Conv's input, into the Conv's weight (per input channel)."""
    factor = _scale_factor(index, node)
    if factor is None or conv.input[0] != node.output[0] or len(conv.input) < 2 or not _sole_use(index, conv.input[1]):
        return False
    weight = index.constant_value(conv.input[1])
    group = attribute(conv, "group", 1)
    vector = _channel_vector(factor[1], weight.ndim, weight.shape[1] * group)
    if vector is None or not np.issubdtype(weight.dtype, np.floating) or weight.shape[0] % group:
        return False
    grouped = weight.reshape((group, weight.shape[0] // group) + weight.shape[1:])
    grouped = grouped * vector.reshape((group, 1, weight.shape[1]) + (1,) * (weight.ndim - 2))
    scaled = grouped.reshape(weight.shape).astype(weight.dtype)
    index.initializers[conv.input[1]].CopyFrom(numpy_helper.from_array(scaled, conv.input[1]))
    conv.input[0] = factor[0]
    record_fold(conv, node)
    return True


def _fold_pair(index: GraphIndex, node: onnx.NodeProto, consumer: onnx.NodeProto) -> onnx.NodeProto | None:
    """The node removed by folding node -> consumer (its sole reader), or None when nothing folds."""
    if node.op_type == "Conv" and len(node.input) > 1 and consumer.op_type in _FOLDABLE:
        return consumer if _fold(index, node, consumer) else None
    if consumer.op_type in ("Mul", "Div"):
        return consumer if _merge_scales(index, node, consumer) else None
    if consumer.op_type == "Conv":
        return node if _scale_into_conv(index, node, consumer) else None
    return None


def _by_op_types(node: onnx.NodeProto, consumer: onnx.NodeProto) -> bool:
    """Whether _fold_pair can fold node -> consumer as far as their op types tell."""
    if node.op_type == "Conv":
        return len(node.input) > 1 and consumer.op_type in _FOLDABLE
    return node.op_type in ("Mul", "Div") and consumer.op_type in ("Mul", "Div", "Conv")


def _sole_consumer(index: GraphIndex, node: onnx.NodeProto, keep: Collection[str]) -> onnx.NodeProto | None:
    """The one node reading node's output, when that output may be folded away."""
    x = node.output[0] if node.output else ""
    consumers = index.consumers.get(x, [])
    if len(consumers) != 1 or x in index.graph_outputs or x in keep:
        return None
    return consumers[0]


def fold_conv_affine(model: onnx.ModelProto, keep: Collection[str] = ()) -> tuple[onnx.ModelProto, int]:
    """A copy of model with the folds of the module docstring applied, and how many ops they removed; model itself
    when no pair of ops can fold (a model over 2 GB is not copied for nothing).

    Only a tensor read by one node alone, no graph output and not in keep (names a user refers to) is
    folded away; a changed weight or bias must be an initializer no other node reads.
    """
    index = GraphIndex(model)
    if not any(
        consumer is not None and _by_op_types(node, consumer)
        for node, consumer in ((n, _sole_consumer(index, n, keep)) for n in model.graph.node)
    ):
        return model, 0
    model = copy_model(model)
    total = 0
    while True:
        index = GraphIndex(model)
        position = {out: i for i, node in enumerate(model.graph.node) for out in node.output}
        removed: set[int] = set()
        vanished: set[str] = set()
        for node in model.graph.node:
            consumer = _sole_consumer(index, node, keep)
            if consumer is None:
                continue
            at = position[consumer.output[0]]
            if at in removed or position[node.output[0]] in removed:
                continue
            dropped = _fold_pair(index, node, consumer)
            if dropped is not None:
                removed.add(at if dropped is consumer else position[node.output[0]])
                vanished.add(node.output[0])
        if not removed:
            return model, total
        total += len(removed)
        kept = [n for i, n in enumerate(model.graph.node) if i not in removed]
        del model.graph.node[:]
        model.graph.node.extend(kept)
        infos = [v for v in model.graph.value_info if v.name not in vanished]
        del model.graph.value_info[:]
        model.graph.value_info.extend(infos)
