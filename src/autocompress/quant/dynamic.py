"""Dynamic int8 for transformers: int8 weights, activations quantized at run time, sensitive MatMuls kept float.

Static int8 fixes one activation range per tensor from calibration; a BERT encoder's activations (outlier
channels after LayerNorm, GELU tails, inputs of every length) do not fit one range, and static PTQ loses a
sentence encoder's embeddings. ONNX Runtime's route for transformers on CPU is dynamic quantization: each MatMul
with a constant weight becomes DynamicQuantizeLinear (the activation's range measured per call) -> MatMulInteger
-> rescale, which ORT fuses into DynamicQuantizeMatMul / MatMulIntegerToFloat. Per-channel weight scales (one
per output column) keep most of the accuracy that per-tensor weights lose. What is left comes from a few
MatMuls whose inputs carry outliers; they are found by their relative output error when quantized alone
(quant/op_sensitivity.py) and kept float by the greedy plan of quant/mixed_precision.py, which weighs each op's
sensitivity against its int8 gain in ORT's profile and verifies the whole model with the user's metric and
interleaved latency.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.graph.large import WeightsLayout, weights_layout
from autocompress.graph.naming import name_nodes
from autocompress.graph.op_facts import op_facts
from autocompress.quant.mixed_precision import (
    PROFILE_RUNS,
    MixedPrecisionPlan,
    OpChoice,
    Verification,
    choose_precision,
    sensitivity_alone,
    verify_candidate,
)
from autocompress.runtime.ort import HardwareTarget, resolve_hardware
from autocompress.runtime.profile import QDQOwners, node_times, price_ops

log = logging.getLogger(__name__)

#: The ops with a dynamic int8 kernel in ONNX Runtime when their second input is a constant weight.
DYNAMIC_OP_TYPES = ("MatMul", "Gemm")
#: The integer kernels a dynamic int8 MatMul runs as, before and after ORT's graph optimization.
DYNAMIC_KERNELS = ("MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")
#: ORT rewrites every Gemm as MatMul (+ Add) named `<gemm>_MatMul` before it chooses what to quantize.
_GEMM_AS_MATMUL = "_MatMul"
#: Prefixes ORT gives a node it fused an activation into (`fused <name>`).
_FUSED = "fused "


def dynamic_ops(model: onnx.ModelProto) -> list[str]:
    """The MatMul and Gemm nodes whose weight is a 2-D float initializer (one scale per output column), by stable
    node name.

    Attention scores (activation x activation) are left out: ORT quantizes only constant weights dynamically, and
    Gemm only in the form it can rewrite as MatMul (alpha = beta = 1, A not transposed)."""
    index = GraphIndex(model)
    found = []
    for name, node in index.nodes_by_name.items():
        if node.op_type not in DYNAMIC_OP_TYPES:
            continue
        position = op_facts(node.op_type).weight_input
        weight = index.initializers.get(node.input[position]) if position < len(node.input) else None
        if weight is None or weight.data_type != onnx.TensorProto.FLOAT or len(weight.dims) != 2:
            continue
        if node.op_type == "Gemm" and not _plain_gemm(node):
            continue
        found.append(name)
    return found


def _plain_gemm(node: onnx.NodeProto) -> bool:
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return values.get("alpha", 1.0) == 1.0 and values.get("beta", 1.0) == 1.0 and values.get("transA", 0) == 0


def quantize_dynamic_int8(
    model: onnx.ModelProto, float_ops: Sequence[str] = (), per_channel: bool = True
) -> onnx.ModelProto:
    """`model` with every op of dynamic_ops but `float_ops` in dynamic int8: S8 weights (one scale per output
    column when `per_channel`), U8 activations quantized at run time. Inputs, outputs and the names of the nodes
    left float are kept; a quantized op's kernel is named `<op>_quant` (`<op>_MatMul_quant` for a Gemm).

    ORT's quantize_dynamic does the rewrite: it excludes nodes by name, quantizes per channel and names its
    kernels after their op, which is all the per-op plan needs."""
    ops = dynamic_ops(model)
    unknown = sorted(set(float_ops) - set(ops))
    if unknown:
        raise ConfigError(f"float_ops {unknown} are not dynamic int8 ops of the model; allowed: {ops}")
    source = name_nodes(copy.deepcopy(model))
    nodes = GraphIndex(source).nodes_by_name
    excluded = [*float_ops, *(f"{op}{_GEMM_AS_MATMUL}" for op in float_ops if nodes[op].op_type == "Gemm")]
    external = weights_layout(source) is WeightsLayout.EXTERNAL
    with tempfile.TemporaryDirectory(prefix="autocompress-dynamic-") as folder, _quiet_preprocess_hint():
        path = os.path.join(folder, "dynamic.onnx")
        quantize_dynamic(
            source,
            path,
            op_types_to_quantize=["MatMul"],  # Gemm is rewritten as MatMul first; Gather (embeddings) stays float
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            use_external_data_format=external,
        )
        return onnx.load(path)


class _DropPreprocessHint(logging.Filter):
    """ORT asks for its quant_pre_process; the project's preparation (shape inference, simplification) took its
    place, so the hint, printed once per quantized candidate, says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_preprocess_hint() -> Iterator[None]:
    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(hint)


