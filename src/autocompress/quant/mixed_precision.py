"""Per-op mixed precision: which ops run in int8, chosen from their sensitivity and their int8 gain on the target.

Quantizing every supported op alike makes small mobile nets slower than float (int8 depthwise and thin convs, Q/DQ
pairs around ops without an integer kernel) and loses a detector's scores when they share one scale with box
coordinates. So each op gets two numbers: its sensitivity (quant/op_sensitivity.py, the relative output error it
causes alone in int8) and its gain (runtime/profile.py, float time minus int8 time with the Q/DQ it needs). Ops
are taken greedily by gain per unit of sensitivity while the summed sensitivity stays within the allowed drop;
ops whose int8 form is slower, and ops that write or read a tensor whose channels span very different ranges,
stay float. The whole model is then verified with the user's metric and with latency measured interleaved with
the float model; when either disagrees, the most sensitive (or least gainful) int8 ops go back to float, for a
bounded number of rounds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from autocompress.graph.index import GraphIndex, attribute
from autocompress.quant.fold import fold_conv_affine
from autocompress.quant.op_sensitivity import op_sensitivity
from autocompress.quant.qdq import QDQOptions, QuantPlan, plan_quantization, tensor_types
from autocompress.quant.statistics import channel_ranges
from autocompress.runtime.latency import compare_latency
from autocompress.runtime.ort import HardwareTarget
from autocompress.runtime.profile import QDQOwners, node_times, price_ops

log = logging.getLogger(__name__)

#: Why an op runs in int8 or stays float (OpChoice.reason).
CHOSEN = "best gain per sensitivity within tolerance"
ALL_INT8 = "every op in int8 passed the whole-model check"
SLOWER = "slower in int8 on the target"
OVER_TOLERANCE = "over tolerance: its sensitivity would cross the allowed drop"
MIXED_RANGE = "mixed-range tensor: its channels span very different ranges"
STEPPED_BACK = "over tolerance: put back after the whole-model metric missed the allowed drop"
STEPPED_BACK_SLOW = "slower in int8: put back after the whole model measured no faster than float"
UNVERIFIED = "no plan passed the whole-model check"
#: Widest over narrowest channel span beyond which the narrow channels get at most one step of an 8-bit scale
#: fitted to the whole tensor.
MIXED_RANGE_RATIO = 256.0
#: A candidate counts as faster when the interleaved comparison settles that it beats float by this factor: one op
#: in int8 can look 10% faster on a loaded machine, so a lower median is not enough.
MIN_SPEEDUP = 1.05
#: Whole-model verifications before the plan gives up and stays float.
MAX_ROUNDS = 4
#: After a check that missed the allowed drop, the int8 share kept is this fraction of allowed drop / measured drop.
DROP_MARGIN = 0.5
#: Runs per profile (a median over a few, since single times jump), and the most seconds a verification's
#: latency comparison may take before it stays undecided.
PROFILE_RUNS = 5
LATENCY_SECONDS = 10.0


@dataclass(frozen=True)
class OpChoice:
    """One op's precision in the plan and why, with the two numbers it was chosen from."""

    name: str
    op_type: str
    int8: bool
    reason: str
    sensitivity: float
    gain_ms: float


@dataclass(frozen=True)
class Verification:
    """One whole-model check: the metric drop and the interleaved latencies."""

    int8_ops: int
    drop: float
    float_ms: float
    int8_ms: float
    within_tolerance: bool
    #: whether the interleaved comparison settled that the candidate is MIN_SPEEDUP times faster (None: only the
    #: medians are known, and faster means a lower median)
    faster: bool | None = None

    @property
    def accepted(self) -> bool:
        faster = self.int8_ms < self.float_ms if self.faster is None else self.faster
        return self.within_tolerance and faster


