"""2:4 semi-structured sparsity (ASP): in every run of 4 consecutive weights along the input
dimension keep the 2 of largest magnitude. Sparse tensor cores and sparse CPU kernels execute this
pattern at close to half the cost, and the regular pattern costs less accuracy than removing channels.

Which axis is the input dimension: Conv (group 1) weight [O, I, kh, kw] -> axis 1, so each run of 4 is
4 input channels at one (out, kh, kw) position; MatMul constant B [K, N] -> axis 0; Gemm B -> axis 0,
or axis 1 with transB=1. A weight whose input dimension is not a multiple of 4 is left dense and
listed in the report, since the pattern would need padding the runtime does not do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex, attribute
from autocompress.prune.constants import layer_weights

logger = logging.getLogger(__name__)


@dataclass
class ASPPlan:
    eligible: dict[str, int] = field(default_factory=dict)  # weight name -> input axis
    skipped: dict[str, str] = field(default_factory=dict)  # weight name -> why it stays dense


def _input_axis(node: onnx.NodeProto, name: str, value: np.ndarray) -> tuple[int | None, str]:
    if node.op_type == "Conv":
        if attribute(node, "group", 1) != 1:
            return None, f"grouped convolution (group={attribute(node, 'group', 1)})"
        return 1, ""
    if node.op_type == "MatMul" and node.input[1] == name and value.ndim == 2:
        return 0, ""
    if node.op_type == "Gemm" and node.input[1] == name:
        return (1 if attribute(node, "transB", 0) else 0), ""
    return None, f"{node.op_type} operand that is not a 2-D weight matrix"


def plan_asp(model: onnx.ModelProto, prune_params_name: list[str] | None = None, m: int = 4) -> ASPPlan:
    """Which weights get the pattern. Naming a weight that cannot take it is a ConfigError."""
    plan = ASPPlan()
    for name, (node, value) in layer_weights(GraphIndex(model)).items():
        axis, why = _input_axis(node, name, value)
        if axis is not None and value.shape[axis] % m:
            axis, why = None, f"input dimension {value.shape[axis]} is not a multiple of {m}"
        if axis is None:
            plan.skipped[name] = why
        else:
            plan.eligible[name] = axis
    if prune_params_name is not None:
        bad = [n for n in prune_params_name if n not in plan.eligible]
        if bad:
            details = {n: plan.skipped.get(n, "not a Conv/Gemm/MatMul weight") for n in bad}
            raise ConfigError(f"ASPPrune.prune_params_name: {details}; eligible weights: {sorted(plan.eligible)}")
        plan.skipped.update({n: "not listed in prune_params_name" for n in plan.eligible if n not in prune_params_name})
        plan.eligible = {n: a for n, a in plan.eligible.items() if n in prune_params_name}
    for name, why in plan.skipped.items():
        logger.info("ASP leaves %s dense: %s", name, why)
    return plan


def n_m_mask(weight: np.ndarray, axis: int, n: int = 2, m: int = 4) -> np.ndarray:
    """0/1 mask keeping the n largest |w| in each run of m consecutive entries along `axis`."""
    moved = np.moveaxis(np.abs(weight), axis, -1)
    runs = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    order = np.argsort(-runs, axis=-1, kind="stable")
    mask = np.zeros_like(runs, dtype=np.float32)
    np.put_along_axis(mask, order[..., :n], 1.0, axis=-1)
    return np.moveaxis(mask.reshape(moved.shape), -1, axis)


def asp_masks(
    model: onnx.ModelProto, prune_params_name: list[str] | None = None, n: int = 2, m: int = 4
) -> tuple[dict[str, np.ndarray], ASPPlan]:
    """n:m masks for every eligible weight, and the plan saying which weights stay dense and why."""
    if not 0 < n < m:
        raise ConfigError(f"ASP pattern {n}:{m} needs 0 < n < m")
    plan = plan_asp(model, prune_params_name, m)
    index = GraphIndex(model)
    masks = {name: n_m_mask(index.constant_value(name), axis, n, m) for name, axis in plan.eligible.items()}
    return masks, plan