def dynamic_gains(
    model: onnx.ModelProto,
    feed: Mapping[str, np.ndarray],
    hardware: str | HardwareTarget = "cpu",
    threads: int = 1,
) -> dict[str, float]:
    """Each op's int8 gain in ms on the target: its float MatMul (with the bias Add that int8 fuses) minus its
    integer kernel and its share of the DynamicQuantizeLinear of its input, from ORT's profiles of the float and
    the all-int8 model."""
    model = name_nodes(copy.deepcopy(model))  # kernels are named after nodes: the names dynamic_ops gives
    ops = dynamic_ops(model)
    index = GraphIndex(model)
    profile = {"hardware": hardware, "threads": threads, "runs": PROFILE_RUNS}
    float_times = _by_op(node_times(model, feed, **profile), _float_kernels(index, ops))
    int8_times = node_times(quantize_dynamic_int8(model), feed, **profile)
    readers: dict[str, list[str]] = defaultdict(list)
    for op in ops:
        readers[index.nodes_by_name[op].input[0]].append(op)
    owners = QDQOwners({tensor: tuple(names) for tensor, names in readers.items()}, {})
    return {op: price.gain_ms for op, price in price_ops(ops, float_times, int8_times, owners).items()}


def _float_kernels(index: GraphIndex, ops: Sequence[str]) -> dict[str, str]:
    """Kernel names of the float model that belong to an op: ORT's fused form of it and its bias Add (the one
    reader of its output, adding a constant), which the int8 kernel absorbs."""
    kernels = {}
    for op in ops:
        kernels[f"{_FUSED}{op}"] = op
        readers = index.consumers.get(index.nodes_by_name[op].output[0], [])
        if len(readers) == 1 and readers[0].op_type == "Add" and any(map(index.is_constant, readers[0].input)):
            kernels[readers[0].name] = op
    return kernels


def _by_op(times: Mapping[str, float], kernels: Mapping[str, str]) -> dict[str, float]:
    """Kernel times with the kernels of `kernels` added to their op's time."""
    merged: dict[str, float] = defaultdict(float)
    for kernel, ms in times.items():
        merged[kernels.get(kernel, kernel)] += ms
    return dict(merged)


@dataclass
class DynamicJob:
    """What the dynamic plan needs: the float model, calibration feeds for the sensitivity, the user's metric
    (`drop_of(model) -> drop in the metric's units`, accepted up to `max_drop`), the budget of summed
    sensitivity (`tolerance`, a relative output error), the target and where to cache the sensitivity."""

    model: onnx.ModelProto
    feeds: Sequence[Mapping[str, np.ndarray]]
    drop_of: Callable[[onnx.ModelProto], float]
    tolerance: float
    max_drop: float
    hardware: HardwareTarget
    threads: int = 1
    cache_dir: str | None = None
    sample_feed: Mapping[str, np.ndarray] | None = None
    per_channel: bool = True
    deadline: float | None = None  # a time.perf_counter() instant: no sensitivity run or check starts after it

    @property
    def latency_feed(self) -> Mapping[str, np.ndarray]:
        return self.sample_feed if self.sample_feed is not None else self.feeds[0]

    def quantize(self, float_ops: Sequence[str]) -> onnx.ModelProto:
        return quantize_dynamic_int8(self.model, float_ops, self.per_channel)


