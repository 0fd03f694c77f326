"""Serialized size of a model, for reports (parameter and MAC counts live in prune.stats)."""

from __future__ import annotations

import onnx


def model_size_mb(model: onnx.ModelProto) -> float:
    return model.ByteSize() / 1e6
