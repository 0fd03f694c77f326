"""Writing constant values back into a graph, wherever they are stored (initializer or Constant node)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from autocompress.graph.index import GraphIndex
from autocompress.graph.op_facts import LAYER_OP_TYPES


def set_constant(index: GraphIndex, name: str, value: np.ndarray) -> None:
    """Replaces the value of constant `name` in index.model, keeping its name."""
    tensor = numpy_helper.from_array(np.require(value, requirements="C"), name)
    if name in index.initializers:
        index.initializers[name].CopyFrom(tensor)
        return
    node = index.producer.get(name)
    if node is None or node.op_type != "Constant":
        raise KeyError(f"{name!r} is not a constant of the graph")
    del node.attribute[:]
    node.attribute.append(onnx.helper.make_attribute("value", tensor))


def layer_weights(index: GraphIndex) -> dict[str, tuple[onnx.NodeProto, np.ndarray]]:
    """Float constant weights (rank >= 2) of Conv, ConvTranspose, Gemm and MatMul, with their reading
    node; normalisation parameters and 1-D biases are not listed."""
    found: dict[str, tuple[onnx.NodeProto, np.ndarray]] = {}
    for node in index.model.graph.node:
        if node.op_type not in LAYER_OP_TYPES:
            continue
        for name in node.input[:2]:
            if name and name not in found and index.is_constant(name):
                value = index.constant_value(name)
                if value is not None and value.ndim >= 2 and np.issubdtype(value.dtype, np.floating):
                    found[name] = (node, value)
    return found


def set_node_input(index: GraphIndex, node: onnx.NodeProto, idx: int, value: np.ndarray) -> GraphIndex:
    """Gives input `idx` of `node` the constant `value`. The constant is changed in place when this node
    is its only reader, otherwise the node gets a fresh initializer so other readers keep theirs.
    Returns the index to use from now on (rebuilt when the graph changed)."""
    name = node.input[idx] if idx < len(node.input) else ""
    if name and len(index.consumers[name]) == 1 and index.is_constant(name):
        set_constant(index, name, value)
        return index
    base = f"{node.output[0]}_input{idx}"
    new_name, n = base, 0
    names = index.tensor_names()
    while new_name in names:
        n += 1
        new_name = f"{base}_{n}"
    index.model.graph.initializer.append(numpy_helper.from_array(np.require(value, requirements="C"), new_name))
    while len(node.input) <= idx:
        node.input.append("")
    node.input[idx] = new_name
    return GraphIndex(index.model)