def plan_dynamic(job: DynamicJob) -> tuple[onnx.ModelProto, MixedPrecisionPlan]:
    """The dynamic int8 model with its sensitive ops float, and the per-op plan that chose them: greedy by gain
    per unit of sensitivity within job.tolerance, then verified with the metric and interleaved latency. With no
    op left in int8 the model is job.model itself."""
    ops = dynamic_ops(job.model)
    if not ops:
        return job.model, MixedPrecisionPlan([])
    nodes = GraphIndex(job.model).nodes_by_name
    op_types = {op: nodes[op].op_type for op in ops}
    settings = f"dynamic int8, S8 weights per {'channel' if job.per_channel else 'tensor'}, U8 activations"
    gains = dynamic_gains(job.model, job.latency_feed, job.hardware, job.threads)

    sensitivity_of = sensitivity_alone(job.model, ops, job.quantize, job.feeds, job.cache_dir, settings, job.deadline)
    choices, history = choose_precision(
        op_types,
        gains,
        {},
        sensitivity_of,
        job.tolerance,
        lambda f: _verify(job, len(ops), f),
        job.max_drop,
        job.deadline,
    )
    plan = MixedPrecisionPlan(choices, history)
    int8 = sum(c.int8 for c in choices)
    log.info("dynamic int8: %d of %d MatMul/Gemm in int8 after %d check(s)", int8, len(ops), len(history))
    return (job.quantize(plan.float_ops) if int8 else job.model), plan


def _verify(job: DynamicJob, total: int, float_ops: list[str]) -> Verification:
    """The whole model with `float_ops` float, judged by the user's metric and latency interleaved with float."""
    speed = (job.latency_feed, job.hardware, job.threads)
    int8_ops = total - len(float_ops)
    return verify_candidate(job.model, job.quantize(float_ops), int8_ops, job.drop_of, job.max_drop, *speed)


@dataclass
class DynamicResult:
    """The chosen model (dynamic int8, or the float model when no plan passed), each op's choice, and the figures
    for the stage's record."""

    model: onnx.ModelProto
    choices: list[OpChoice]
    record: dict = field(default_factory=dict)


def dynamic_candidate(
    model: onnx.ModelProto,
    feeds: Sequence[Mapping[str, np.ndarray]],
    drop_of: Callable[[onnx.ModelProto], float],
    tolerance: float,
    max_drop: float,
    hardware: str | HardwareTarget = "cpu",
    threads: int = 1,
    cache_dir: str | None = None,
    sample_feed: Mapping[str, np.ndarray] | None = None,
    deadline: float | None = None,
) -> DynamicResult:
    """Dynamic int8 (per-channel S8 weights) of a transformer's MatMul/Gemm with the sensitive ones float.

    `feeds`: a few calibration batches (the per-op sensitivity runs on all of them, once per op); `drop_of(m)`:
    the user's metric drop of a candidate model, in the metric's units, accepted up to `max_drop`; `tolerance`:
    the allowed relative output error (summed over the int8 ops), e.g. max_drop / |baseline metric|;
    `hardware`/`threads`: the target latency is profiled and verified on; `cache_dir`: where the sensitivity is
    cached; `sample_feed`: the input latency is measured with (default feeds[0]); `deadline`: a perf_counter()
    instant after which no sensitivity run or check starts. When no plan passes the metric
    and a speed-up over float within the verification rounds, the result holds the float model and no int8 op.
    """
    target = hardware if isinstance(hardware, HardwareTarget) else resolve_hardware(hardware)
    job = DynamicJob(
        model, feeds, drop_of, tolerance, max_drop, target, threads, cache_dir, sample_feed, deadline=deadline
    )
    chosen, plan = plan_dynamic(job)
    record = {
        "dynamic_int8": {
            "per_channel": job.per_channel,
            "tolerance": tolerance,
            "max_drop": max_drop,
            **plan.record()["mixed_precision"],
        }
    }
    return DynamicResult(chosen, plan.choices, record)


def matmul_weight_share(model: onnx.ModelProto) -> float:
    """The share of the model's float weights (elements) held by the weights dynamic_ops would quantize: high for
    transformers, recurrent and MLP models, low for CNNs whose classifier is their only Gemm."""
    index = GraphIndex(model)
    sizes = {
        name: int(np.prod(tensor.dims))
        for name, tensor in index.initializers.items()
        if tensor.data_type == onnx.TensorProto.FLOAT
    }
    weights = {
        index.nodes_by_name[op].input[op_facts(index.nodes_by_name[op].op_type).weight_input]
        for op in dynamic_ops(model)
    }
    total = sum(sizes.values())
    return sum(sizes.get(name, 0) for name in weights) / total if total else 0.0
