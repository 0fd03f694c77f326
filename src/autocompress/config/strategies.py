"""Typed configs of the compression strategies, one class per top-level key of the PaddleSlim schema.

Field names and defaults follow PaddleSlim's AutoCompression; comments say where ours differ and why.
Op types may be written as ONNX op types (Conv, MatMul) or as PaddleSlim names (conv2d, mul); the quantization
stage normalises them.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from autocompress.config.base import Section
from autocompress.config.registry import StrategySpec, register_strategy
from autocompress.quant.op_types import DEFAULT_QUANTIZE_OP_TYPES
from autocompress.quant.scales import unsupported_bits

log = logging.getLogger(__name__)

WeightQuantizeType = Literal["channel_wise_abs_max", "abs_max"]
PtqAlgo = Literal["abs_max", "avg", "hist", "KL", "mse", "emd"]
DistillLoss = Literal["l2", "soft_label", "fsp"]

# Weight ops plus the cheap ops between them that ORT runs in uint8 (see quant.op_types); PaddleSlim's default
# is conv2d/depthwise_conv2d/mul only.
_DEFAULT_QUANT_OPS = list(DEFAULT_QUANTIZE_OP_TYPES)


def _as_list(value):
    if value is None:
        return value
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _normalise_loss_name(value):
    """PaddleSlim writes both 'l2' and 'l2_loss'; accept both."""
    names = {"l2_loss": "l2", "soft_label_loss": "soft_label", "fsp_loss": "fsp"}
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, (list, tuple)):
        return [names.get(v, v) if isinstance(v, str) else v for v in value]
    return value


def _non_negative_alphas(value):
    """A negative alpha would train the student away from its teacher; 0 switches a term off."""
    if not isinstance(value, list):
        if value < 0:
            raise ValueError("alpha must be >= 0 (0 switches the loss term off)")
        return value
    for index, alpha in enumerate(value):
        if alpha < 0:
            raise ValueError(f"alpha[{index}] = {alpha} is negative; every alpha must be >= 0")
    return value


class _QuantCommon(Section):
    quantize_op_types: list[str] = Field(default_factory=lambda: list(_DEFAULT_QUANT_OPS))
    #: Bounds are the QDQ writer's (quant.scales): a config that loads is one that exports.
    weight_bits: int = 8
    activation_bits: int = 8
    not_quant_pattern: list[str] = Field(default_factory=lambda: ["skip_quant"])
    weight_quantize_type: WeightQuantizeType = "channel_wise_abs_max"
    is_full_quantize: bool = False
    #: Always exported as ONNX QuantizeLinear/DequantizeLinear; kept for config compatibility.
    onnx_format: bool = True
    unapplied_keys: ClassVar[dict[str, str]] = {
        "onnx_format": "the model is always exported as ONNX QuantizeLinear/DequantizeLinear (QDQ)",
    }
    for_tensorrt: bool = False
    #: Leave an image stem (a Conv over <= 4 input channels, kernel up to 3x3) in float; None: on CPU targets,
    #: whose uint8 Conv is slower than the float one there, and not for TensorRT/GPU.
    float_stem: bool | None = None

    _listify = field_validator("quantize_op_types", "not_quant_pattern", mode="before")(_as_list)

    def keeps_stem_float(self, hardware: str) -> bool:
        """float_stem, or by default on CPU targets only."""
        return self.float_stem if self.float_stem is not None else hardware == "cpu" and not self.for_tensorrt

    @field_validator("weight_bits", "activation_bits")
    @classmethod
    def _storable_bits(cls, value: int, info: ValidationInfo) -> int:
        problem = unsupported_bits(info.field_name, value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("quantize_op_types")
    @classmethod
    def _non_empty(cls, value):
        if not value:
            raise ValueError("quantize_op_types is empty; list at least one op type such as Conv or MatMul")
        return value


#: The seed's per-tensor weight types that track the scale over training steps; here the scale of each step is its
#: weights' abs max, which is where a window or moving average of a converged weight's abs max ends.
_TRACKED_WEIGHT_TYPES = ("range_abs_max", "moving_average_abs_max")


class QuantAware(_QuantCommon):
    """Quantization-aware training (fake-quant in the trained graph, exported as QDQ)."""

    use_pact: bool = False
    activation_quantize_type: Literal["moving_average_abs_max", "range_abs_max", "abs_max"] = "moving_average_abs_max"
    dtype: Literal["int8", "uint8"] = "int8"
    window_size: int = Field(10000, ge=1)
    moving_rate: float = Field(0.9, gt=0.0, lt=1.0)

    @field_validator("weight_quantize_type", mode="before")
    @classmethod
    def _per_tensor_weights(cls, value: Any) -> Any:
        if value in _TRACKED_WEIGHT_TYPES:
            log.warning(
                "QuantAware.weight_quantize_type = %r is read as 'abs_max': one scale per weight tensor, "
                "its abs max at each step (no window or moving average over steps)",
                value,
            )
            return "abs_max"
        return value


class QuantPost(_QuantCommon):
    """Post-training quantization from calibration statistics."""

    legacy_aliases: ClassVar[dict[str, str]] = {"bias_correction": "bias_correct"}

    batch_size: int = Field(32, ge=1)
    batch_nums: int | None = Field(None, ge=1)
    algo: PtqAlgo = "hist"
    hist_percent: float = Field(0.999, gt=0.0, le=1.0)
    bias_correct: bool = False
    activation_quantize_type: Literal["range_abs_max", "moving_average_abs_max", "abs_max"] = "range_abs_max"
    skip_tensor_list: list[str] | None = None
    # Reconstruction (AdaRound/BRECQ-style) options of PaddleSlim; accepted, and rejected if switched on.
    epochs: int = Field(20, ge=1)
    lr: float = Field(0.1, gt=0.0)
    regions: list[list[str]] | None = None
    region_weights_names: list[list[str]] | None = None
    recon_level: Literal["layer-wise", "region-wise"] | None = None
    simulate_activation_quant: bool = False
    #: Accuracy-driven fallback: largest allowed metric drop; the most harmful ops return to float until met.
    max_metric_drop: float | None = Field(None, ge=0.0)
    #: Per-op precision: auto keeps in float the ops whose int8 form is slower on the target, too sensitive for the
    #: allowed drop (max_metric_drop, else Global.auto_max_relative_drop) or next to mixed-range tensors.
    mixed_precision: Literal["auto", "none"] = "none"
    unapplied_keys: ClassVar[dict[str, str]] = {
        **_QuantCommon.unapplied_keys,
        "batch_size": "calibration reads the train_dataloader's batches as they come; set the batch size there",
        "activation_quantize_type": "activation scales are calibrated once (algo) and stay fixed in the QDQ model",
        **dict.fromkeys(
            ("epochs", "lr", "regions", "region_weights_names", "simulate_activation_quant"),
            "it belongs to reconstruction quantization (recon_level), which autocompress does not run",
        ),
    }

    @field_validator("recon_level")
    @classmethod
    def _no_reconstruction(cls, value):
        if value is not None:
            raise ValueError("reconstruction quantization (recon_level) is not supported; leave it unset")
        return value


class Distillation(Section):
    """Single-teacher distillation; the teacher is the original model unless teacher_model_dir is set."""

    legacy_aliases: ClassVar[dict[str, str]] = {
        "distill_loss": "loss",
        "distill_node_pair": "node",
        "distill_lambda": "alpha",
    }

    loss: DistillLoss | list[DistillLoss] = "l2"
    node: list[str | list[str]] = Field(default_factory=list)
    alpha: float | list[float] = 1.0
    teacher_model_dir: str | None = None
    teacher_model_filename: str | None = None
    teacher_params_filename: str | None = None
    merge_feed: bool = True
    #: Temperature of the soft_label loss.
    temperature: float = Field(1.0, gt=0.0)
    #: Weight of a label loss when the train loader also yields labels (0 = off).
    label_loss_weight: float = Field(0.0, ge=0.0)

    _loss_names = field_validator("loss", mode="before")(_normalise_loss_name)
    _alpha_range = field_validator("alpha")(_non_negative_alphas)

    @model_validator(mode="after")
    def _lengths_agree(self):
        if isinstance(self.loss, list) and isinstance(self.alpha, list) and len(self.loss) != len(self.alpha):
            raise ValueError(f"loss has {len(self.loss)} entries but alpha has {len(self.alpha)}; they pair up")
        return self


class MultiTeacherDistillation(Section):
    """Several teachers, each with its own loss, node pairs and weight."""

    legacy_aliases: ClassVar[dict[str, str]] = Distillation.legacy_aliases

    loss: list[DistillLoss] = Field(default_factory=list)
    node: list[list[str]] = Field(default_factory=list)
    alpha: list[float] = Field(default_factory=list)
    teacher_model_dir: list[str] = Field(default_factory=list)
    teacher_model_filename: list[str | None] = Field(default_factory=list)
    teacher_params_filename: list[str | None] = Field(default_factory=list)
    merge_feed: bool = True
    temperature: float = Field(1.0, gt=0.0)

    _loss_names = field_validator("loss", mode="before")(_normalise_loss_name)
    _alpha_range = field_validator("alpha")(_non_negative_alphas)

    @model_validator(mode="after")
    def _per_teacher_lists_agree(self):
        n = len(self.teacher_model_dir)
        if n == 0:
            raise ValueError("teacher_model_dir lists no teacher; give one model path per teacher")
        for key in ("loss", "node", "alpha"):
            got = len(getattr(self, key))
            if got != n:
                raise ValueError(f"{key} has {got} entries but there are {n} teachers; give one per teacher")
        return self


class HyperParameterOptimization(Section):
    """Search space of post-training quantization settings, searched with Optuna's TPE."""

    ptq_algo: list[PtqAlgo] = Field(default_factory=lambda: ["KL", "hist", "avg", "mse"])
    bias_correct: list[bool] = Field(default_factory=lambda: [True, False])
    weight_quantize_type: list[WeightQuantizeType] = Field(default_factory=lambda: ["channel_wise_abs_max"])
    hist_percent: list[float] = Field(default_factory=lambda: [0.98, 0.999])
    batch_num: list[int] = Field(default_factory=lambda: [10, 30])
    max_quant_count: int = Field(20, ge=1)
    seed: int = 0

    _listify = field_validator(
        "ptq_algo", "bias_correct", "weight_quantize_type", "hist_percent", "batch_num", mode="before"
    )(_as_list)

    @field_validator("hist_percent")
    @classmethod
    def _percent_range(cls, value):
        for v in value:
            if not 0.0 < v <= 1.0:
                raise ValueError(f"hist_percent {v} is outside (0, 1]")
        return value

    @field_validator("batch_num")
    @classmethod
    def _positive(cls, value):
        if any(v < 1 for v in value):
            raise ValueError("batch_num values must be >= 1")
        return value


