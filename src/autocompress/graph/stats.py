"""Serialized size of a model, for reports (parameter and MAC counts live in prune.stats)."""

from __future__ import annotations

import onnx

from autocompress.graph.large import serialized_size


def model_size_mb(model: onnx.ModelProto) -> float:
    return serialized_size(model) / 1e6
