"""Analysis copies of a graph: weight arithmetic folded into constants, and shapes inferred.

Pruning analyses need per-layer constants and tensor ranks/sizes; exporters leave both implicit
(deduplicated weights read through Identity, biases reshaped at run time, shapes computed from Shape
ops). Everything here works on a copy and never changes the user's model.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import uses_external_data
from onnx.reference import ReferenceEvaluator

from autocompress.graph.external import is_on_disk
from autocompress.graph.index import GraphIndex
from autocompress.graph.symbolic_shapes import inferred_shapes

logger = logging.getLogger(__name__)


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
    _fold_constants(model_copy)
    return inferred_shapes(model_copy)


_NO_FOLD = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "If", "Loop", "Scan"}
_MAX_FOLDED_ELEMENTS = 1 << 22


def _fold_constants(model: onnx.ModelProto) -> None:
    """Evaluates nodes whose inputs are all constants into initializers named like their outputs.

    Exporters leave weight arithmetic in the graph: Identity nodes reading one deduplicated initializer
    (equal freshly initialised biases), Reshape of a bias to [1, C, 1, 1], Pad amounts computed by
    Cast/Concat. Folding them lets the analysis see per-layer constants it can slice."""
    index = GraphIndex(model)
    # the stubs of a weightless copy have no values and are not folded; weights left on disk (mapped) are
    known = {
        name: index.constant_value(name) for name, t in index.initializers.items()
        if not uses_external_data(t) or is_on_disk(t)
    }
    folded, kept = [], []
    for node in model.graph.node:
        if node.op_type == "Constant":
            known[node.output[0]] = index.constant_value(node.output[0])
            kept.append(node)
            continue
        inputs = [n for n in node.input if n]
        foldable = inputs and node.op_type not in _NO_FOLD and node.domain in ("", "ai.onnx")
        if foldable and all(known.get(n) is not None for n in inputs):
            try:
                values = ReferenceEvaluator(_single_node_model(model, node, known)).run(None, {})
            except Exception as exc:  # leave the node as it is; the analysis treats it as a runtime op
                logger.debug("not folding %s: %s", node.op_type, exc)
                values = None
            if values is not None and all(np.asarray(v).size <= _MAX_FOLDED_ELEMENTS for v in values):
                for name, value in zip(node.output, values):
                    known[name] = np.asarray(value)
                    folded.append(numpy_helper.from_array(np.asarray(value), name))
                continue
        kept.append(node)
    if not folded:
        return
    read = {n for node in kept for n in node.input} | {o.name for o in model.graph.output}
    # constants only the folded nodes read are dead now
    kept = [n for n in kept if n.op_type != "Constant" or n.output[0] in read]
    initializers = [t for t in list(model.graph.initializer) + folded if t.name in read]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)


def _single_node_model(model: onnx.ModelProto, node: onnx.NodeProto, known: dict) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(known[n], n) for n in dict.fromkeys(i for i in node.input if i)]
    outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output]
    graph = onnx.helper.make_graph([node], "fold", [], outputs, inits)
    return onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


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
