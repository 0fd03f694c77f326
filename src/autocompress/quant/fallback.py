"""Accuracy-driven fallback: return the quantized ops that hurt most to float until the metric drop is met.

Sensitivity of a node = mean squared error of the model outputs, against the float model, when only that node is
quantized (on a few calibration batches). Nodes are then returned to float in order of sensitivity, doubling
the count until the metric drop is within bounds, then bisecting to the fewest (as NNCF's and INC's
accuracy-aware tuning do, with ONNX Runtime as the judge).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import onnx

from autocompress.runtime.ort import Predictor

log = logging.getLogger(__name__)


def output_error(
    reference: list[list[np.ndarray]], model: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]]
) -> float:
    predictor = Predictor(model)
    errors = []
    for ref_outputs, feed in zip(reference, feeds):
        for ref, out in zip(ref_outputs, predictor(feed)):
            if np.issubdtype(ref.dtype, np.floating):
                errors.append(float(np.mean((ref.astype(np.float64) - out) ** 2)))
    return float(np.mean(errors)) if errors else 0.0


def node_sensitivity(
    float_model: onnx.ModelProto,
    nodes: Sequence[str],
    quantize_only: Callable[[list[str]], onnx.ModelProto],
    feeds: Sequence[dict[str, np.ndarray]],
) -> dict[str, float]:
    """Output MSE when only each node is quantized; `quantize_only(skip_names)` quantizes all but skip_names."""
    reference_predictor = Predictor(float_model)
    reference = [reference_predictor(feed) for feed in feeds]
    scores = {}
    for name in nodes:
        others = [n for n in nodes if n != name]
        scores[name] = output_error(reference, quantize_only(others), feeds)
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def fewest_float_nodes(
    ranked: Sequence[str], drop_of: Callable[[list[str]], float], max_drop: float
) -> tuple[list[str], float]:
    """Smallest prefix of `ranked` whose return to float gives drop <= max_drop (doubling, then bisection).

    `drop_of(float_nodes)` quantizes all nodes but float_nodes and returns the metric drop. If even all nodes
    in float miss the bound, returns every node and its drop.
    """
    drops: dict[int, float] = {}

    def drop(k: int) -> float:
        if k not in drops:
            drops[k] = drop_of(list(ranked[:k]))
            log.info("fallback: %d op(s) in float -> metric drop %.6g", k, drops[k])
        return drops[k]

    if drop(0) <= max_drop:
        return [], drops[0]
    hi = 1
    while hi < len(ranked) and drop(hi) > max_drop:
        hi *= 2
    hi = min(hi, len(ranked))
    if drop(hi) > max_drop:
        return list(ranked), drops[hi]
    lo = hi // 2  # drop(lo) > max_drop (or lo == 0, already known to fail)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if drop(mid) <= max_drop:
            hi = mid
        else:
            lo = mid
    return list(ranked[:hi]), drops[hi]
