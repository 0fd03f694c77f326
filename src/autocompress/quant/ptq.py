"""Post-training quantization: statistics + range algorithm + weight quantization -> QDQ model.

The float model is first rewritten by fold_conv_affine (exact; it only removes tensors), so statistics
collected on the original model for calibration_tensors(model) cover what gets quantized.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import onnx

from autocompress.errors import ConfigError, DataError
from autocompress.quant.fold import fold_conv_affine
from autocompress.quant.qdq import (
    NodeDecision,
    QDQOptions,
    WeightCache,
    checked_plan,
    plan_quantization,
    write_qdq_model,
)
from autocompress.quant.ranges import activation_ranges, activation_thresholds
from autocompress.quant.statistics import ActivationStatistics


@dataclass
class PTQInfo:
    """What quantize_post_training did, for reports and search logs."""

    algo: str
    batch_num: int
    quantized_op_counts: dict[str, int]
    quantized_nodes: list[str]
    skipped_nodes: list[str]
    thresholds: dict[str, float]
    ranges: dict[str, tuple[float, float]]
    #: the writer's verdict per node (int8, or float and why), for the report's per-op table
    decisions: list[NodeDecision] = field(default_factory=list)


def quantize_post_training(
    model: onnx.ModelProto,
    statistics: ActivationStatistics,
    options: QDQOptions = QDQOptions(),
    algo: str = "KL",
    hist_percent: float = 0.99999,
    batch_num: int | None = None,
    weight_cache: WeightCache | None = None,
    **settings: Any,
) -> tuple[onnx.ModelProto, PTQInfo]:
    """Quantize model with ranges from the first batch_num batches of statistics (all when None).

    `settings` replace single fields of `options` (e.g. bias_correct=True), for a search that varies them.
    statistics must cover calibration_tensors(model, options) for the same options. A search passes one
    weight_cache dict to every call so the int weights (and their bias correction) are computed once.
    Raises ConfigError when no node of the requested op types can be quantized.
    """
    options = replace(options, **settings)
    model, _ = fold_conv_affine(model, keep=options.skip_names)
    plan = checked_plan(model, options)
    if statistics.activation_bits != options.activation_bits:
        raise ConfigError(
            f"statistics were collected for activation_bits={statistics.activation_bits}, not {options.activation_bits}"
        )
    missing = [t for t in plan.activation_tensors if t not in statistics.tensor_names]
    if missing:
        raise DataError(f"statistics lack tensors {missing[:10]}: collect them with calibration_tensors(...)")
    used = statistics.prefix(batch_num)
    thresholds = activation_thresholds(used, algo, hist_percent)
    ranges = activation_ranges(used, plan.activation_tensors, thresholds, options.symmetric_activations)
    quantized, plan = write_qdq_model(model, ranges, options, weight_cache=weight_cache)
    info = PTQInfo(
        algo=algo,
        batch_num=used.num_batches,
        quantized_op_counts=dict(Counter(p.node.op_type for p in plan.nodes)),
        quantized_nodes=[p.node.name for p in plan.nodes],
        skipped_nodes=plan.skipped_nodes,
        thresholds={k: thresholds[k] for k in plan.activation_tensors},
        ranges=ranges,
        decisions=plan.decisions,
    )
    return quantized, info


def all_float(info: PTQInfo) -> PTQInfo:
    """The record of `info`'s model with every quantized node back in float: the float model itself."""
    return replace(
        info,
        quantized_op_counts={},
        quantized_nodes=[],
        thresholds={},
        ranges={},
        skipped_nodes=[*info.skipped_nodes, *info.quantized_nodes],
    )


def calibration_tensors(model: onnx.ModelProto, options: QDQOptions = QDQOptions()) -> list[str]:
    """The activation tensors whose statistics quantize_post_training needs, for collect_statistics."""
    return plan_quantization(fold_conv_affine(model, keep=options.skip_names)[0], options).activation_tensors
