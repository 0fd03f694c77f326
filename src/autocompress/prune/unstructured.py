"""Unstructured (element-wise) sparsity: magnitude masks by ratio or threshold, and the GMP schedule.

Masks are 0/1 arrays per weight name (see masks.py); training keeps them applied, export writes the
masked weights. The GMP schedule raises the ratio along a cubic curve so the network adapts gradually
(Zhu & Gupta, "To prune, or not to prune"), in the staging PaddleSlim's GMPUnstructuredPruner uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from autocompress.config.strategies import GmpConfig
from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.constants import layer_weights
from autocompress.prune.masks import sparsity

PRUNE_MODES = ("ratio", "threshold")
PRUNE_PARAMS_TYPES = (None, "conv1x1_only")


def _is_conv1x1(node: onnx.NodeProto, value: np.ndarray) -> bool:
    return node.op_type == "Conv" and value.ndim >= 3 and all(k == 1 for k in value.shape[2:])


def sparsifiable_weights(
    model: onnx.ModelProto, prune_params_type: str | None = None, skip_params: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Weights unstructured pruning applies to: every layer weight (not normalisation or 1-D
    parameters), or only 1x1 convolution weights with prune_params_type='conv1x1_only'."""
    if prune_params_type not in PRUNE_PARAMS_TYPES:
        raise ConfigError(
            f"UnstructurePrune.prune_params_type={prune_params_type!r} is not supported; "
            f"choose one of {PRUNE_PARAMS_TYPES}"
        )
    skip = set(skip_params or [])
    weights = layer_weights(GraphIndex(model))
    return {
        name: value
        for name, (node, value) in weights.items()
        if name not in skip and (prune_params_type is None or _is_conv1x1(node, value))
    }


def _smallest_mask(magnitudes: np.ndarray, count: int) -> np.ndarray:
    """Mask zeroing exactly `count` entries of smallest magnitude (ties broken by position)."""
    mask = np.ones(magnitudes.size, dtype=np.float32)
    if count > 0:
        mask[np.argsort(magnitudes.reshape(-1), kind="stable")[:count]] = 0.0
    return mask


