"""The QDQ writer: turns a float model plus activation ranges into a QuantizeLinear/DequantizeLinear model.

Used by PTQ (ranges from calibration) and QAT (learned ranges and weight scales). The layout is the one
ONNX Runtime fuses into integer kernels (QLinearConv, QGemm, QLinearMatMul, QLinearAdd, ...):

    x -> Q -> DQ -> Conv(W: int8 initializer -> DQ, bias) -> [Relu|Clip] -> Q -> DQ -> next
                                                        the node's output is quantized after a sole
                                                        Relu/Clip so ORT can drop that activation

Weights are stored as int8 initializers with a DequantizeLinear, so the file shrinks ~4x. The bias of a
quantized Conv/ConvTranspose/Gemm is stored as int32 with scale input_scale * weight_scale (per channel when
the weight is) and zero point 0, the layout of QLinearConv's and QGemm's bias: ORT turns a float Conv bias
into that itself, but leaves a Gemm with a float bias in float (EfficientNet-Lite0's classifier). Rounding
it costs at most half a step of the int32 accumulator. Symmetric (TensorRT) exports keep float biases:
TensorRT's DequantizeLinear takes no int32 input.
Producer-side tensor names never change (users reference them); consumers read `<name>_dequantized`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from autocompress.errors import ConfigError, DataError, UnsupportedOpError
from autocompress.graph.index import GraphIndex, attribute
from autocompress.graph.large import WeightsLayout, compacted, copy_model, weightless, weights_layout
from autocompress.graph.naming import aliases, carry_names, name_nodes, name_table, stable_names
from autocompress.graph.op_facts import op_facts
from autocompress.quant.affine import AffineChain, affine_chains, record_absorbed
from autocompress.quant.bias_correction import bias_corrected_weight
from autocompress.quant.op_types import DEFAULT_QUANTIZE_OP_TYPES, WEIGHT_OP_TYPES, normalize_op_types
from autocompress.quant.scales import activation_qparams, unsupported_bits
from autocompress.quant.weights import (
    check_weight_quantize_type,
    quantize_weight,
    weight_channel_axis,
    weight_scales,
)

if TYPE_CHECKING:
    from autocompress.config.strategies import QuantAware, QuantPost
    from autocompress.runtime.ort import HardwareTarget

# Activations a quantized node's output may pass through before its Q: ORT removes them when the range allows.
_FUSABLE_ACTIVATIONS = ("Relu", "Clip")
MIN_QDQ_OPSET = 13  # DequantizeLinear's axis (per-channel) needs opset 13
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class QDQOptions:
    """What to quantize and how. Op types may be ONNX or Paddle names (see op_types)."""

    quantize_op_types: Sequence[str] = DEFAULT_QUANTIZE_OP_TYPES
    is_full_quantize: bool = False
    skip_names: Sequence[str] = ()  # node or tensor names left in float
    not_quant_pattern: Sequence[str] = ("skip_quant",)  # substrings of node or tensor names left in float
    activation_bits: int = 8
    weight_bits: int = 8
    weight_quantize_type: str = "channel_wise_abs_max"
    symmetric_activations: bool = False  # True: S8 zero point 0 (TensorRT); False: U8 asymmetric (ORT CPU)
    bias_correct: bool = False
    #: Leave an image stem (a Conv over few channels, small kernel) in float: see _is_float_stem.
    float_stem: bool = False

    def __post_init__(self) -> None:
        for key in ("quantize_op_types", "skip_names", "not_quant_pattern"):  # a lone string means one name
            value = getattr(self, key)
            object.__setattr__(self, key, (value,) if isinstance(value, str) else tuple(value))

    @classmethod
    def from_section(cls, section: QuantPost | QuantAware, hardware: HardwareTarget) -> QDQOptions:
        """The writer's options of a QuantPost or QuantAware section for `hardware`: the one place those settings
        are mapped. TensorRT (for_tensorrt or a gpu target) wants symmetric S8 activations, ORT CPU asymmetric U8."""
        return cls(
            quantize_op_types=tuple(section.quantize_op_types),
            is_full_quantize=section.is_full_quantize,
            skip_names=tuple(getattr(section, "skip_tensor_list", None) or ()),
            not_quant_pattern=tuple(section.not_quant_pattern),
            activation_bits=section.activation_bits,
            weight_bits=section.weight_bits,
            weight_quantize_type=section.weight_quantize_type,
            symmetric_activations=section.for_tensorrt or hardware.name == "gpu",
            bias_correct=getattr(section, "bias_correct", False),
            float_stem=section.keeps_stem_float(hardware.name),
        )

    def validate(self) -> None:
        for key in ("activation_bits", "weight_bits"):
            problem = unsupported_bits(key, getattr(self, key))
            if problem:
                raise ConfigError(problem)
        check_weight_quantize_type(self.weight_quantize_type)


@dataclass
class NodePlan:
    """How one node gets quantized."""

    node: onnx.NodeProto
    activation_inputs: list[str]
    constant_inputs: list[str]  # constant data inputs (e.g. of Add), quantized with their own min/max
    weight: tuple[int, str, int | None] | None  # (input index, initializer name, channel axis)
    output: str | None  # the tensor quantized after the node (its output, or that of a fused Relu/Clip)


#: Why a node that could run in int8, or that owns weights, stays in float (NodeDecision.reason).
SKIPPED_BY_LIST = "skip_tensor_list"
SKIPPED_BY_PATTERN = "not_quant_pattern"
FLOAT_STEM = "float_stem: a thin image stem runs faster in float"
NOT_IN_OP_TYPES = "not in quantize_op_types"
NO_INT8_KERNEL = "no int8 kernel in ONNX Runtime"
#: Why an int8 node is gone from the written graph: a scalar Mul/Add folded into its neighbour's scale.
ABSORBED = "folded into the quantization scale of its input"


@dataclass(frozen=True)
class NodeDecision:
    """Whether the writer puts one node in int8 and, when not, why: the facts of the report's per-op table."""

    node: str
    op_type: str
    int8: bool
    reason: str = ""


