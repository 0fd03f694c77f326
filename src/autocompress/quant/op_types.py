"""ONNX op types the quantizer can handle, and the Paddle op names PaddleSlim configs use for them.

Only op types whose QDQ pattern ONNX Runtime fuses into an integer kernel are listed: quantizing
anything else adds Quantize/Dequantize pairs that cost time and accuracy and gain nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from autocompress.errors import ConfigError
from autocompress.graph.op_facts import INTEGER_KERNEL_OP_TYPES, LAYER_OP_TYPES

# Ops with a weight input (int8 weight initializer; the others quantize all their inputs as activations).
WEIGHT_QUANTIZE_OP_TYPES: tuple[str, ...] = tuple(op for op in INTEGER_KERNEL_OP_TYPES if op in LAYER_OP_TYPES)

# Cheap ops between weight ops, quantized by default (beyond PaddleSlim's conv2d/depthwise_conv2d/mul): ORT
# runs them as QLinearAdd/QLinearMul/QLinearConcat/QLinearGlobalAveragePool or uint8 pooling instead of
# float ops with a DequantizeLinear before and a QuantizeLinear after. On PP-OCRv4 det (mostly the Add/Mul
# of hardswish) that took the CPU time at 1 thread from 1.04x to 0.74x that of ORT quantize_static's model.
CHEAP_QUANTIZE_OP_TYPES: tuple[str, ...] = (
    "Add",
    "Mul",
    "Concat",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
)

DEFAULT_QUANTIZE_OP_TYPES: tuple[str, ...] = WEIGHT_QUANTIZE_OP_TYPES + CHEAP_QUANTIZE_OP_TYPES

# Every other op with an integer kernel (graph/op_facts.py: Resize, Sigmoid, LeakyRelu) is added by
# is_full_quantize only, as in PaddleSlim: ORT runs them in uint8 too, but they usually sit at a head or an
# upsampling path (a probability Sigmoid, a Resize into a Concat) where rounding shows most.
FULL_QUANTIZE_EXTRA_OP_TYPES: tuple[str, ...] = tuple(
    op for op in INTEGER_KERNEL_OP_TYPES if op not in DEFAULT_QUANTIZE_OP_TYPES
)

QUANTIZABLE_OP_TYPES: tuple[str, ...] = DEFAULT_QUANTIZE_OP_TYPES + FULL_QUANTIZE_EXTRA_OP_TYPES

WEIGHT_OP_TYPES: frozenset[str] = frozenset(WEIGHT_QUANTIZE_OP_TYPES)

PADDLE_TO_ONNX_OP_TYPES: dict[str, tuple[str, ...]] = {
    "conv2d": ("Conv",),
    "depthwise_conv2d": ("Conv",),
    "conv2d_transpose": ("ConvTranspose",),
    "depthwise_conv2d_transpose": ("ConvTranspose",),
    "mul": ("MatMul", "Gemm"),
    "matmul": ("MatMul", "Gemm"),
    "matmul_v2": ("MatMul", "Gemm"),
    "fc": ("Gemm", "MatMul"),
    "elementwise_add": ("Add",),
    "elementwise_mul": ("Mul",),
    "concat": ("Concat",),
    "pool2d": ("MaxPool", "AveragePool", "GlobalAveragePool"),
    "bilinear_interp": ("Resize",),
    "bilinear_interp_v2": ("Resize",),
    "nearest_interp": ("Resize",),
    "nearest_interp_v2": ("Resize",),
    "sigmoid": ("Sigmoid",),
    "leaky_relu": ("LeakyRelu",),
}


def normalize_op_types(names: Iterable[str] | None, is_full_quantize: bool = False) -> tuple[str, ...]:
    """ONNX op types for a user list that may mix Paddle names (conv2d) and ONNX names (Conv).

    None means the default set; is_full_quantize adds every extra type. Order is kept, duplicates dropped.
    """
    requested = list(DEFAULT_QUANTIZE_OP_TYPES if names is None else ([names] if isinstance(names, str) else names))
    if is_full_quantize:
        requested += list(QUANTIZABLE_OP_TYPES)
    result: list[str] = []
    for name in requested:
        if name in PADDLE_TO_ONNX_OP_TYPES:
            onnx_types = PADDLE_TO_ONNX_OP_TYPES[name]
        elif name in QUANTIZABLE_OP_TYPES:
            onnx_types = (name,)
        else:
            raise ConfigError(
                f"quantize_op_types: unknown op type {name!r}; known Paddle names: "
                f"{sorted(PADDLE_TO_ONNX_OP_TYPES)}; known ONNX op types: {list(QUANTIZABLE_OP_TYPES)}"
            )
        result.extend(t for t in onnx_types if t not in result)
    return tuple(result)