def unstructured_masks(
    model: onnx.ModelProto,
    prune_mode: str = "ratio",
    ratio: float = 0.55,
    threshold: float = 1e-2,
    prune_params_type: str | None = None,
    local_sparsity: bool = False,
    skip_params: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Magnitude masks. ratio mode zeroes the `ratio` smallest |w| of each weight (local_sparsity=True)
    or of all selected weights together (False: one global threshold, layers end up uneven);
    threshold mode zeroes every |w| < threshold."""
    if prune_mode not in PRUNE_MODES:
        raise ConfigError(f"UnstructurePrune.prune_mode={prune_mode!r} is not supported; choose one of {PRUNE_MODES}")
    if prune_mode == "ratio" and not 0.0 <= ratio < 1.0:
        raise ConfigError(f"UnstructurePrune.prune_ratio={ratio} must be in [0, 1)")
    if prune_mode == "threshold" and threshold < 0:
        raise ConfigError(f"UnstructurePrune.threshold={threshold} must be >= 0")
    weights = sparsifiable_weights(model, prune_params_type, skip_params)
    if prune_mode == "threshold":
        return {n: (np.abs(w) >= threshold).astype(np.float32) for n, w in weights.items()}
    if local_sparsity:
        return {n: _smallest_mask(np.abs(w), int(ratio * w.size)).reshape(w.shape) for n, w in weights.items()}
    if not weights:
        return {}
    flat = np.concatenate([np.abs(w).reshape(-1) for w in weights.values()])
    global_mask = _smallest_mask(flat, int(ratio * flat.size))
    masks, start = {}, 0
    for name, w in weights.items():
        masks[name] = global_mask[start : start + w.size].reshape(w.shape)
        start += w.size
    return masks


@dataclass
class SparsityReport:
    per_layer: dict[str, float]
    total: float  # zeros over all listed elements, so large layers weigh more


def sparsity_report(model: onnx.ModelProto, prune_params_type: str | None = None) -> SparsityReport:
    weights = sparsifiable_weights(model, prune_params_type)
    per_layer = {name: sparsity(w) for name, w in weights.items()}
    total_size = sum(w.size for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    return SparsityReport(per_layer, zeros / total_size if total_size else 0.0)


@dataclass(frozen=True)
class GMPSchedule:
    """Sparsity ratio per training iteration for gradual magnitude pruning.

    Iterations are split into `pruning_steps` stages of pruning_iterations // pruning_steps iterations.
    Stages cover: stable_iterations at ratio 0, pruning_iterations along
    initial + (target - initial) * (1 - (1 - i / pruning_steps)^3) for stage i, then tunning_iterations
    (and everything after) at the target ratio. Training step s runs at schedule iteration resume_iteration + s
    (from 0 when resume_iteration is -1), so an interrupted run resumes its ramp where it stopped."""

    target_ratio: float
    stable_iterations: int = 0
    pruning_iterations: int = 1000
    tunning_iterations: int = 0
    pruning_steps: int = 100
    initial_ratio: float = 0.15
    resume_iteration: int = -1

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial_ratio <= self.target_ratio < 1.0:
            raise ConfigError(
                f"gmp_config: need 0 <= initial_ratio ({self.initial_ratio}) <= prune_ratio ({self.target_ratio}) < 1"
            )
        if self.pruning_steps < 1 or self.pruning_iterations < self.pruning_steps:
            raise ConfigError(
                f"gmp_config: pruning_steps={self.pruning_steps} must be >= 1 and at most "
                f"pruning_iterations={self.pruning_iterations}"
            )
        if self.stable_iterations < 0 or self.tunning_iterations < 0:
            raise ConfigError("gmp_config: stable_iterations and tunning_iterations must be >= 0")
        if self.resume_iteration < -1:
            raise ConfigError(f"gmp_config: resume_iteration={self.resume_iteration} must be >= -1 (-1: the start)")

    @classmethod
    def from_config(cls, target_ratio: float, gmp_config: dict | GmpConfig) -> GMPSchedule:
        """The schedule of an UnstructurePrune.gmp_config section (a dict is validated as one)."""
        return cls(target_ratio, **GmpConfig.parse(gmp_config, "UnstructurePrune.gmp_config").to_dict())

    @property
    def first_iteration(self) -> int:
        """Schedule iteration of the first training step."""
        return max(self.resume_iteration, 0)

    @property
    def period(self) -> int:
        return self.pruning_iterations // self.pruning_steps

    @property
    def _stable_stages(self) -> int:
        return int(self.stable_iterations / self.pruning_iterations * self.pruning_steps)

    @property
    def target_iteration(self) -> int:
        """First iteration at which the full prune_ratio is in force (the cubic ramp stays below it)."""
        return (self._stable_stages + self.pruning_steps) * self.period

    def _stages(self) -> list[float]:
        stable = self._stable_stages
        tuning = int(self.tunning_iterations / self.pruning_iterations * self.pruning_steps)
        span = self.target_ratio - self.initial_ratio
        cubic = [
            self.initial_ratio + span * (1.0 - (1.0 - i / self.pruning_steps) ** 3) for i in range(self.pruning_steps)
        ]
        return [0.0] * stable + cubic + [self.target_ratio] * tuning

    def ratio_at(self, iteration: int) -> float:
        """Ratio in force at `iteration` (0-based); iterations before the first are unpruned."""
        if iteration < 0:
            return 0.0
        stages = self._stages()
        stage = iteration // self.period
        return stages[stage] if stage < len(stages) else self.target_ratio

    def mask_update_due(self, iteration: int) -> bool:
        """Masks only need recomputing when the ratio changes, i.e. at stage boundaries."""
        return self.ratio_at(iteration) != self.ratio_at(iteration - 1)
