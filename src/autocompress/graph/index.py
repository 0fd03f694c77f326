"""Producer/consumer queries over an ONNX graph.

Passes ask "who makes this tensor", "who reads it" and "is it a constant" many times; the index
answers in O(1). It is a snapshot: rebuild it after a pass changes the graph.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property

import numpy as np
import onnx
from onnx import numpy_helper

from autocompress.graph.external import tensor_array
from autocompress.graph.naming import name_table, stable_names


class GraphIndex:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        graph = model.graph
        self.initializers: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        #: stable node name (graph/naming.py) -> node
        self.nodes_by_name: dict[str, onnx.NodeProto] = dict(zip(stable_names(graph.node), graph.node))
        for node in graph.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.graph_inputs = [i.name for i in graph.input if i.name not in self.initializers]
        self.graph_outputs = [o.name for o in graph.output]

    def is_constant(self, name: str) -> bool:
        """True for initializers and outputs of Constant nodes."""
        if name in self.initializers:
            return True
        node = self.producer.get(name)
        return node is not None and node.op_type == "Constant"

    def constant_value(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant output, else None."""
        if name in self.initializers:
            return tensor_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name == "value_float":
                    return np.array(attr.f, dtype=np.float32)
                if attr.name == "value_floats":
                    return np.array(list(attr.floats), dtype=np.float32)
                if attr.name == "value_int":
                    return np.array(attr.i, dtype=np.int64)
                if attr.name == "value_ints":
                    return np.array(list(attr.ints), dtype=np.int64)
        return None

    def tensor_names(self) -> set[str]:
        """Every tensor name a user may reference: inputs, initializers, node outputs."""
        names = set(self.graph_inputs) | set(self.initializers) | set(self.producer)
        return names

    @cached_property
    def _name_table(self) -> dict[str, list[str]]:
        return name_table(self.model)

    def referable_tensors(self) -> dict[str, str]:
        """Every name a user may give for a tensor -> the tensor: tensor names, and node names (stable, original
        or folded in) for the node's first output."""
        found = {name: name for name in self.tensor_names()}
        for alias, names in self._name_table.items():
            node = self.nodes_by_name[names[0]]
            if alias not in found and len(names) == 1 and node.output and node.output[0]:
                found[alias] = node.output[0]
        return found


def attribute(node: onnx.NodeProto, name: str, default=None):
    """The python value of a node attribute, or default."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default