class ChannelPrune(Section):
    """Structured pruning: whole channels are removed from the graph."""

    pruned_ratio: float | dict[str, float] = 0.3
    prune_params_name: list[str] | None = None
    #: output_error scores a channel by what removing it changes in the next layers' outputs, measured on
    #: batch_nums training batches; the others read the weights only.
    criterion: Literal["l1_norm", "bn_scale", "geometry_median", "output_error"] = "l1_norm"
    #: Kept channel counts are rounded to a multiple of this (ORT's AVX-512 kernels like 16).
    round_to: int = Field(16, ge=1)
    #: uniform: every group loses pruned_ratio of its channels. sensitivity: each group is pruned alone at 10-90 %
    #: on batch_nums batches and the same MACs as the uniform ratio are taken where the outputs change least.
    ratio_allocation: Literal["uniform", "sensitivity"] = "uniform"
    #: Add each removed channel's mean activation (over batch_nums batches) to the next layer's bias.
    mean_compensation: bool = True
    #: Training batches the activation statistics and sensitivities are measured on.
    batch_nums: int = Field(4, ge=1)

    @field_validator("pruned_ratio")
    @classmethod
    def _ratio_range(cls, value):
        ratios = value.values() if isinstance(value, dict) else [value]
        for r in ratios:
            if not 0.0 <= r < 1.0:
                raise ValueError(f"pruned_ratio {r} is outside [0, 1)")
        return value

    @model_validator(mode="after")
    def _allocation_needs_one_ratio(self):
        if self.ratio_allocation == "sensitivity" and isinstance(self.pruned_ratio, dict):
            raise ValueError(
                "ratio_allocation 'sensitivity' chooses the per-layer ratios itself; give pruned_ratio as "
                "one number (the MACs to remove are those of that uniform ratio) or use 'uniform'"
            )
        return self


