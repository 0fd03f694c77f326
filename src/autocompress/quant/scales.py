"""The quantization grid: which bit widths the QDQ writer can store, and an activation range's scale and zero point.

The config, the QDQ writer and the fake-quant modules all read this module, so a config that loads is one the
writer can export, and a range trained with fake-quant exports to exactly the grid it was trained on.
"""

from __future__ import annotations

import math

import numpy as np

#: ONNX Runtime's integer kernels take 8-bit activations only.
SUPPORTED_ACTIVATION_BITS = (8,)
#: Weights are stored as int8: 2..8 bits is a narrower grid inside int8.
SUPPORTED_WEIGHT_BITS = tuple(range(2, 9))
#: Scale of a tensor that is constantly zero: any positive scale represents it exactly.
ZERO_RANGE_SCALE = 1e-8 / 127.0


def unsupported_bits(key: str, bits: int) -> str | None:
    """Why `bits` cannot be stored for `key` ("activation_bits" or "weight_bits"), or None when it can."""
    if key == "activation_bits" and bits not in SUPPORTED_ACTIVATION_BITS:
        return (
            f"activation_bits={bits} is not supported: ONNX Runtime's integer kernels take 8-bit activations only; "
            f"allowed: {list(SUPPORTED_ACTIVATION_BITS)}"
        )
    if key == "weight_bits" and bits not in SUPPORTED_WEIGHT_BITS:
        return (
            f"weight_bits={bits} is not supported: weights are stored as int8, so "
            f"{SUPPORTED_WEIGHT_BITS[0]}..{SUPPORTED_WEIGHT_BITS[-1]} bits (a narrower grid inside int8) are allowed"
        )
    return None


def activation_qparams(low: float, high: float, symmetric: bool, bits: int = 8) -> tuple[float, int, int, int]:
    """(scale, zero point, qmin, qmax) of an activation range: symmetric signed with zero point 0 (TensorRT), or
    asymmetric unsigned over a range widened to hold 0 (ORT CPU).

    Computed in double precision and rounded to float32 once, as the QDQ writer stores the scale.
    """
    if symmetric:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale, zero_point = max(abs(low), abs(high)) / qmax, 0
    else:
        qmin, qmax = 0, 2**bits - 1
        low, high = min(low, 0.0), max(high, 0.0)
        scale = (high - low) / qmax
        zero_point = 0
        if math.isfinite(scale) and scale > 0:
            zero_point = int(min(max(round(-low / scale), qmin), qmax))
    if not math.isfinite(scale) or scale <= 0:
        scale = ZERO_RANGE_SCALE
    return float(np.float32(scale)), zero_point, qmin, qmax