@dataclass
class QuantPlan:
    nodes: list[NodePlan] = field(default_factory=list)
    skipped_nodes: list[str] = field(default_factory=list)
    #: scalar Mul/Add nodes write_qdq_model absorbed into quantization parameters (quant/affine.py)
    absorbed_nodes: list[str] = field(default_factory=list)
    #: in graph order, every float-data node of a quantizable op type or owning weights: int8 or float and why
    decisions: list[NodeDecision] = field(default_factory=list)

    def mark_absorbed(self, names: list[str]) -> None:
        """Record the nodes folded into quantization parameters, so the per-op record says where they went."""
        self.absorbed_nodes = names
        gone = set(names)
        self.decisions = [replace(d, reason=ABSORBED) if d.node in gone else d for d in self.decisions]

    @property
    def activation_tensors(self) -> list[str]:
        """Tensors that need calibration ranges, in graph order."""
        names: list[str] = []
        for plan in self.nodes:
            names += plan.activation_inputs + ([plan.output] if plan.output else [])
        return list(dict.fromkeys(names))


def _skip_reason(node: onnx.NodeProto, name: str, options: QDQOptions) -> str | None:
    """Which setting left node in float by its stable name, a name it had or was folded from, or a tensor; None
    when neither skip_names nor not_quant_pattern names it."""
    names = [n for n in (name, *aliases(node), *node.input, *node.output) if n]
    if set(names) & set(options.skip_names):
        return SKIPPED_BY_LIST
    if any(p and p in n for n in names for p in options.not_quant_pattern):
        return SKIPPED_BY_PATTERN
    return None


def check_skip_names(model: onnx.ModelProto, names: Sequence[str]) -> None:
    """Every skip_tensor_list entry must name a node or a tensor of `model`: a typo, or a name the graph no
    longer has, would otherwise leave the layer quantized without a word."""
    nodes = model.graph.node
    known = set(name_table(model)) | {name for node in nodes for name in (*node.input, *node.output)}
    unknown = [name for name in names if name not in known]
    if unknown:
        weights = sorted({node.input[1] for node in nodes if node.op_type in WEIGHT_OP_TYPES and len(node.input) > 1})
        raise ConfigError(
            f"QuantPost.skip_tensor_list names {unknown}, which are neither nodes nor tensors of the model; give node "
            f"names or tensor names, e.g. weights: {weights[:8]}{' ...' if len(weights) > 8 else ''}"
        )


