"""Scalar affine ops after a quantized tensor, absorbed into its quantization parameters.

PP-OCRv4 det (PPLCNetV3) ends every hardswish with a learnable scalar scale and offset, y = c * t + b, that nothing
can fold: a depthwise Conv with zero padding follows, and padding with b is not padding with 0. Quantized as they
stand, each is a QLinearMul and a QLinearAdd over a whole feature map: 48 integer kernels, a fifth of the int8
model's time. But an integer tensor q that means y with (scale s, zero point z) means t = (y - b) / c with
(s / c, z + b / s): the producer of t writes q with the second pair, the consumers of y read it with the first,
and the two ops disappear. Exact but for rounding z + b / s to an integer (at most half a step of y); possible
only for asymmetric uint8 (a symmetric zero point must stay 0), c > 0, and z + b / s inside [0, 255].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from autocompress.graph.index import GraphIndex
from autocompress.graph.naming import record_fold


@dataclass(frozen=True)
class AffineChain:
    """t -> [Mul by c] -> [Add b] -> y, each op planned for quantization, every link read by the next alone."""

    source: str  # t
    output: str  # y
    scale: float  # c
    offset: float  # b
    nodes: tuple[onnx.NodeProto, ...]


def _scalar(index: GraphIndex, node: onnx.NodeProto, data: str) -> float | None:
    """The node's other input as one float, when it is a scalar constant."""
    others = [name for name in node.input if name != data]
    if len(node.input) != 2 or len(others) != 1:
        return None
    value = index.constant_value(others[0])
    if value is None or value.size != 1 or not np.issubdtype(value.dtype, np.floating):
        return None
    return float(value.reshape(()))


def _step(index: GraphIndex, tensor: str, planned: set[str]) -> onnx.NodeProto | None:
    """The one planned Mul/Add reading `tensor`, when nothing else reads it."""
    readers = index.consumers.get(tensor, [])
    if len(readers) != 1 or tensor in index.graph_outputs:
        return None
    node = readers[0]
    return node if node.op_type in ("Mul", "Add") and node.output[0] in planned else None


def affine_chains(index: GraphIndex, quantized_outputs: dict[str, onnx.NodeProto]) -> list[AffineChain]:
    """Chains that start at a quantized output t (of a node that is not itself part of a chain).

    `quantized_outputs` maps each tensor quantized after a planned node to that node."""
    planned = set(quantized_outputs)
    chains = []
    for source, producer in quantized_outputs.items():
        if producer.op_type in ("Mul", "Add") and _scalar(index, producer, producer.input[0]) is not None:
            continue  # a chain link itself; its chain starts further up
        scale, offset, nodes, tensor = 1.0, 0.0, [], source
        for op in ("Mul", "Add"):
            node = _step(index, tensor, planned)
            value = _scalar(index, node, tensor) if node is not None and node.op_type == op else None
            if value is None:
                continue
            if op == "Mul":
                scale = value
            else:
                offset = value
            nodes.append(node)
            tensor = node.output[0]
        if nodes and scale > 0 and tensor not in index.graph_outputs:
            chains.append(AffineChain(source, tensor, scale, offset, tuple(nodes)))
    return chains


def record_absorbed(index: GraphIndex, chain: AffineChain) -> None:
    """The chain's Mul/Add vanish into the quantization of t: their names now name t's producer."""
    producer = index.producer.get(chain.source)
    for node in chain.nodes if producer is not None else ():
        record_fold(producer, node)
