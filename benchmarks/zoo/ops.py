"""How much of a model runs in int8: its integer-kernel ops against the quantizable ops it leaves in float.

The outcome "int8" only says that some quantization op is present; a model with one int8 Conv out of fifty is
"int8" too. The table's `ops int8 / float` cell tells the two apart. It counts the saved graph (subgraphs of
If/Loop included), the form a user deploys: QOperator ops (QLinear*, ConvInteger, MatMulInteger, ...) and the
QDQ form, where ONNX Runtime fuses a Conv/MatMul/Gemm fed by a DequantizeLinear weight into an integer kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx

#: Ops that are integer kernels in the graph as saved (quantize_dynamic's and the QOperator format's).
INTEGER_OPS = frozenset(
    {"ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm", "QAttention"}
)
#: The ops every quantizer targets: int8 when their weight is quantized, float otherwise.
QUANTIZABLE_OPS = frozenset({"Conv", "MatMul", "Gemm"})


@dataclass(frozen=True)
class OpCount:
    """Ops that run in int8, and quantizable ops (Conv/MatMul/Gemm) left in float."""

    int8: int
    in_float: int

    def cell(self) -> str:
        return f"{self.int8} / {self.in_float}"


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph below it (If branches, Loop and Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subgraphs:
                yield from _graphs(sub)


def _weight_inputs(node: onnx.NodeProto) -> list[str]:
    """Where a quantizable op's weight can come from: Conv's and Gemm's input 1, either side of a MatMul."""
    return list(node.input[:2]) if node.op_type == "MatMul" else list(node.input[1:2])


def _is_int8(node: onnx.NodeProto, dequantized: set[str]) -> bool:
    if node.op_type.startswith("QLinear") or node.op_type in INTEGER_OPS:
        return True
    return node.op_type in QUANTIZABLE_OPS and any(name in dequantized for name in _weight_inputs(node))


def count_graph(graph: onnx.GraphProto) -> OpCount:
    """The counts of a graph and its subgraphs. A DequantizeLinear output is visible in the subgraphs below it
    (an If branch reads its parent's tensors), so the outputs are collected over the whole tree first."""
    graphs = list(_graphs(graph))
    dequantized = {out for g in graphs for node in g.node if node.op_type == "DequantizeLinear" for out in node.output}
    nodes = [node for g in graphs for node in g.node]
    int8 = sum(_is_int8(node, dequantized) for node in nodes)
    left = sum(node.op_type in QUANTIZABLE_OPS and not _is_int8(node, dequantized) for node in nodes)
    return OpCount(int8, left)


def count_ops(path: Path) -> OpCount:
    """The counts of the model file at `path` (its external weights are not read: only the graph matters)."""
    return count_graph(onnx.load(str(path), load_external_data=False).graph)