#: Input channels up to which a (non-grouped) Conv counts as an image stem.
STEM_CHANNELS = 4
#: Largest reduction depth (in channels x kernel taps) of a stem left in float: a 3x3 kernel over 4 channels.
STEM_MAX_DEPTH = 36


def _is_float_stem(node: onnx.NodeProto, index: GraphIndex) -> bool:
    """A Conv over <= STEM_CHANNELS channels with a small kernel. ONNX Runtime's uint8 Conv runs channels-last and
    spends its time reordering and unpacking such thin inputs: measured at 1 thread, the float 3x3 stem (then one
    QuantizeLinear) made the whole int8 model 8 % faster on EfficientNet-Lite0 and 7 % on PP-OCRv4 det. A wide
    kernel is enough work for the integer GEMM: ResNet's 7x7 stem (depth 147) left in float made its int8 model
    1.65x slower (BENCHMARKS.md)."""
    if node.op_type != "Conv" or attribute(node, "group", 1) != 1 or len(node.input) < 2:
        return False
    weight = index.constant_value(node.input[1])
    if weight is None or weight.ndim < 3:
        return False
    return weight.shape[1] <= STEM_CHANNELS and int(np.prod(weight.shape[1:])) <= STEM_MAX_DEPTH


def _quantized_output(node: onnx.NodeProto, index: GraphIndex) -> str | None:
    tensor = node.output[0]
    consumers = index.consumers.get(tensor, [])
    if len(consumers) == 1 and consumers[0].op_type in _FUSABLE_ACTIVATIONS and tensor not in index.graph_outputs:
        tensor = consumers[0].output[0]
    return None if tensor in index.graph_outputs else tensor


def _is_float_constant(index: GraphIndex, name: str) -> bool:
    value = index.constant_value(name)
    return value is not None and np.issubdtype(value.dtype, np.floating)


