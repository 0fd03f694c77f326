"""Analysis copies of a graph: weight arithmetic folded into constants, and shapes inferred.

Pruning analyses need per-layer constants and tensor ranks/sizes; exporters leave both implicit
(deduplicated weights read through Identity, biases reshaped at run time, shapes computed from Shape
ops). Everything here works on a copy and never changes the user's model.
"""

from __future__ import annotations

import onnx

from autocompress.graph.fold_constants import fold_constants
from autocompress.graph.index import GraphIndex
from autocompress.graph.symbolic_shapes import inferred_shapes


def shape_inferred(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None) -> onnx.ModelProto:
    """Shape-inferred copy of the model, with graph inputs fixed to input_shapes where given."""
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    for inp in model_copy.graph.input:
        if input_shapes and inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for dim, value in zip(dims, input_shapes[inp.name]):
                dim.Clear()
                dim.dim_value = int(value)
    fold_constants(model_copy)
    return inferred_shapes(model_copy)


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    shapes: dict[str, list[int | None]] = {}
    graph = model.graph
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    index = GraphIndex(model)
    for node in graph.node:
        if node.op_type == "Constant":
            value = index.constant_value(node.output[0])
            if value is not None:
                shapes[node.output[0]] = list(value.shape)
    return shapes