class ASPPrune(Section):
    """2:4 semi-structured sparsity (sparse tensor cores)."""

    prune_params_name: list[str] | None = None


class TransformerPrune(Section):
    """Removes attention heads and FFN neurons of transformer encoders."""

    pruned_ratio: float = Field(0.25, ge=0.0, lt=1.0)


class GmpConfig(Section):
    """The GMP schedule: pruning_steps ratio increases spread over pruning_iterations (GMPUnstructuredPruner)."""

    stable_iterations: int = Field(0, ge=0)
    pruning_iterations: int = Field(1000, ge=1)
    tunning_iterations: int = Field(1000, ge=0)
    #: Schedule iteration the training starts at, to resume an interrupted run; -1: the beginning.
    resume_iteration: int = Field(-1, ge=-1)
    pruning_steps: int = Field(100, ge=1)
    initial_ratio: float = Field(0.15, ge=0.0, lt=1.0)

    @model_validator(mode="before")
    @classmethod
    def _prune_steps(cls, data: Any) -> Any:
        """The seed's prune_steps is the iterations between two ratio increases; stored as the number of
        increases it gives over pruning_iterations."""
        if not isinstance(data, dict) or "prune_steps" not in data:
            return data
        data = dict(data)
        period = data.pop("prune_steps")
        if "pruning_steps" in data:
            raise ValueError(
                "set prune_steps (iterations between ratio increases) or pruning_steps (number of increases), not both"
            )
        iterations = data.get("pruning_iterations", cls.model_fields["pruning_iterations"].default)
        if isinstance(iterations, int) and not (isinstance(period, int) and 1 <= period <= iterations):
            raise ValueError(
                f"prune_steps = {period!r}: the iterations between two ratio increases must be an "
                f"integer from 1 to pruning_iterations ({iterations})"
            )
        data["pruning_steps"] = iterations // period if isinstance(iterations, int) else period
        return data

    @model_validator(mode="after")
    def _steps_fit(self):
        if self.pruning_steps > self.pruning_iterations:
            raise ValueError(
                f"pruning_steps ({self.pruning_steps}) must be at most pruning_iterations "
                f"({self.pruning_iterations}): the ratio rises at most once per iteration"
            )
        return self


