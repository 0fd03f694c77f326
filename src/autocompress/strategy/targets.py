"""target_speedup parsing and model-type detection used by the automatic strategy choice."""

from __future__ import annotations

import re

import onnx

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex


def parse_target_speedup(value: float | str | None) -> float | None:
    """Return the wanted latency ratio fp32/compressed (2.0 = twice as fast).

    Two unambiguous spellings:
    - a number in (0, 1): PaddleSlim ACT's definition, 1 - latency/fp32_latency (0.5 -> 2x faster);
    - a string ending in 'x' ("2x", "1.5x"): the plain ratio.
    A number >= 1 is refused, since it could mean either.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*x", text)
        if match:
            ratio = float(match.group(1))
            if ratio <= 1.0:
                raise ConfigError(f"target_speedup {value!r}: a ratio must be above 1x")
            return ratio
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(
                f"target_speedup {value!r} is not understood; write a ratio such as '2x', or ACT's fraction "
                "1 - latency/fp32_latency such as 0.5"
            ) from None
    value = float(value)
    if 0.0 < value < 1.0:
        return 1.0 / (1.0 - value)
    raise ConfigError(
        f"target_speedup {value} is ambiguous or out of range: use a fraction in (0, 1) "
        "(ACT's 1 - latency/fp32_latency) or a string ratio such as '2x'"
    )


_SCALE_OPS = {"Div", "Mul"}
_PASS_OPS = {"Add", "Where", "Cast", "Reshape"}
_AFTER_SOFTMAX_OPS = {"IsNaN", "Dropout", "Identity"}


def _is_dynamic_matmul(index: GraphIndex, node: onnx.NodeProto) -> bool:
    return node.op_type == "MatMul" and not any(index.is_constant(i) for i in node.input)


def count_attention_blocks(model: onnx.ModelProto) -> int:
    """Softmax nodes fed by a MatMul of two activations (Q·Kᵀ) and feeding one (·V): scaled dot-product attention."""
    index = GraphIndex(model)
    blocks = 0
    for node in model.graph.node:
        if node.op_type != "Softmax":
            continue
        # walk up through scale/mask ops to the score MatMul
        current = index.producer.get(node.input[0])
        steps = 0
        while current is not None and current.op_type in _SCALE_OPS | _PASS_OPS and steps < 4:
            current = next(
                (index.producer[i] for i in current.input if i in index.producer and not index.is_constant(i)), None
            )
            steps += 1
        if current is None or not _is_dynamic_matmul(index, current):
            continue
        if _feeds_dynamic_matmul(index, node.output[0]):
            blocks += 1
    return blocks


def _feeds_dynamic_matmul(index: GraphIndex, tensor: str, steps: int = 3) -> bool:
    """Whether `tensor` reaches a MatMul of two activations directly or through pass-through ops (a NaN guard
    `Where(IsNaN(p), 0, p)` as torch's exporter writes after scaled-dot-product softmax, a Cast, a Dropout)."""
    for consumer in index.consumers.get(tensor, []):
        if _is_dynamic_matmul(index, consumer):
            return True
        if steps > 0 and consumer.op_type in _PASS_OPS | _AFTER_SOFTMAX_OPS:
            if any(_feeds_dynamic_matmul(index, out, steps - 1) for out in consumer.output):
                return True
    return False


def detect_model_type(model: onnx.ModelProto) -> str:
    """'transformer' if the graph has attention blocks, else 'cnn'."""
    return "transformer" if count_attention_blocks(model) > 0 else "cnn"


#: Seconds of the automatic choice on a model of at most 1 GMAC with 2 or more cores.
BASE_TIME_BUDGET_S = 600.0


def default_time_budget(macs: int, cores: int) -> float:
    """Global.time_budget when unset: BASE_TIME_BUDGET_S up to 1 GMAC on 2 cores, proportional to the MACs above
    that, doubled on a single core. More cores do not shrink it, since calibration, the torch training steps and
    the 1-thread latency measurements do not speed up with them."""
    return BASE_TIME_BUDGET_S * max(1.0, macs / 1e9) * max(1.0, 2.0 / max(cores, 1))