def mixed_range_candidates(model: onnx.ModelProto) -> dict[str, int | None]:
    """The float tensors whose channels may mix ranges, with their channel axis: Concat outputs (the Concat's
    axis) and graph outputs (None: the layout's channel axis). Concats that build integer shapes are left out, as
    are tensors of unknown type: reading them as float outputs would not load."""
    types = tensor_types(model)
    candidates: dict[str, int | None] = {
        n.output[0]: attribute(n, "axis", 1) for n in model.graph.node if n.op_type == "Concat"
    }
    for output in model.graph.output:
        candidates.setdefault(output.name, None)
    return {name: axis for name, axis in candidates.items() if types.get(name) == onnx.TensorProto.FLOAT}


def mixed_range_tensors(
    ranges: Mapping[str, tuple[np.ndarray, np.ndarray]], ratio: float = MIXED_RANGE_RATIO
) -> list[str]:
    """The tensors whose widest channel span exceeds `ratio` times their narrowest non-constant one."""
    mixed = []
    for name, (low, high) in ranges.items():
        spans = np.asarray(high, np.float64) - np.asarray(low, np.float64)
        spans = spans[np.isfinite(spans) & (spans > 0)]
        if spans.size > 1 and spans.max() > ratio * spans.min():
            mixed.append(name)
    return mixed


def mixed_range_ops(model: onnx.ModelProto, tensors: Sequence[str], ops: Sequence[str]) -> list[str]:
    """The ops of `ops` that write a mixed tensor (a Concat and the last of `ops` on each of its inputs) or read it."""
    index = GraphIndex(model)
    involved: set[str] = set()
    for tensor in tensors:
        writer = index.producer.get(tensor)
        if writer is not None:
            involved.add(writer.name)
            if writer.op_type == "Concat":
                involved |= {_last_op(index, name, set(ops)) for name in writer.input}
        involved |= {reader.name for reader in index.consumers.get(tensor, [])}
    return [op for op in ops if op in involved]


def _last_op(index: GraphIndex, tensor: str, ops: set[str]) -> str:
    """The nearest op of `ops` upstream of tensor along first inputs (a Sigmoid or a folded Mul is passed over);
    "" when there is none."""
    node = index.producer.get(tensor)
    while node is not None and node.name not in ops and node.input:
        node = index.producer.get(node.input[0])
    return node.name if node is not None and node.name in ops else ""


def greedy_plan(
    op_types: Mapping[str, str],
    sensitivity: Mapping[str, float],
    gains: Mapping[str, float],
    tolerance: float,
    forced: Mapping[str, str],
) -> list[OpChoice]:
    """int8 for the ops with the best gain per unit of sensitivity while the summed sensitivity stays within
    `tolerance`; ops with no gain, over the tolerance or in `forced` (op -> reason) stay float."""
    choices: dict[str, OpChoice] = {}
    ranked = sorted(op_types, key=lambda op: -gains.get(op, 0.0) / max(sensitivity.get(op, 0.0), 1e-12))
    spent = 0.0
    for op in ranked:
        score, gain = sensitivity.get(op, 0.0), gains.get(op, 0.0)
        if op in forced or gain <= 0:
            reason, int8 = forced.get(op, SLOWER), False
        elif spent + score > tolerance:
            reason, int8 = OVER_TOLERANCE, False
        else:
            reason, int8, spent = CHOSEN, True, spent + score
        choices[op] = OpChoice(op, op_types[op], int8, reason, score, gain)
    return [choices[op] for op in op_types]


def step_back(choices: Sequence[OpChoice], slower: bool, keep: float = 2 / 3) -> list[OpChoice]:
    """The least gainful third (at least one) of the int8 ops back to float when the model was not faster; else the
    most sensitive ones, until at most `keep` of them (by count and by summed sensitivity) stay int8."""
    int8 = [c for c in choices if c.int8]
    if slower:
        back = {c.name for c in sorted(int8, key=lambda c: c.gain_ms)[: max(1, math.ceil(len(int8) / 3))]}
        return [replace(c, int8=False, reason=STEPPED_BACK_SLOW) if c.name in back else c for c in choices]
    ranked = sorted(int8, key=lambda c: -c.sensitivity)
    most = max(1, len(ranked) - 1)  # the least sensitive op is worth one more check
    count = min(most, max(1, math.ceil(len(int8) * (1.0 - keep))))
    left = sum(c.sensitivity for c in ranked[count:])
    while count < most and left > keep * sum(c.sensitivity for c in int8):
        left -= ranked[count].sensitivity
        count += 1
    back = {c.name for c in ranked[:count]}
    return [replace(c, int8=False, reason=STEPPED_BACK) if c.name in back else c for c in choices]


