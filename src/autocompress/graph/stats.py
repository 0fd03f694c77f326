"""Size figures of a model for reports: serialized size and parameter count."""

from __future__ import annotations

import numpy as np
import onnx

#: QDQ scale/zero-point tensors and shape constants are not parameters.
_PARAM_MIN_ELEMENTS = 2


def model_size_mb(model: onnx.ModelProto) -> float:
    return model.ByteSize() / 1e6


def count_params(model: onnx.ModelProto) -> int:
    """Elements of weight-like initializers (float or integer tensors of at least two elements, not int64 shapes)."""
    total = 0
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.INT64:
            continue
        n = int(np.prod(tensor.dims)) if tensor.dims else 1
        if n >= _PARAM_MIN_ELEMENTS:
            total += n
    return total
