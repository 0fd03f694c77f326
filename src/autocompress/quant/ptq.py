"""Post-training quantization: statistics + range algorithm + weight quantization -> QDQ model.

The float model is first rewritten by fold_conv_affine (exact; it only removes tensors), so statistics
collected on the original model for calibration_tensors(model) cover what gets quantized.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from autocompress.errors import ConfigError, DataError
from autocompress.quant.fold import fold_conv_affine
from autocompress.quant.qdq import QDQOptions, WeightCache, checked_plan, plan_quantization, write_qdq_model
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


def quantize_post_training(
    model: onnx.ModelProto,
    statistics: ActivationStatistics,
    algo: str = "KL",
    hist_percent: float = 0.99999,
    weight_quantize_type: str = "channel_wise_abs_max",
    bias_correct: bool = False,
    quantize_op_types: Sequence[str] | None = None,
    is_full_quantize: bool = False,
    skip_names: Sequence[str] = (),
    not_quant_pattern: Sequence[str] = ("skip_quant",),
    activation_bits: int = 8,
    weight_bits: int = 8,
    symmetric_activations: bool = False,
    float_stem: bool = False,
    batch_num: int | None = None,
    weight_cache: WeightCache | None = None,
) -> tuple[onnx.ModelProto, PTQInfo]:
    """Quantize model with ranges from the first batch_num batches of statistics (all when None).

    statistics must cover calibration_tensors(model, options) for the same options. A search passes one
    weight_cache dict to every call so the int weights (and their bias correction) are computed once.
    Raises ConfigError when no node of the requested op types can be quantized.
    """
    options = QDQOptions(
        quantize_op_types=QDQOptions.quantize_op_types if quantize_op_types is None else tuple(quantize_op_types),
        is_full_quantize=is_full_quantize,
        skip_names=skip_names,
        not_quant_pattern=not_quant_pattern,
        activation_bits=activation_bits,
        weight_bits=weight_bits,
        weight_quantize_type=weight_quantize_type,
        symmetric_activations=symmetric_activations,
        bias_correct=bias_correct,
        float_stem=float_stem,
    )
    model, _ = fold_conv_affine(model, keep=options.skip_names)
    plan = checked_plan(model, options)
    if statistics.activation_bits != activation_bits:
        raise ConfigError(
            f"statistics were collected for activation_bits={statistics.activation_bits}, not {activation_bits}"
        )
    missing = [t for t in plan.activation_tensors if t not in statistics.tensor_names]
    if missing:
        raise DataError(f"statistics lack tensors {missing[:10]}: collect them with calibration_tensors(...)")
    used = statistics.prefix(batch_num)
    thresholds = activation_thresholds(used, algo, hist_percent)
    ranges = activation_ranges(used, plan.activation_tensors, thresholds, symmetric_activations)
    quantized, plan = write_qdq_model(model, ranges, options, weight_cache=weight_cache)
    info = PTQInfo(
        algo=algo,
        batch_num=used.num_batches,
        quantized_op_counts=dict(Counter(p.node.op_type for p in plan.nodes)),
        quantized_nodes=[p.node.name for p in plan.nodes],
        skipped_nodes=plan.skipped_nodes,
        thresholds={k: thresholds[k] for k in plan.activation_tensors},
        ranges=ranges,
    )
    return quantized, info


def calibration_tensors(model: onnx.ModelProto, options: QDQOptions = QDQOptions()) -> list[str]:
    """The activation tensors whose statistics quantize_post_training needs, for collect_statistics."""
    return plan_quantization(fold_conv_affine(model, keep=options.skip_names)[0], options).activation_tensors