def _weight_input(node: onnx.NodeProto, index: GraphIndex) -> int | None:
    """The weight's input index when it is a float constant of a weight op (Conv W, Gemm B, MatMul's constant B)."""
    position = op_facts(node.op_type).weight_input
    if position is not None and len(node.input) > position and _is_float_constant(index, node.input[position]):
        return position
    return None


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor shape inference can type (Concat/Add also build int64 shapes)."""
    inferred = onnx.shape_inference.infer_shapes(weightless(model))  # the weights' bytes are not needed
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    return types


def plan_quantization(model: onnx.ModelProto, options: QDQOptions) -> QuantPlan:
    """Which nodes get quantized, and which of their inputs are activations, constants and weights.

    A node is planned only when its activations are known to be float (weight ops: not known
    to be non-float), so integer shape arithmetic is never quantized.
    """
    op_types = set(normalize_op_types(options.quantize_op_types, options.is_full_quantize))
    index = GraphIndex(model)
    types = tensor_types(model)
    plan = QuantPlan()
    for node, label in zip(model.graph.node, stable_names(model.graph.node)):
        reason = _float_reason(node, label, op_types, options, index)
        if reason in (SKIPPED_BY_LIST, SKIPPED_BY_PATTERN, FLOAT_STEM):
            plan.skipped_nodes.append(label)
        if reason is not None:
            if _reported(node, types):
                plan.decisions.append(NodeDecision(label, node.op_type, False, reason))
            continue
        node_plan = _node_plan(node, index, types, options)
        if node_plan is not None:
            plan.nodes.append(node_plan)
            plan.decisions.append(NodeDecision(label, node.op_type, True))
    return plan


def _float_reason(
    node: onnx.NodeProto, label: str, op_types: set[str], options: QDQOptions, index: GraphIndex
) -> str | None:
    """Why node stays in float before its inputs are looked at; None when it is a candidate for int8."""
    if node.op_type not in op_types:
        return NOT_IN_OP_TYPES if op_facts(node.op_type).integer_kernel else NO_INT8_KERNEL
    skipped = _skip_reason(node, label, options)
    if skipped is None and options.float_stem and _is_float_stem(node, index):
        return FLOAT_STEM
    return skipped


def _reported(node: onnx.NodeProto, types: dict[str, int]) -> bool:
    """Whether a float node belongs in the per-op record: it computes float data and could run in int8 or owns
    weights (integer shape arithmetic and weightless float ops are left out)."""
    facts = op_facts(node.op_type)
    if not (facts.integer_kernel or facts.trainable):
        return False
    return _float_typed(node, [node.output[0]], types)


def _float_typed(node: onnx.NodeProto, names: list[str], types: dict[str, int]) -> bool:
    """Whether every tensor of `names` is known to be float (for weight ops: not known to be anything else)."""
    default_type = onnx.TensorProto.FLOAT if node.op_type in WEIGHT_OP_TYPES else onnx.TensorProto.UNDEFINED
    return all(types.get(name, default_type) == onnx.TensorProto.FLOAT for name in names)


def _node_plan(node: onnx.NodeProto, index: GraphIndex, types: dict[str, int], options: QDQOptions) -> NodePlan | None:
    """How node gets quantized, or None when it has no float activation or weight to quantize."""
    weight_index = _weight_input(node, index)
    activation_inputs = op_facts(node.op_type).activation_inputs  # the others are shapes, scales, axes
    data_inputs = range(len(node.input)) if activation_inputs is None else activation_inputs
    data = [node.input[i] for i in data_inputs if i < len(node.input) and node.input[i] and i != weight_index]
    activations = [name for name in data if not index.is_constant(name)]
    constants = [name for name in data if index.is_constant(name) and _is_float_constant(index, name)]
    if not _float_typed(node, [*activations, node.output[0]], types):
        return None
    weight = None
    if weight_index is not None:
        name = node.input[weight_index]
        axis = None
        if options.weight_quantize_type == "channel_wise_abs_max":
            axis = weight_channel_axis(node, index.constant_value(name).ndim)
        weight = (weight_index, name, axis)
    if not activations and weight is None:
        return None
    return NodePlan(node, activations, constants, weight, _quantized_output(node, index))


def checked_plan(model: onnx.ModelProto, options: QDQOptions) -> QuantPlan:
    """plan_quantization, with a ConfigError when nothing matches: neither PTQ nor QAT may silently export a float model."""
    options.validate()
    plan = plan_quantization(model, options)
    if not plan.nodes:
        present = sorted({n.op_type for n in model.graph.node})
        raise ConfigError(
            f"quantize_op_types {list(options.quantize_op_types)} (is_full_quantize={options.is_full_quantize}) match "
            f"no quantizable node; skipped by name/pattern: {plan.skipped_nodes}; op types in the model: {present}"
        )
    return plan


def _ensure_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None or version >= MIN_QDQ_OPSET:
        return model
    try:
        return carry_names(model, onnx.version_converter.convert_version(model, MIN_QDQ_OPSET))
    except Exception as exc:  # the converter raises bare RuntimeErrors for ops it cannot adapt
        raise UnsupportedOpError(
            f"the model uses opset {version}; QDQ quantization needs opset >= {MIN_QDQ_OPSET} and the "
            f"automatic upgrade failed: {exc}"
        ) from exc


#: (weight digest, shape, axis, bits, bias_correct) -> (int weight, scale); see write_qdq_model.
WeightCache = dict[tuple, tuple[np.ndarray, np.ndarray]]


class _GraphWriter:
    """Accumulates the Q/DQ nodes and initializers for one model."""

    def __init__(self, index: GraphIndex, options: QDQOptions, weight_cache: WeightCache | None = None):
        self.index, self.options, self.weight_cache = index, options, weight_cache
        self.initializers: list[onnx.TensorProto] = []
        self.after_tensor: dict[str, list[onnx.NodeProto]] = {}  # nodes to place once a tensor exists
        self.head: list[onnx.NodeProto] = []  # nodes that only read graph inputs or initializers
        self.renamed: dict[str, str] = {}  # activation -> its dequantized name
        self.scales: dict[str, np.float32] = {}  # activation -> its scale
        self.weights: dict[tuple[str, int | None], tuple[str, np.ndarray]] = {}  # -> (dequantized name, scale)
        self.biases: dict[tuple[str, str, str], str] = {}  # (bias, input, weight) -> dequantized name

    def _place(self, source: str, nodes: list[onnx.NodeProto]) -> None:
        if source in self.index.producer:
            self.after_tensor.setdefault(source, []).extend(nodes)
        else:
            self.head.extend(nodes)

    def _params(self, low: float, high: float) -> tuple[np.float32, np.ndarray]:
        """Scale and zero point of a tensor with range [low, high]."""
        symmetric = self.options.symmetric_activations
        scale, zero_point, _, _ = activation_qparams(low, high, symmetric)
        return np.float32(scale), np.array(zero_point, dtype=np.int8 if symmetric else np.uint8)

    def _quantize_pair(self, source: str, name: str, write: tuple[str, str], read: tuple[str, str]) -> str:
        """QuantizeLinear of `source` with the `write` (scale, zero point) names, DequantizeLinear with `read`'s,
        to `name`_dequantized, which the consumers of `name` are pointed at."""
        quantized, dequantized = f"{name}_quantized", f"{name}_dequantized"
        self._place(
            source,
            [
                helper.make_node("QuantizeLinear", [source, *write], [quantized], name=f"{name}_QuantizeLinear"),
                helper.make_node(
                    "DequantizeLinear", [quantized, *read], [dequantized], name=f"{name}_DequantizeLinear"
                ),
            ],
        )
        self.renamed[name] = dequantized
        return dequantized

    def _store_params(self, name: str, scale: np.float32, zero_point: np.ndarray) -> tuple[str, str]:
        names = f"{name}_scale", f"{name}_zero_point"
        self.initializers += [
            numpy_helper.from_array(np.array(scale, dtype=np.float32), names[0]),
            numpy_helper.from_array(zero_point, names[1]),
        ]
        return names

    def activation(self, name: str, low: float, high: float) -> str:
        if name in self.renamed:
            return self.renamed[name]
        scale, zero_point = self._params(low, high)
        self.scales[name] = scale
        params = self._store_params(name, scale, zero_point)
        return self._quantize_pair(name, name, params, params)

    def absorbed_params(self, chain: AffineChain, low: float, high: float) -> tuple[np.float32, np.ndarray] | None:
        """(scale, zero point) t is written with so that the same integers read as y = c * t + b with y's own
        (see quant/affine.py), or None when no uint8 zero point can express the offset."""
        if self.options.symmetric_activations:
            return None
        scale, zero_point = self._params(low, high)
        shifted = np.rint(float(zero_point) + chain.offset / float(scale))
        if not (np.isfinite(shifted) and 0 <= shifted <= 255):
            return None
        return np.float32(scale / chain.scale), np.array(shifted, dtype=np.uint8)

    def absorbed_affine(
        self, chain: AffineChain, written: tuple[np.float32, np.ndarray], low: float, high: float
    ) -> None:
        """t quantized once with `written` (from absorbed_params), read as y: the caller drops the chain's Mul/Add."""
        scale, zero_point = self._params(low, high)
        self.scales[chain.output] = scale
        read = self._store_params(chain.output, scale, zero_point)
        self._quantize_pair(chain.source, chain.output, self._store_params(chain.source, *written), read)

    def weight(self, name: str, axis: int | None, scale: np.ndarray | None) -> tuple[str, np.ndarray]:
        """(dequantized name, scale) of the int8 weight."""
        key = (name, axis)
        if key in self.weights:
            return self.weights[key]
        bits = self.options.weight_bits
        value = self.index.constant_value(name).astype(np.float32)
        if scale is None and self.weight_cache is not None:
            # the int8 weight depends on the values and the settings only: a search re-uses it across trials
            content = (
                hashlib.blake2b(value.tobytes(), digest_size=16).digest(),
                value.shape,
                axis,
                bits,
                self.options.bias_correct,
            )
            if content not in self.weight_cache:
                self.weight_cache[content] = self._quantized(name, value, axis, bits, None)
            q, scale = self.weight_cache[content]
        else:
            q, scale = self._quantized(name, value, axis, bits, scale)
        base = name if not any(k[0] == name for k in self.weights) else f"{name}_axis{axis}"
        self.weights[key] = (self._dequantized_constant(base, q, scale, axis), scale)
        return self.weights[key]

    def _quantized(
        self, name: str, value: np.ndarray, axis: int | None, bits: int, scale: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(int weight, scale): abs-max scales unless learned ones are given, then bias correction if asked."""
        scale = weight_scales(value, axis, bits) if scale is None else np.asarray(scale, dtype=np.float32)
        if axis is not None and scale.shape != (value.shape[axis],):
            raise DataError(f"weight scales for {name!r} have shape {scale.shape}; expected ({value.shape[axis]},)")
        if axis is None and scale.size != 1:
            raise DataError(f"weight {name!r} is quantized per tensor but got {scale.size} scales")
        scale = scale.reshape(-1) if axis is not None else scale.reshape(())
        q = quantize_weight(value, scale, axis, bits)
        if self.options.bias_correct:
            q = bias_corrected_weight(value, q, scale, axis, bits)
        return q, scale

    def _dequantized_constant(self, base: str, q: np.ndarray, scale: np.ndarray, axis: int | None) -> str:
        """Store q (zero point 0) with its scale and dequantize it once at the head of the graph."""
        self.initializers += [
            numpy_helper.from_array(q, f"{base}_quantized"),
            numpy_helper.from_array(scale, f"{base}_scale"),
            numpy_helper.from_array(np.zeros(scale.shape, dtype=q.dtype), f"{base}_zero_point"),
        ]
        attributes = {"axis": axis} if axis is not None else {}
        self.head.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
                [f"{base}_dequantized"],
                name=f"{base}_DequantizeLinear",
                **attributes,
            )
        )
        return f"{base}_dequantized"

    def bias(self, name: str, input_name: str, weight_name: str, weight_scale: np.ndarray) -> str | None:
        """Dequantized name of the int32 bias, or None when it does not fit (the bias then stays float)."""
        key = (name, input_name, weight_name)
        if key in self.biases:
            return self.biases[key]
        value = self.index.constant_value(name)
        scale = (self.scales[input_name] * weight_scale).astype(np.float32)
        if value.ndim != 1 or scale.size not in (1, value.size):
            return None
        if not np.all(scale >= np.finfo(np.float32).tiny):  # the product underflowed: 1/scale would be inf
            return None
        q = np.rint(value.astype(np.float64) / scale)
        if not np.all(np.abs(q) <= _INT32_MAX):
            return None
        base = name if not any(k[0] == name for k in self.biases) else f"{name}_{len(self.biases)}"
        self.biases[key] = self._dequantized_constant(base, q.astype(np.int32), scale, 0 if scale.ndim == 1 else None)
        return self.biases[key]


def _constant_range(index: GraphIndex, name: str) -> tuple[float, float]:
    value = index.constant_value(name)
    return float(np.min(value)), float(np.max(value))


def write_qdq_model(
    model: onnx.ModelProto,
    activation_ranges: Mapping[str, tuple[float, float] | float],
    options: QDQOptions = QDQOptions(),
    weight_scales: Mapping[str, np.ndarray] | None = None,
    weight_cache: WeightCache | None = None,
) -> tuple[onnx.ModelProto, QuantPlan]:
    """The QDQ model and the plan it followed.

    activation_ranges maps each tensor of plan.activation_tensors to (min, max), or to an abs-max T
    meaning (-T, T). weight_scales optionally maps weight names to learned scales (per channel or scalar).
    weight_cache, a dict kept by the caller, holds int weights for later calls on models with the same weights.
    """
    options.validate()
    large = weights_layout(model) is WeightsLayout.EXTERNAL
    model = copy_model(model)
    model = name_nodes(_ensure_opset(model))  # the plan's nodes carry the names the report shows
    plan = plan_quantization(model, options)
    missing = [t for t in plan.activation_tensors if t not in activation_ranges]
    if missing:
        raise DataError(f"no calibration range for tensors {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    index = GraphIndex(model)
    writer = _GraphWriter(index, options, weight_cache)
    weight_scales = weight_scales or {}
    chains: dict[str, tuple[AffineChain, tuple[np.float32, np.ndarray]]] = {}
    for chain in affine_chains(index, {p.output: p.node for p in plan.nodes if p.output}):
        written = writer.absorbed_params(chain, *_as_range(activation_ranges[chain.output]))
        if written is not None:
            chains[chain.source] = (chain, written)
            record_absorbed(index, chain)
    absorbed = {id(node) for chain, _ in chains.values() for node in chain.nodes}

    for node_plan in plan.nodes:
        node = node_plan.node
        if id(node) in absorbed:
            continue
        for name in node_plan.activation_inputs:
            writer.activation(name, *_as_range(activation_ranges[name]))
        for name in node_plan.constant_inputs:
            writer.activation(name, *_constant_range(index, name))
        if node_plan.weight is not None:
            position, name, axis = node_plan.weight
            node.input[position], scale = writer.weight(name, axis, weight_scales.get(name))
            bias = _int32_bias_input(node, index, writer)
            if bias is not None:
                node.input[bias] = writer.bias(node.input[bias], node.input[0], name, scale) or node.input[bias]
        if node_plan.output in chains:
            chain, written = chains[node_plan.output]
            writer.absorbed_affine(chain, written, *_as_range(activation_ranges[chain.output]))
        elif node_plan.output:
            writer.activation(node_plan.output, *_as_range(activation_ranges[node_plan.output]))

    plan.mark_absorbed([n.name for n in model.graph.node if id(n) in absorbed])
    kept = [n for n in model.graph.node if id(n) not in absorbed]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    _rewire_and_order(model, writer)
    _remove_unused(model)
    # the copy still holds the float weights it dropped: a model over 2 GB keeps only its int8 ones
    return (compacted(model) if large else model), plan


def _int32_bias_input(node: onnx.NodeProto, index: GraphIndex, writer: _GraphWriter) -> int | None:
    """The input index of node's bias when it gets int32 storage: a float constant after a quantized input (QGemm
    also needs beta 1)."""
    bias = op_facts(node.op_type).bias_input
    takes_int32 = (
        bias is not None
        and not writer.options.symmetric_activations
        and len(node.input) > bias
        and _is_float_constant(index, node.input[bias])
        and node.input[0] in writer.scales
        and (node.op_type != "Gemm" or attribute(node, "beta", 1.0) == 1.0)
    )
    return bias if takes_int32 else None


def _as_range(value: tuple[float, float] | float) -> tuple[float, float]:
    if np.ndim(value) == 0:
        return -float(value), float(value)
    low, high = value
    return float(low), float(high)


def _rewire_and_order(model: onnx.ModelProto, writer: _GraphWriter) -> None:
    """Point consumers at dequantized tensors and splice the new nodes in topological order."""
    graph = model.graph
    new_nodes = list(writer.head)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in writer.renamed:
                node.input[i] = writer.renamed[name]
        new_nodes.append(node)
        for out in node.output:
            new_nodes.extend(writer.after_tensor.get(out, []))
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(writer.initializers)


def _used_names(graph: onnx.GraphProto) -> set[str]:
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                used |= _used_names(sub)
    return used


def _remove_unused(model: onnx.ModelProto) -> None:
    """Drop float weights and Constant nodes that only the quantized nodes read."""
    used = _used_names(model.graph)
    kept_nodes = [n for n in model.graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    del model.graph.node[:]
    model.graph.node.extend(kept_nodes)
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
