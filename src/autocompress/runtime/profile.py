"""Per-node time on the target from ONNX Runtime's profiler, and each op's price in int8.

Whole-model latency says whether a quantized model is faster, not which ops made it so. ORT's profiler
(`SessionOptions.enable_profiling`) times every kernel it runs. After graph optimization the int8 model's
kernels carry the names of the nodes they came from: a fused QLinearConv keeps its Conv's name (with a
`_token_<n>` suffix when the layout pass rewrote it), and the Q/DQ nodes the fusion could not absorb keep the
QDQ writer's names, `<tensor>_QuantizeLinear` / `<tensor>_DequantizeLinear`. Those left-over Q/DQ nodes are
the price of an int8 op next to a float one (a Conv feeding an op without an integer kernel pays the
DequantizeLinear of its output; the Conv after it, the QuantizeLinear of its input), so they are charged to
the int8 op that needs them.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from autocompress.runtime.ort import HardwareTarget, model_source, resolve_hardware

_QUANTIZE, _DEQUANTIZE = "_QuantizeLinear", "_DequantizeLinear"
#: Suffix ORT's layout and fusion passes append to the node they rewrite.
_TOKEN = "_token_"


def node_times(
    model: onnx.ModelProto,
    feed: Mapping[str, np.ndarray],
    hardware: str | HardwareTarget = "cpu",
    threads: int = 1,
    runs: int = 5,
) -> dict[str, float]:
    """Median time in ms of every kernel ORT runs for one inference of `model` (after a warm-up run), by node name;
    medians over `runs` because single kernel times on a shared machine jump by several times."""
    target = hardware if isinstance(hardware, HardwareTarget) else resolve_hardware(hardware)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # ORT writes its profile into the working directory unless told otherwise: keep it in a folder of our own
    with tempfile.TemporaryDirectory(prefix="autocompress-profile-") as folder:
        options.profile_file_prefix = os.path.join(folder, "ort_profile")
        with model_source(model) as source:
            session = ort.InferenceSession(source, sess_options=options, providers=list(target.providers))
        for _ in range(runs + 1):
            session.run(None, dict(feed))
        with open(session.end_profiling(), encoding="utf-8") as handle:
            events = json.load(handle)
    return _median_times(events, runs)


def _median_times(events: Iterable[Mapping], runs: int) -> dict[str, float]:
    """Per node, the median of its last `runs` kernel times (the first run is the warm-up), in ms."""
    times: dict[str, list[float]] = defaultdict(list)
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            times[name[: -len("_kernel_time")]].append(float(event["dur"]) / 1000.0)
    return {name: statistics.median(values[-runs:]) for name, values in times.items()}


@dataclass(frozen=True)
class QDQOwners:
    """Which int8 op pays for the Q/DQ of each tensor: the ops reading it as a quantized input (its Quantize)
    and the op whose quantized output it is (its Dequantize)."""

    readers: Mapping[str, tuple[str, ...]]
    writers: Mapping[str, str]

    def owners(self, tensor: str, quantize: bool) -> tuple[str, ...]:
        """The ops charged for the Q (quantize) or DQ of `tensor`; the other side when that side has none."""
        writer = (self.writers[tensor],) if tensor in self.writers else ()
        readers = tuple(self.readers.get(tensor, ()))
        first, second = (readers, writer) if quantize else (writer, readers)
        return first or second


def source_op(kernel: str, names: Mapping[str, str]) -> str | None:
    """The op ORT's kernel `kernel` was made from, given `names` (a node's name or its output's -> the op): the
    same name, or a name with the suffix a rewrite appended (the longest such name wins). ORT's NCHWc pass names
    its convolutions after their output tensor (`<output>_nchwc`)."""
    if kernel in names:
        return names[kernel]
    base = kernel.split(_TOKEN)[0]
    matches = [name for name in names if base == name or base.startswith(f"{name}_")]
    return names[max(matches, key=len)] if matches else None


@dataclass(frozen=True)
class OpPrice:
    """One op's time in float and in int8 (its kernel plus the Q/DQ it needs), in ms; gain > 0 means int8 wins."""

    float_ms: float
    int8_ms: float
    qdq_ms: float

    @property
    def gain_ms(self) -> float:
        return self.float_ms - (self.int8_ms + self.qdq_ms)


def price_ops(
    ops: Iterable[str],
    float_times: Mapping[str, float],
    int8_times: Mapping[str, float],
    owners: QDQOwners,
    outputs: Mapping[str, str] | None = None,
) -> dict[str, OpPrice]:
    """Each op's float time, int8 kernel time and the Q/DQ time charged to it (shared Q/DQ split evenly);
    `outputs` maps each op's output tensor to the op, for kernels ORT names after their output."""
    ops = list(ops)
    names = {**(outputs or {}), **{op: op for op in ops}}
    float_ms, int8_ms, qdq_ms = _summed(float_times, names), _summed(int8_times, names), dict.fromkeys(ops, 0.0)
    for kernel, ms in int8_times.items():
        for suffix, quantize in ((_QUANTIZE, True), (_DEQUANTIZE, False)):
            if kernel.endswith(suffix):
                payers = [op for op in owners.owners(kernel[: -len(suffix)], quantize) if op in qdq_ms]
                for op in payers:
                    qdq_ms[op] += ms / len(payers)
    return {op: OpPrice(float_ms.get(op, 0.0), int8_ms.get(op, 0.0), qdq_ms[op]) for op in ops}


def _summed(times: Mapping[str, float], names: Mapping[str, str]) -> dict[str, float]:
    """Kernel times added up per source op (an op may run as several kernels); Q/DQ kernels are left out."""
    out: dict[str, float] = defaultdict(float)
    for kernel, ms in times.items():
        if kernel.endswith((_QUANTIZE, _DEQUANTIZE)):
            continue
        op = source_op(kernel, names)
        if op is not None:
            out[op] += ms
    return dict(out)