class UnstructurePrune(Section):
    """Unstructured (element-wise) sparsity, optionally with the GMP schedule."""

    legacy_aliases: ClassVar[dict[str, str]] = {"pruned_ratio": "prune_ratio", "ratio": "prune_ratio"}

    prune_strategy: Literal["gmp"] | None = None
    prune_mode: Literal["ratio", "threshold"] = "ratio"
    threshold: float = Field(0.01, ge=0.0)
    prune_ratio: float = Field(0.55, ge=0.0, lt=1.0)
    gmp_config: GmpConfig | None = None
    prune_params_type: Literal["conv1x1_only"] | None = "conv1x1_only"
    local_sparsity: bool = False

    @model_validator(mode="after")
    def _gmp_needs_config(self):
        if self.prune_strategy == "gmp" and self.gmp_config is None:
            self.gmp_config = GmpConfig()
        if self.prune_strategy == "gmp" and self.prune_mode != "ratio":
            raise ValueError("prune_strategy 'gmp' ramps a ratio; it needs prune_mode 'ratio'")
        if self.prune_strategy == "gmp" and self.gmp_config.initial_ratio > self.prune_ratio:
            raise ValueError(
                f"gmp_config.initial_ratio ({self.gmp_config.initial_ratio}) must be at most "
                f"prune_ratio ({self.prune_ratio}): the GMP ramp rises from one to the other"
            )
        return self


_STAGES = "autocompress.strategy"
# Structure changes first, then distillation on its own, quantization last; one strategy per family.
register_strategy(
    StrategySpec(
        "ChannelPrune",
        ChannelPrune,
        f"{_STAGES}.channel_prune:ChannelPruneStage",
        order=10,
        family="prune/sparse",
        trains=True,
        aliases=("Prune",),
    )
)
register_strategy(
    StrategySpec(
        "ASPPrune", ASPPrune, f"{_STAGES}.asp_prune:ASPPruneStage", order=11, family="prune/sparse", trains=True
    )
)
register_strategy(
    StrategySpec(
        "TransformerPrune",
        TransformerPrune,
        f"{_STAGES}.transformer_prune:TransformerPruneStage",
        order=12,
        family="prune/sparse",
        trains=True,
    )
)
register_strategy(
    StrategySpec(
        "UnstructurePrune",
        UnstructurePrune,
        f"{_STAGES}.unstructured_prune:UnstructurePruneStage",
        order=13,
        family="prune/sparse",
        trains=True,
    )
)
register_strategy(
    StrategySpec(
        "Distillation",
        Distillation,
        f"{_STAGES}.distillation:DistillationStage",
        order=20,
        family="distillation",
        distils=True,
    )
)
register_strategy(
    StrategySpec(
        "MultiTeacherDistillation",
        MultiTeacherDistillation,
        f"{_STAGES}.distillation:MultiTeacherDistillationStage",
        order=21,
        family="distillation",
        distils=True,
        runs_alone=True,
    )
)
register_strategy(
    StrategySpec(
        "QuantAware",
        QuantAware,
        f"{_STAGES}.quant_aware:QuantAwareStage",
        order=30,
        family="quantization",
        trains=True,
        aliases=("Quantization",),
    )
)
register_strategy(
    StrategySpec("QuantPost", QuantPost, f"{_STAGES}.quant_post:QuantPostStage", order=31, family="quantization")
)
register_strategy(StrategySpec("HyperParameterOptimization", HyperParameterOptimization, part_of="QuantPost"))
