"""Bias correction of quantized weights (Banner et al., "Post-training 4-bit quantization", 2019).

Rounding shifts each output channel's weight mean (and changes its spread), which adds a systematic
error to the layer output. The target is the dequantized weight moved by the per-channel mean error
and, optionally, rescaled to the float std (as Paddle's freeze pass does). Paddle then re-rounds the
target on the same grid, which undoes any shift below half a step - the usual case - so nothing changes.
Here the target is rounded *sum-preserving* per channel: plain rounding, then the channel's integer
sum is moved to the rounded target sum by stepping the elements whose rounding residual was closest to
the other choice. The exported int8 values change and each channel's dequantized mean matches the target.
"""

from __future__ import annotations

import numpy as np

from autocompress.quant.weights import broadcast_scale, dequantize_weight, quantization_levels

_EPS = 1e-8


def _rows(values: np.ndarray, axis: int | None) -> np.ndarray:
    """values with the channel axis first and the rest flattened (one row for per-tensor)."""
    if axis is None:
        return values.reshape(1, -1)
    return np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)


def _from_rows(rows: np.ndarray, axis: int | None, shape: tuple[int, ...]) -> np.ndarray:
    if axis is None:
        return rows.reshape(shape)
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    return np.moveaxis(rows.reshape(moved), 0, axis)


def sum_preserving_round(target: np.ndarray, levels: int) -> np.ndarray:
    """Round each row of target to integers in [-levels, levels] whose row sum is round(row sum of target)."""
    q = np.clip(np.rint(target), -levels, levels)
    residual = target - q
    deficit = np.rint(target.sum(axis=1) - q.sum(axis=1)).astype(np.int64)
    for row, missing in enumerate(deficit):
        if missing == 0:
            continue
        step = 1 if missing > 0 else -1
        movable = np.nonzero(q[row] * step < levels)[0]
        order = movable[np.argsort(-step * residual[row, movable], kind="stable")]
        q[row, order[: abs(missing)]] += step
    return q


def bias_corrected_weight(
    weight: np.ndarray, q: np.ndarray, scale: np.ndarray, axis: int | None, bits: int, correct_std: bool = True
) -> np.ndarray:
    """New int8 weight whose dequantized channels match the float weight's mean (and std)."""
    dequant = dequantize_weight(q, scale, axis)
    float_rows, dequant_rows = _rows(weight.astype(np.float64), axis), _rows(dequant.astype(np.float64), axis)
    target = dequant_rows + (float_rows - dequant_rows).mean(axis=1, keepdims=True)
    if correct_std:
        target = target * (float_rows.std(axis=1) / (dequant_rows.std(axis=1) + _EPS))[:, None]
    scale_rows = _rows(np.broadcast_to(broadcast_scale(scale, axis, weight.ndim), weight.shape), axis)
    corrected = sum_preserving_round(target / scale_rows, quantization_levels(bits))
    return _from_rows(corrected, axis, weight.shape).astype(np.int8)