def keep_least_sensitive(choices: Sequence[OpChoice], count: int) -> list[OpChoice]:
    """`count` int8 ops: the least sensitive of the chosen ones and of those stepped back for the drop."""
    pool = sorted((c for c in choices if c.int8 or c.reason == STEPPED_BACK), key=lambda c: c.sensitivity)
    kept = {c.name for c in pool[:count]}
    pooled = {c.name for c in pool}
    return [
        (replace(c, int8=True, reason=CHOSEN) if c.name in kept else replace(c, int8=False, reason=STEPPED_BACK))
        if c.name in pooled
        else c
        for c in choices
    ]


def kept_share(check: Verification, max_drop: float | None) -> float:
    """The share of the int8 ops to keep after a check that missed the allowed drop: the drop is taken as
    proportional to the int8 ops' summed sensitivity (to first order it is), with a margin of DROP_MARGIN for the
    error of that estimate; a third goes back at least, and all but one op at most."""
    if max_drop is None or check.drop <= 0:
        return 2 / 3
    return min(2 / 3, DROP_MARGIN * max_drop / check.drop)


def verified_plan(
    choices: list[OpChoice],
    verify: Callable[[list[str]], Verification],
    rounds: int = MAX_ROUNDS,
    max_drop: float | None = None,
    deadline: float | None = None,
) -> tuple[list[OpChoice], list[Verification]]:
    """The plan after at most `rounds` whole-model checks (`verify(float_ops)`); with none passed, every op stays
    float. After a check over the allowed drop, the most sensitive ops go back to float (by as much as the drop
    exceeds `max_drop`, when given); after one within it but not faster, the least gainful go back, or, when more
    int8 ops are known to miss the drop, the count moves halfway towards them (a bisection on the ranked ops)."""
    history: list[Verification] = []
    over, within = None, 0  # fewest int8 ops known over the allowed drop; most known within it but not faster
    for _ in range(rounds):
        count = sum(c.int8 for c in choices)
        if not count:
            return choices, history
        if deadline is not None and time.perf_counter() >= deadline:
            log.info("precision checks stopped at the time budget after %d check(s)", len(history))
            break
        history.append(verify([c.name for c in choices if not c.int8]))
        check = history[-1]
        if check.accepted:
            return choices, history
        if check.within_tolerance and over is None:
            choices = step_back(choices, slower=True)
            continue
        over, within = (over, count) if check.within_tolerance else (count, within)
        if over - within <= 1:
            break
        if within:  # both bounds known: halfway between them
            choices = keep_least_sensitive(choices, (within + over) // 2)
        else:
            choices = step_back(choices, False, keep=kept_share(check, max_drop))
    return [replace(c, int8=False, reason=UNVERIFIED) if c.int8 else c for c in choices], history


@dataclass
class MixedPrecisionJob:
    """What the planner needs: the float model, how it is quantized (`quantize(float_ops)`), the calibration
    feeds, the target, and the allowed drop: `tolerance` as a relative output error for the greedy choice,
    `max_drop` in the metric's units for `drop_of`, the user's metric's drop of a model."""

    model: onnx.ModelProto
    options: QDQOptions
    quantize: Callable[[list[str]], onnx.ModelProto]
    feeds: Sequence[Mapping[str, np.ndarray]]
    sample_feed: Mapping[str, np.ndarray]
    hardware: HardwareTarget
    threads: int
    tolerance: float
    max_drop: float
    drop_of: Callable[[onnx.ModelProto], float]
    cache_dir: str | None = None
    settings: str = ""
    deadline: float | None = None  # a time.perf_counter() instant: no sensitivity run or check starts after it


@dataclass
class MixedPrecisionPlan:
    """The chosen precision per op, the verifications that led there, and what the user should know."""

    choices: list[OpChoice]
    verifications: list[Verification] = field(default_factory=list)
    mixed_tensors: list[str] = field(default_factory=list)

    @property
    def float_ops(self) -> list[str]:
        return [c.name for c in self.choices if not c.int8]

    def record(self) -> dict:
        """The plan's figures for the stage's details (the per-op rows are written from `choices`)."""
        return {
            "mixed_precision": {
                "int8_ops": sum(c.int8 for c in self.choices),
                "float_ops": len(self.float_ops),
                "mixed_range_tensors": self.mixed_tensors,
                "verifications": [{**vars(v), "accepted": v.accepted} for v in self.verifications],
            }
        }


def sensitivity_alone(
    model: onnx.ModelProto,
    ops: Sequence[str],
    quantize: Callable[[list[str]], onnx.ModelProto],
    feeds: Sequence[Mapping[str, np.ndarray]],
    cache_dir: str | None,
    settings: str,
    deadline: float | None,
) -> Callable[[list[str]], dict[str, float]]:
    """`sensitivity_of(scored)` for choose_precision: op_sensitivity of the ops of `scored`, each quantized alone,
    every other op of `ops` (scored or not) float; `quantize(float_ops)` quantizes `model` with float_ops float."""

    def sensitivity_of(scored: list[str]) -> dict[str, float]:
        unscored = [op for op in ops if op not in scored]
        alone = lambda float_ops: quantize([*float_ops, *unscored])  # noqa: E731 - the scored op alone in int8
        return op_sensitivity(model, scored, alone, feeds, cache_dir, settings, deadline)

    return sensitivity_of


def choose_precision(
    op_types: Mapping[str, str],
    gains: Mapping[str, float],
    forced: Mapping[str, str],
    sensitivity_of: Callable[[list[str]], dict[str, float]],
    tolerance: float,
    verify: Callable[[list[str]], Verification],
    max_drop: float | None,
    deadline: float | None = None,
) -> tuple[list[OpChoice], list[Verification]]:
    """The verified per-op choice. First every op goes int8 and the whole model is checked, then every op that
    gains alone (the profile prices each op against float neighbours, so ops cheap in a chain of int8 ops can look
    no faster): when one passes (the faster, when both do), no sensitivity is needed (each score costs one quantization and session per op).
    Otherwise only the ops that gain are scored (`sensitivity_of(ops)`: the others stay float anyway), then the greedy plan within
    `tolerance` is verified and stepped back (verified_plan). A set of float ops is verified once."""
    checked: dict[frozenset[str], Verification] = {}

    def verify_once(float_ops: list[str]) -> Verification:
        key = frozenset(float_ops)
        if key not in checked:
            checked[key] = verify(float_ops)
        return checked[key]

    every = [
        replace(c, gain_ms=gains.get(c.name, 0.0), reason=ALL_INT8 if c.int8 else c.reason)
        for c in greedy_plan(op_types, {}, dict.fromkeys(op_types, 1.0), math.inf, forced)
    ]
    optimistic = greedy_plan(op_types, {}, gains, math.inf, forced)
    history: list[Verification] = []
    passed = []
    for first in (every, optimistic):
        float_ops = [c.name for c in first if not c.int8]
        if len(float_ops) < len(first) and frozenset(float_ops) not in checked:
            history.append(verify_once(float_ops))
            if history[-1].accepted:
                passed.append((history[-1].int8_ms / history[-1].float_ms, first))
    if passed:
        return min(passed, key=lambda item: item[0])[1], history
    sensitivity = sensitivity_of([c.name for c in optimistic if c.int8])
    choices = greedy_plan(op_types, sensitivity, gains, tolerance, forced)
    choices, verified = verified_plan(choices, verify_once, max_drop=max_drop, deadline=deadline)
    return choices, history + verified


def plan_mixed_precision(job: MixedPrecisionJob) -> MixedPrecisionPlan:
    """The per-op plan for job.model: sensitivity, int8 gain and mixed ranges, then the verified greedy choice."""
    plan = plan_quantization(fold_conv_affine(job.model, keep=job.options.skip_names)[0], job.options)
    op_types = {p.node.name: p.node.op_type for p in plan.nodes}
    ops = list(op_types)
    mixed = mixed_range_tensors(channel_ranges(job.model, job.feeds, mixed_range_candidates(job.model)))
    forced = dict.fromkeys(mixed_range_ops(job.model, mixed, ops), MIXED_RANGE)
    gains = _gains(job, plan, ops)

    sensitivity_of = sensitivity_alone(
        job.model, ops, job.quantize, job.feeds, job.cache_dir, job.settings, job.deadline
    )
    choices, history = choose_precision(
        op_types,
        gains,
        forced,
        sensitivity_of,
        job.tolerance,
        lambda f: _verify(job, ops, f),
        job.max_drop,
        job.deadline,
    )
    log.info(
        "mixed precision: %d of %d ops in int8 after %d check(s)", sum(c.int8 for c in choices), len(ops), len(history)
    )
    return MixedPrecisionPlan(choices, history, mixed)


def _gains(job: MixedPrecisionJob, plan: QuantPlan, ops: list[str]) -> dict[str, float]:
    """Each op's int8 gain in ms on the target, from profiles of the float and the all-int8 model."""
    readers: dict[str, list[str]] = {}
    for node_plan in plan.nodes:
        for name in node_plan.node.input:
            readers.setdefault(name, []).append(node_plan.node.name)
    writers = {p.output: p.node.name for p in plan.nodes if p.output}
    owners = QDQOwners({k: tuple(v) for k, v in readers.items()}, writers)
    profile = {"hardware": job.hardware, "threads": job.threads, "runs": PROFILE_RUNS}
    float_times = node_times(job.model, job.sample_feed, **profile)
    int8_times = node_times(job.quantize([]), job.sample_feed, **profile)
    outputs = {p.node.output[0]: p.node.name for p in plan.nodes}
    prices = price_ops(ops, float_times, int8_times, owners, outputs)
    return {op: price.gain_ms for op, price in prices.items()}


def _verify(job: MixedPrecisionJob, ops: list[str], float_ops: list[str]) -> Verification:
    """The whole model with `float_ops` in float, judged by the user's metric and by interleaved latency."""
    speed = (job.sample_feed, job.hardware, job.threads)
    int8_ops = len(ops) - len(float_ops)
    return verify_candidate(job.model, job.quantize(float_ops), int8_ops, job.drop_of, job.max_drop, *speed)


def verify_candidate(
    model: onnx.ModelProto,
    candidate: onnx.ModelProto,
    int8_ops: int,
    drop_of: Callable[[onnx.ModelProto], float],
    max_drop: float,
    feed: Mapping[str, np.ndarray],
    hardware: HardwareTarget,
    threads: int,
) -> Verification:
    """A candidate with `int8_ops` int8 ops against `model`: its metric drop (`drop_of`, allowed up to `max_drop`)
    and both latencies on `feed`, measured in interleaved rounds until their ratio is settled or a time cap."""
    drop = drop_of(candidate)
    speed = compare_latency(
        [model, candidate], feed, hardware, threads, threshold=MIN_SPEEDUP, max_seconds=LATENCY_SECONDS
    )
    float_ms, int8_ms = (m.median_ms for m in speed.models)
    log.info(
        "precision check: %d int8 ops, drop %.4g, %.3f ms vs %.3f ms float (speedup interval %s, %s)",
        int8_ops,
        drop,
        int8_ms,
        float_ms,
        speed.ratios[0].interval,
        speed.ratios[0].verdict,
    )
    return Verification(int8_ops, drop, float_ms, int8_ms, drop <= max_drop, speed.ratios[0].verdict == "above")
