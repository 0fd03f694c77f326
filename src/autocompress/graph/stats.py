"""Serialized size of a model and which tensors are its parameters, for reports (parameter and MAC counts live
in prune.stats)."""

from __future__ import annotations

import onnx

from autocompress.graph.large import serialized_size

#: The nodes whose scale and zero-point inputs describe how a tensor is stored, not what the model learned.
QDQ_OP_TYPES = ("QuantizeLinear", "DequantizeLinear")


def model_size_mb(model: onnx.ModelProto) -> float:
    return serialized_size(model) / 1e6


def quantization_parameters(model: onnx.ModelProto) -> set[str]:
    """Names of the scale and zero-point inputs of QuantizeLinear/DequantizeLinear nodes: a quantized model has
    them beside its int8 weights, but they are not parameters (the float model has none of them)."""
    return {name for node in model.graph.node if node.op_type in QDQ_OP_TYPES for name in node.input[1:] if name}


def weight_op_types(model: onnx.ModelProto) -> dict[str, str]:
    """Op type of the first node reading each initializer or Constant output, so a report can say what a weight
    belongs to."""
    readers: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, node.op_type)
    return readers
