"""One table of facts about ONNX op types, read by quantization, pruning, distillation and the torch executor.

Which ops own a weight (and at which input), where its output and input channels lie, which inputs carry
activations, whether ONNX Runtime runs the op's QDQ pattern as an integer kernel (QLinearConv, QGemm,
QLinearMatMul, QLinearAdd, ...), and which constants training treats as weights. One frozen record per op type,
in the spirit of NNCF's ONNX metatypes; an op type missing from the table has none of these facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from autocompress.graph.index import attribute


@dataclass(frozen=True)
class WeightAxes:
    """Where a layer's weight holds its channels."""

    output: int  # the axis of output channels
    input: int  # the axis of input channels (per group)
    per_channel: bool = True  # whether `output` indexes output channels one to one (per-channel scales)


def _conv_axes(node: onnx.NodeProto, rank: int) -> WeightAxes:
    return WeightAxes(0, 1)  # W is [M, C/g, k...]


def _conv_transpose_axes(node: onnx.NodeProto, rank: int) -> WeightAxes:
    # W is [C, M/g, k...]: with groups, axis 1 holds each group's share of the output channels
    return WeightAxes(1, 0, attribute(node, "group", 1) == 1)


def _gemm_axes(node: onnx.NodeProto, rank: int) -> WeightAxes:
    return WeightAxes(0, 1) if attribute(node, "transB", 0) else WeightAxes(1, 0)  # B is [N, K] or [K, N]


def _matmul_axes(node: onnx.NodeProto, rank: int) -> WeightAxes:
    return WeightAxes(1, 0, rank == 2)  # a constant [K, N]; a batched weight has no single output axis


@dataclass(frozen=True)
class OpFacts:
    """What the passes need to know about one op type."""

    op_type: str
    #: input index of the constant weight a layer owns channels of (Conv W, Gemm B, MatMul's constant B)
    weight_input: int | None = None
    #: input index of the per-output-channel bias
    bias_input: int | None = None
    #: inputs that carry activations; None means every input (Add, Concat, ...)
    activation_inputs: tuple[int, ...] | None = (0,)
    #: ONNX Runtime fuses the op's QDQ pattern into an integer kernel
    integer_kernel: bool = False
    #: float constants it reads are trained as weights even with one element (a 1-channel bias)
    trainable: bool = False
    #: inputs holding running statistics (BatchNormalization's mean and variance): updated, not trained
    running_stat_inputs: tuple[int, ...] = ()
    axes: Callable[[onnx.NodeProto, int], WeightAxes] | None = None

    def weight_axes(self, node: onnx.NodeProto, weight_rank: int) -> WeightAxes | None:
        """Where node's weight (of rank weight_rank) holds its channels; None for ops without one."""
        return None if self.axes is None else self.axes(node, weight_rank)


def _layer(op_type: str, axes: Callable[[onnx.NodeProto, int], WeightAxes], **facts) -> OpFacts:
    return OpFacts(op_type, weight_input=1, integer_kernel=True, trainable=True, axes=axes, **facts)


_TABLE: tuple[OpFacts, ...] = (
    _layer("Conv", _conv_axes, bias_input=2),
    _layer("ConvTranspose", _conv_transpose_axes, bias_input=2),
    _layer("MatMul", _matmul_axes, activation_inputs=(0, 1)),
    _layer("Gemm", _gemm_axes, bias_input=2),
    *(OpFacts(op, activation_inputs=None, integer_kernel=True) for op in ("Add", "Mul", "Concat")),
    *(OpFacts(op, integer_kernel=True) for op in ("MaxPool", "AveragePool", "GlobalAveragePool")),
    *(OpFacts(op, integer_kernel=True) for op in ("Resize", "Sigmoid", "LeakyRelu")),
    OpFacts("BatchNormalization", trainable=True, running_stat_inputs=(3, 4)),
    *(OpFacts(op, trainable=True) for op in ("InstanceNormalization", "LayerNormalization", "GroupNormalization")),
    *(OpFacts(op, trainable=True, activation_inputs=None) for op in ("Einsum", "PRelu")),
)
_BY_TYPE = {facts.op_type: facts for facts in _TABLE}

#: Ops that own a weight's channels, in table order: Conv, ConvTranspose, MatMul, Gemm.
LAYER_OP_TYPES: tuple[str, ...] = tuple(f.op_type for f in _TABLE if f.weight_input is not None)
#: Ops ONNX Runtime runs as integer kernels from a QDQ pattern, in table order.
INTEGER_KERNEL_OP_TYPES: tuple[str, ...] = tuple(f.op_type for f in _TABLE if f.integer_kernel)
#: Ops whose float constant inputs are trained as weights whatever their size.
TRAINABLE_OP_TYPES: frozenset[str] = frozenset(f.op_type for f in _TABLE if f.trainable)


def op_facts(op_type: str) -> OpFacts:
    """The facts of op_type; an op type outside the table has no weight, no integer kernel, all inputs data."""
    return _BY_TYPE.get(op_type) or OpFacts(op_type, activation_inputs=None)


def weight_axes(node: onnx.NodeProto, weight_rank: int) -> WeightAxes | None:
    """Where the weight of node (a layer; None for other ops) holds its channels."""
    return op_facts(node.op_type).weight_axes(node, weight_rank)
