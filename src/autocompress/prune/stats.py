"""Parameter and multiply-accumulate counts of an ONNX model, for reports and pruning targets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx

from autocompress.graph.index import attribute
from autocompress.graph.large import WeightsLayout, weightless, weights_layout
from autocompress.graph.stats import quantization_parameters
from autocompress.prune.prepare import shape_inferred, static_shapes

logger = logging.getLogger(__name__)


@dataclass
class ModelStats:
    params: int
    macs: int
    # nodes whose MACs could not be counted because a shape stayed unknown
    unknown_shape_nodes: list[str] = field(default_factory=list)


def _float_constants(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shapes of the float weights, whether stored as initializers or Constant nodes."""
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    found = {t.name: tuple(t.dims) for t in model.graph.initializer if t.data_type in floats}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type in floats:
                    found[node.output[0]] = tuple(attr.t.dims)
    return found


def _node_macs(node: onnx.NodeProto, shapes: dict, weights: dict) -> int | None:
    def known(name):
        shape = shapes.get(name)
        return None if shape is None or None in shape else shape

    if node.op_type in ("Conv", "ConvTranspose"):
        w = weights.get(node.input[1]) or known(node.input[1])
        ref = known(node.output[0]) if node.op_type == "Conv" else known(node.input[0])
        if w is None or ref is None:
            return None
        # Conv: every output element sums Cin/group * k; ConvTranspose: every input element scatters Cout/group * k
        return int(np.prod(ref, dtype=np.int64) * np.prod(w[1:], dtype=np.int64))
    if node.op_type in ("Gemm", "MatMul"):
        a, out = known(node.input[0]), known(node.output[0])
        if a is None or out is None:
            return None
        k = a[0] if node.op_type == "Gemm" and attribute(node, "transA", 0) else a[-1]
        return int(np.prod(out, dtype=np.int64) * k)
    return 0


def _quantized_weights(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shapes of integer weights stored for a DequantizeLinear (QDQ models keep their weights as int8)."""
    dequantized = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {
        t.name: tuple(t.dims)
        for t in model.graph.initializer
        if t.name in dequantized and t.data_type != onnx.TensorProto.FLOAT and len(t.dims) >= 1
    }


def node_macs(inferred: onnx.ModelProto) -> dict[str, int | None]:
    """MACs of each node of a shape-inferred model, keyed by its first output; None where a shape is unknown."""
    shapes, weights = static_shapes(inferred), _float_constants(inferred)
    return {node.output[0]: _node_macs(node, shapes, weights) for node in inferred.graph.node}


def count_params_and_macs(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None) -> ModelStats:
    """Parameters = elements of float constants of rank >= 1 and of int8 weights behind DequantizeLinear (not the
    scales and zero points of QuantizeLinear/DequantizeLinear); MACs of
    Conv, ConvTranspose, Gemm and MatMul from inferred shapes (input_shapes fixes dynamic input dims)."""
    # counts read shapes only: a model over 2 GB is analysed as its weightless stub, not copied with its weights
    external = weights_layout(model) is WeightsLayout.EXTERNAL
    inferred = shape_inferred(weightless(model) if external else model, input_shapes)
    scales = quantization_parameters(inferred)  # stored beside int8 weights, but not learned
    stored = {
        k: v for k, v in {**_float_constants(inferred), **_quantized_weights(inferred)}.items() if k not in scales
    }
    params = sum(int(np.prod(dims, dtype=np.int64)) for dims in stored.values() if len(dims) >= 1)
    per_node = node_macs(inferred)
    macs = sum(count for count in per_node.values() if count is not None)
    unknown = [name for name, count in per_node.items() if count is None]
    if unknown:
        logger.info("MACs of %d nodes are unknown (dynamic shapes): %s", len(unknown), unknown[:5])
    return ModelStats(params, macs, unknown)
