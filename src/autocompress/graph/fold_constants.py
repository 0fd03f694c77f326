"""One constant folder: nodes computed from constants alone become initializers named like their outputs.

Exporters leave weight arithmetic in the graph: Identity nodes reading one deduplicated initializer (equal freshly
initialised biases), Reshape of a bias to [1, C, 1, 1], Transpose of a MatMul weight, Pad amounts computed by
Cast/Concat. Folding them lets an analysis see per-layer constants it can slice. onnx's reference evaluator runs
each such node once; weights left on disk (graph/external.py) are read through their file mapping, and a result
larger than `max_elements` (an Expand or ConstantOfShape that blows a scalar up) stays a node, so no huge constant
is ever made. Surviving nodes keep their names and metadata (graph/naming.py): the nodes are named before any is
removed, so each keeps the stable name it had in the unfolded model.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.external_data_helper import uses_external_data
from onnx.reference import ReferenceEvaluator

from autocompress.graph.external import is_on_disk
from autocompress.graph.index import GraphIndex
from autocompress.graph.naming import name_nodes

logger = logging.getLogger(__name__)

#: Largest folded result, in elements (16 MB of float32).
MAX_FOLDED_ELEMENTS = 1 << 22
#: Constant inputs up to this size are given to shape inference as values (shapes, axes, repeats, pads), so it can
#: size a result before it is computed; larger ones are fed by reference, not copied into a protobuf.
_VALUE_INPUT_ELEMENTS = 1 << 10
#: Quantization nodes carry meaning a folded tensor would lose; control flow and random ops are not functions of
#: their inputs alone.
_NO_FOLD = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "If",
        "Loop",
        "Scan",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
_DEFAULT_DOMAINS = ("", "ai.onnx")


def fold_constants(model: onnx.ModelProto, max_elements: int = MAX_FOLDED_ELEMENTS) -> onnx.ModelProto:
    """Fold in place every node whose inputs are all constants and whose results have at most `max_elements`
    elements each; constants only folded nodes read are removed. Returns `model`."""
    name_nodes(model)
    known = _constants(model)
    folded: list[onnx.TensorProto] = []
    kept: list[onnx.NodeProto] = []
    for node in model.graph.node:
        values = _evaluate(model, node, known, max_elements) if _foldable(node, known) else None
        if values is None:
            kept.append(node)
            continue
        for name, value in zip([name for name in node.output if name], values):
            known[name] = value
            folded.append(numpy_helper.from_array(value, name))
    if folded:
        _replace_nodes(model, kept, folded)
    return model


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Values of initializers and Constant outputs. An initializer listed as a graph input is a default the caller
    may override, not a constant; the weightless stubs of graph/large.py have no values."""
    index = GraphIndex(model)
    inputs = {i.name for i in model.graph.input}
    known = {
        name: index.constant_value(name)
        for name, tensor in index.initializers.items()
        if name not in inputs and (not uses_external_data(tensor) or is_on_disk(tensor))
    }
    for node in model.graph.node:
        value = index.constant_value(node.output[0]) if node.op_type == "Constant" else None
        if value is not None:
            known[node.output[0]] = value
    return known


def _foldable(node: onnx.NodeProto, known: dict[str, np.ndarray]) -> bool:
    inputs = [name for name in node.input if name]
    return (
        bool(inputs)
        and node.op_type not in _NO_FOLD
        and node.domain in _DEFAULT_DOMAINS
        and all(name in known for name in inputs)
    )


def _evaluate(
    model: onnx.ModelProto, node: onnx.NodeProto, known: dict[str, np.ndarray], max_elements: int
) -> list[np.ndarray] | None:
    """The node's results, or None where it cannot be evaluated or a result would exceed max_elements."""
    try:
        single, feeds = _single_node_model(model, node, known)
        if _inferred_elements(single) > max_elements:
            return None
        values = ReferenceEvaluator(single).run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - the node stays; every consumer treats it as a runtime op
        logger.debug("not folding %s %r: %s", node.op_type, node.name, exc)
        return None
    if not all(isinstance(v, (np.ndarray, np.generic)) for v in values):
        return None  # sequences and optionals are no tensors
    values = [np.asarray(v) for v in values]
    return values if all(v.size <= max_elements for v in values) else None


def _single_node_model(
    model: onnx.ModelProto, node: onnx.NodeProto, known: dict[str, np.ndarray]
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A model of `node` alone: small constant inputs as initializers, large ones as graph inputs fed by reference."""
    names = list(dict.fromkeys(name for name in node.input if name))
    small = [name for name in names if known[name].size <= _VALUE_INPUT_ELEMENTS]
    feeds = {name: known[name] for name in names if name not in small}
    inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
        for name, value in feeds.items()
    ]
    outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
    inits = [numpy_helper.from_array(known[name], name) for name in small]
    graph = helper.make_graph([node], "fold", inputs, outputs, inits)
    single = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    return single, feeds


def _inferred_elements(single: onnx.ModelProto) -> int:
    """Elements of the largest result shape inference can size, 0 where it cannot."""
    try:
        inferred = onnx.shape_inference.infer_shapes(single, data_prop=True)
    except Exception:  # noqa: BLE001 - sized after evaluation instead
        return 0
    largest = 0
    for output in inferred.graph.output:
        dims = output.type.tensor_type.shape.dim
        if output.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            largest = max(largest, int(np.prod([d.dim_value for d in dims], dtype=np.int64)))
    return largest


def _replace_nodes(model: onnx.ModelProto, kept: list[onnx.NodeProto], folded: list[onnx.TensorProto]) -> None:
    """The graph with `kept` as its nodes and the folded tensors that are still read as initializers; constants
    that only folded nodes read are dropped, the ones nothing read before stay."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    read_before = {name for node in graph.node for name in node.input} | outputs
    read = {name for node in kept for name in node.input} | outputs
    dead = read_before - read
    del graph.node[:]
    graph.node.extend(n for n in kept if n.op_type != "Constant" or n.output[0] not in dead)
    for i in reversed([i for i, t in enumerate(graph.initializer) if t.name in dead]):
        del graph.initializer[i]  # one by one: the weights that stay are not copied
    graph.initializer.extend(t for t in folded if t.name in read)
    for i in reversed([i for i, v in enumerate(graph.value_info) if v.name in dead]):
        del graph.value_info[i]
