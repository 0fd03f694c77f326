"""Symmetric signed weight quantization: per output channel (channel_wise_abs_max) or per tensor (abs_max)."""

from __future__ import annotations

import numpy as np
import onnx

from autocompress.errors import ConfigError
from autocompress.graph.op_facts import weight_axes

WEIGHT_QUANTIZE_TYPES = ("channel_wise_abs_max", "abs_max")


def weight_channel_axis(node: onnx.NodeProto, weight_rank: int) -> int | None:
    """The output-channel axis of the weight (input 1) of node, or None when only per-tensor is valid: a grouped
    ConvTranspose or a batched MatMul weight has no axis of whole output channels (graph/op_facts.py)."""
    axes = weight_axes(node, weight_rank)
    return axes.output if axes is not None and axes.per_channel else None


def quantization_levels(bits: int) -> int:
    """Largest magnitude of the symmetric signed grid: 127 for 8 bits ([-127, 127], no -128)."""
    return 2 ** (bits - 1) - 1


def weight_scales(weight: np.ndarray, axis: int | None, bits: int) -> np.ndarray:
    """abs max / levels per channel along axis (or one scalar).

    All-zero channels, and channels so small that the scale would not be a normal float32 (denormal weights,
    which CPUs flush to zero anyway), get scale 1: their weights quantize to 0 and 1/scale stays finite."""
    if axis is None:
        abs_max = np.array(np.max(np.abs(weight)), dtype=np.float64)
    else:
        reduce_axes = tuple(a for a in range(weight.ndim) if a != axis)
        abs_max = np.max(np.abs(weight), axis=reduce_axes).astype(np.float64)
    scale = abs_max / quantization_levels(bits)
    return np.where(scale >= np.finfo(np.float32).tiny, scale, 1.0).astype(np.float32)


def broadcast_scale(scale: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    """The scale shaped to broadcast against a weight of rank ndim."""
    if axis is None or scale.ndim == 0:
        return scale
    shape = [1] * ndim
    shape[axis] = scale.shape[0]
    return scale.reshape(shape)


def quantize_weight(weight: np.ndarray, scale: np.ndarray, axis: int | None, bits: int) -> np.ndarray:
    """round(w / scale) clipped to [-levels, levels], stored as int8."""
    levels = quantization_levels(bits)
    q = np.rint(weight / broadcast_scale(scale, axis, weight.ndim))
    return np.clip(q, -levels, levels).astype(np.int8)


def dequantize_weight(q: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    return (q.astype(np.float32) * broadcast_scale(scale, axis, q.ndim)).astype(np.float32)


def check_weight_quantize_type(weight_quantize_type: str) -> None:
    if weight_quantize_type not in WEIGHT_QUANTIZE_TYPES:
        raise ConfigError(
            f"weight_quantize_type: unknown value {weight_quantize_type!r}; allowed: {list(WEIGHT_QUANTIZE_TYPES)}"
        )
