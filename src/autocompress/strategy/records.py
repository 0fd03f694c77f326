"""The typed records a stage hands back: what it learned (StageInfo) and every model it tried (Candidate).

The report, the automatic choice and the HTML page read these by attribute; report.json holds their `to_dict()`.
Only the standard library is imported here, so the report can be written and read without torch or ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import onnx

#: StageInfo's typed fields, as report.json names them; every other key of a stage's info is a detail.
TYPED_KEYS = ("metric", "plan", "reasons", "warnings")
#: The detail holding a stage's OpRecord list: what it did to each op or weight.
OPS_KEY = "ops"
#: Why a quantizable op stays in float after the accuracy-driven fallback put it back.
FALLBACK_REASON = "fallback after sensitivity (max_metric_drop)"


@dataclass(frozen=True)
class OpRecord:
    """What a stage did to one op or weight, and why: a row of the report's per-op table.

    `action` is "int8" or "float" (quantization), "pruned" or "kept" (channels, with `kept` of `original`
    channels), "sparse" or "dense" (weight sparsity, with the fraction of zeros in `sparsity`). A mixed-precision
    plan adds the two numbers it chose from: `sensitivity` (relative output error of the op alone in int8) and
    `gain_ms` (its float time minus its int8 time with the Q/DQ it needs, on the target).
    """

    name: str
    op_type: str
    action: str
    reason: str = ""
    kept: int | None = None
    original: int | None = None
    sparsity: float | None = None
    sensitivity: float | None = None
    gain_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as report.json lists it; fields that do not apply are left out."""
        out: dict[str, Any] = {"name": self.name, "op_type": self.op_type, "action": self.action}
        if self.reason:
            out["reason"] = self.reason
        optional = {
            "kept": self.kept,
            "original": self.original,
            "sparsity": self.sparsity,
            "sensitivity": self.sensitivity,
            "gain_ms": self.gain_ms,
        }
        out.update({key: value for key, value in optional.items() if value is not None})
        return out


def sparsity_ops(sparse: Mapping[str, float], dense: Mapping[str, str], op_types: Mapping[str, str]) -> list[OpRecord]:
    """The per-weight rows of a sparse model: the fraction of zeros of each pruned weight, and why the others
    stayed dense."""
    rows = [
        OpRecord(name, op_types.get(name, ""), "sparse", sparsity=round(float(value), 4))
        for name, value in sparse.items()
    ]
    return rows + [OpRecord(name, op_types.get(name, ""), "dense", reason) for name, reason in dense.items()]


class QuantDecision(Protocol):
    """The quantizer's verdict on one node (quant.qdq.NodeDecision), as the records read it."""

    node: str
    op_type: str
    int8: bool
    reason: str


def quantization_ops(decisions: Iterable[QuantDecision], fallback: Iterable[str] = ()) -> list[OpRecord]:
    """The per-op rows of a quantized model: the writer's verdict per node, with the nodes the fallback put
    back in float marked as such."""
    back = set(fallback)
    rows = []
    for decision in decisions:
        if decision.node in back:
            rows.append(OpRecord(decision.node, decision.op_type, "float", FALLBACK_REASON))
        else:
            rows.append(
                OpRecord(decision.node, decision.op_type, "int8" if decision.int8 else "float", decision.reason)
            )
    return rows


@dataclass
class StageInfo:
    """What one stage reports about its run.

    `metric` is the stage's own score of its result (when it measured one), `plan` and `reasons` the steps an
    automatic choice took and why, `warnings` what the user should know about the result. `details` holds the
    stage-specific figures (trials, sparsity, pruned groups, training history) as JSON data; `stages` the records
    of the sub-stages an automatic plan ran, keyed by strategy.
    """

    metric: float | None = None
    plan: list[str] | None = None
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, StageInfo] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, info: Mapping[str, Any]) -> StageInfo:
        """The record of a stage that reports a plain mapping: typed keys are lifted out, the rest are details.
        A single "warning" text counts as one warning."""
        details = {k: v for k, v in info.items() if k not in (*TYPED_KEYS, "warning")}
        warnings = list(info.get("warnings") or [])
        if info.get("warning"):
            warnings.append(str(info["warning"]))
        plan = info.get("plan")
        return cls(
            metric=info.get("metric"),
            plan=None if plan is None else list(plan),
            reasons=list(info.get("reasons") or []),
            warnings=warnings,
            details=details,
        )

    @property
    def ops(self) -> list[OpRecord]:
        """The per-op rows this stage recorded (none when it records no per-op facts)."""
        return list(self.details.get(OPS_KEY, []))

    def to_dict(self) -> dict[str, Any]:
        """The record as report.json holds it: details and sub-stages flat beside the typed fields."""
        out: dict[str, Any] = dict(self.details)
        if OPS_KEY in out:
            out[OPS_KEY] = [op.to_dict() for op in self.ops]
        out.update({key: sub.to_dict() for key, sub in self.stages.items()})
        if self.metric is not None:
            out["metric"] = self.metric
        if self.plan is not None:
            out["plan"] = list(self.plan)
        if self.reasons or self.plan is not None:
            out["reasons"] = list(self.reasons)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


#: Candidate fields written only when known, in this order after stage, params, metric and latency_ms.
_OPTIONAL_FIELDS = ("label", "score", "speedup", "size_mb", "accepted", "reason")


@dataclass
class Candidate:
    """One model a stage tried (a search trial, a probe of the automatic choice) and how it fared.

    `model` and `info` let the stage that tried it keep the winner without building it again; neither is
    serialised.
    """

    stage: str = ""
    label: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metric: float | None = None
    latency_ms: float | None = None
    score: float | None = None
    speedup: float | None = None
    size_mb: float | None = None
    accepted: bool | None = None
    reason: str | None = None
    model: onnx.ModelProto | None = field(default=None, repr=False, compare=False)
    info: StageInfo | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The candidate as report.json lists it."""
        out: dict[str, Any] = {
            "stage": self.stage,
            "params": dict(self.params),
            "metric": self.metric,
            "latency_ms": self.latency_ms,
        }
        out.update({name: getattr(self, name) for name in _OPTIONAL_FIELDS if getattr(self, name) is not None})
        return out
