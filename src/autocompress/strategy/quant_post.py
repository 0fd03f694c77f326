"""QuantPost stage: calibrate once, quantize to ONNX QDQ, optionally search settings and fall back to float.

Flow: fold BN into convs -> collect statistics once for the largest batch_num (cached across runs, with
histograms for every batch_num the search may ask for) -> one PTQ with the configured settings, or an Optuna
search over HyperParameterOptimization's space reusing the statistics -> optional accuracy-driven fallback
(max_metric_drop) -> the best model, with a warning in the stage info when it runs slower than the float input.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import onnx

from autocompress.config.strategies import HyperParameterOptimization, QuantPost
from autocompress.graph.prepare import simplify_for_quantization
from autocompress.quant.fallback import fewest_float_nodes, node_sensitivity
from autocompress.quant.mixed_precision import MixedPrecisionJob, MixedPrecisionPlan, OpChoice, plan_mixed_precision
from autocompress.quant.ptq import PTQInfo, all_float, calibration_tensors, quantize_post_training
from autocompress.quant.qdq import NodeDecision, QDQOptions, WeightCache, check_skip_names
from autocompress.quant.statistics import ActivationStatistics, collect_statistics
from autocompress.runtime.ort import measure_latency
from autocompress.search.hpo import Trial, search_ptq
from autocompress.strategy.base import CompressionContext, Stage, StageResult
from autocompress.strategy.deadline import stopped_note
from autocompress.strategy.records import OPS_KEY, Candidate, OpRecord, StageInfo, quantization_ops

log = logging.getLogger(__name__)

#: Calibration batches used to rank op sensitivity for the fallback.
SENSITIVITY_BATCHES = 2
#: The latency probe of trials and of the int8-vs-float check: short, it only has to rank models.
LATENCY_PROBE = {"warmup": 2, "runs": 10, "max_seconds": 3.0}


def structure_key(model: onnx.ModelProto) -> str:
    """Hash of a graph without its tensor values: nodes (op, wiring, attributes), initializer names, types, shapes."""
    digest = hashlib.sha256()
    graph = model.graph
    for node in graph.node:
        digest.update(f"{node.domain}:{node.op_type}|{list(node.input)}|{list(node.output)}|".encode())
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:  # a Constant's value: keep its type and shape only
                digest.update(f"{attribute.name}={attribute.t.data_type}{list(attribute.t.dims)};".encode())
            else:
                digest.update(attribute.SerializeToString(deterministic=True))
    for tensor in graph.initializer:
        digest.update(f"{tensor.name}|{tensor.data_type}|{list(tensor.dims)};".encode())
    for value in (*graph.input, *graph.output):
        digest.update(value.SerializeToString(deterministic=True))
    return digest.hexdigest()


class LatencyProbe:
    """Median latency in ms, measured once per graph structure.

    ORT's speed depends on which nodes run and on tensor types and shapes, not on the values of scales,
    zero points or weights: trials that differ only in ranges (algo, hist_percent, batch_num, bias_correct)
    share one measurement instead of paying a session and its runs each.
    """

    def __init__(self, ctx: CompressionContext) -> None:
        self.ctx = ctx
        self.measured: dict[str, float] = {}

    def __call__(self, model: onnx.ModelProto) -> float:
        key = structure_key(model)
        if key not in self.measured:
            ctx = self.ctx
            latency = measure_latency(model, ctx.sample_feed, ctx.hardware, ctx.threads, **LATENCY_PROBE)
            self.measured[key] = latency.median_ms
        return self.measured[key]


class QuantPostStage(Stage):
    key = "QuantPost"

    @property
    def name(self) -> str:
        return "QuantPost+HPO" if self.config.strategies.get("HyperParameterOptimization") else "QuantPost"

    def _quantize(
        self, model: onnx.ModelProto, stats: ActivationStatistics, params: dict[str, Any], skip: Sequence[str] = ()
    ) -> tuple[onnx.ModelProto, PTQInfo]:
        """The section's options with the searched settings of `params`, and `skip` also left in float."""
        return quantize_post_training(
            model,
            stats,
            self._options,
            algo=params["algo"],
            hist_percent=params.get("hist_percent", self.section.hist_percent),
            batch_num=params.get("batch_num"),
            weight_cache=self._weight_cache,
            weight_quantize_type=params["weight_quantize_type"],
            bias_correct=params["bias_correct"],
            skip_names=(*self._options.skip_names, *skip),
        )

    def _calibrate(
        self, model, ctx: CompressionContext, batch_nums: int | None, prefixes: Iterable[int], algorithms: Iterable[str]
    ) -> ActivationStatistics:
        if ctx.train_batches is None:
            from autocompress.errors import ConfigError  # noqa: PLC0415

            raise ConfigError("QuantPost needs calibration data: pass train_dataloader")
        tensors = calibration_tensors(model, self._options)
        return collect_statistics(
            model,
            ctx.train_batches.feeds(),
            tensors,
            batch_nums=batch_nums,
            activation_bits=self._options.activation_bits,
            cache_dir=ctx.config.global_.resolved_cache_dir(),
            prefixes=prefixes,
            algorithms=algorithms,
            deadline=ctx.deadline,
        )

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        cfg: QuantPost = self.section
        self._weight_cache: WeightCache = {}  # trials, the final model and the fallback share the int weights
        self._options = QDQOptions.from_section(cfg, ctx.hardware)
        hpo: HyperParameterOptimization | None = self.config.strategies.get("HyperParameterOptimization")
        float_model = model
        model = simplify_for_quantization(model, ctx.sample_feed)
        check_skip_names(model, cfg.skip_tensor_list or ())
        batch_nums = max(hpo.batch_num) if hpo else cfg.batch_nums
        prefixes = range(min(hpo.batch_num), max(hpo.batch_num) + 1) if hpo else ()
        # only what the searched (or the one configured) range algorithms read: the rest costs most of the pass
        stats = self._calibrate(model, ctx, batch_nums, prefixes, hpo.ptq_algo if hpo else [cfg.algo])
        latency = LatencyProbe(ctx)
        info: dict[str, Any] = {"calibration_batches": stats.num_batches}
        best, candidates = self._best(model, stats, ctx, hpo, latency, info)
        best = self._precision(model, stats, ctx, best, info)
        info.update(
            {
                "params": best.params,
                "score": best.score,
                "metric": best.metric,
                **_precision_record(best.ptq, best.float_nodes),
            }
        )
        info.update(_speed_check(latency(float_model), latency(best.model), ctx.hardware.name))
        info[OPS_KEY] = (
            mixed_precision_ops(best.ptq.decisions, best.mixed.choices)
            if best.mixed
            else quantization_ops(best.ptq.decisions, info.get("float_fallback_nodes", ()))
        )
        return StageResult(best.model, StageInfo.from_mapping(info), candidates)

    @staticmethod
    def _score(ctx: CompressionContext, candidate: onnx.ModelProto) -> tuple[float, float]:
        """(drop from the baseline, metric) of a candidate."""
        metric = ctx.evaluator(candidate)
        return ctx.evaluator.drop(ctx.baseline_metric, metric), metric

    def _best(self, model, stats, ctx, hpo, latency, info: dict[str, Any]) -> tuple[_Chosen, list[Candidate]]:
        """The configured settings' model, or the best of the search (its trials go into `info` and candidates)."""
        cfg: QuantPost = self.section
        if hpo is None:
            params = {
                "algo": cfg.algo,
                "hist_percent": cfg.hist_percent,
                "bias_correct": cfg.bias_correct,
                "weight_quantize_type": cfg.weight_quantize_type,
                "batch_num": cfg.batch_nums,
            }
            quantized, ptq_info = self._quantize(model, stats, params)
            return _Chosen(params, quantized, ptq_info, *self._score(ctx, quantized)), []
        trials = self._search(model, stats, ctx, hpo, lambda m: self._score(ctx, m), latency)
        best = min(trials, key=lambda t: t.score)
        # quantizing again from the cached statistics is cheap and deterministic; no model is kept per trial
        quantized, ptq_info = self._quantize(model, stats, best.params)
        info["trials"] = [
            {"params": t.params, "score": t.score, "metric": t.metric, "seconds": t.seconds} for t in trials
        ]
        if len(trials) < hpo.max_quant_count:  # the search only ends early at the deadline
            info["search_stopped"] = stopped_note(len(trials), hpo.max_quant_count, "trials")
        candidates = [
            Candidate(params=t.params, metric=t.metric, score=t.score, latency_ms=t.extra["latency_ms"]) for t in trials
        ]
        return _Chosen(best.params, quantized, ptq_info, best.score, best.metric), candidates

    def _precision(self, model, stats, ctx, best: _Chosen, info: dict[str, Any]) -> _Chosen:
        """`best` with the ops that mixed precision or the max_metric_drop fallback put back to float."""
        cfg: QuantPost = self.section
        if cfg.mixed_precision == "auto":
            mixed = self._mixed_precision(model, stats, ctx, best.params)
            quantized, ptq_info = self._with_float_ops(model, stats, best.params, best.ptq, mixed.float_ops)
            info.update(mixed.record())
            return _Chosen(best.params, quantized, ptq_info, *self._score(ctx, quantized), mixed=mixed)
        if cfg.max_metric_drop is not None and best.score > cfg.max_metric_drop:
            fallback = self._fallback(model, stats, ctx, best.params, best.ptq, cfg.max_metric_drop)
            info.update(fallback.record())
            return _Chosen(
                best.params, fallback.model, fallback.ptq, fallback.drop, fallback.metric, fallback.float_nodes
            )
        return best

    def _mixed_precision(self, model, stats, ctx: CompressionContext, params: dict[str, Any]) -> MixedPrecisionPlan:
        """The per-op plan of QuantPost.mixed_precision: auto, within max_metric_drop (metric units) or else
        Global.auto_max_relative_drop (relative), on the calibration batches and the deploy target."""
        cfg: QuantPost = self.section
        # the drop that counts as 100 %: the baseline for a user metric, the outputs' spread for EMD (baseline 0)
        unit = ctx.evaluator.tolerance(ctx.baseline_metric, 1.0)
        relative = ctx.config.global_.auto_max_relative_drop
        max_drop = relative * unit if cfg.max_metric_drop is None else cfg.max_metric_drop
        job = MixedPrecisionJob(
            model=model,
            options=self._options,
            quantize=lambda float_ops: self._quantize(model, stats, params, float_ops)[0],
            feeds=list(islice(iter(ctx.train_batches.feeds()), SENSITIVITY_BATCHES)),
            sample_feed=ctx.sample_feed,
            hardware=ctx.hardware,
            threads=ctx.threads,
            tolerance=max_drop / unit if unit > 0 else relative,
            max_drop=max_drop,
            drop_of=lambda candidate: ctx.evaluator.drop(ctx.baseline_metric, ctx.evaluator(candidate)),
            cache_dir=ctx.config.global_.resolved_cache_dir(),
            settings=json.dumps(params, sort_keys=True),
            deadline=ctx.deadline,
        )
        return plan_mixed_precision(job)

    def _with_float_ops(
        self, model, stats, params, quantized: PTQInfo, float_ops: list[str]
    ) -> tuple[onnx.ModelProto, PTQInfo]:
        """The model with float_ops in float; with every quantized op among them, the float model itself."""
        if set(quantized.quantized_nodes) <= set(float_ops):
            return model, all_float(quantized)
        return self._quantize(model, stats, params, float_ops)

    def _search(
        self,
        model,
        stats,
        ctx: CompressionContext,
        hpo: HyperParameterOptimization,
        score_of: Callable[[onnx.ModelProto], tuple[float, float]],
        latency: LatencyProbe,
    ) -> list[Trial]:
        """The trials of the Optuna search over HyperParameterOptimization's space."""
        # The QDQ model is a function of the activation ranges and the weight settings alone; other settings
        # often give the same ranges (mse/emd/abs_max keep their best batch for any larger batch_num), and
        # then the model is identical and its score is reused instead of evaluated again.
        scores: dict[tuple, tuple[float, float]] = {}

        def evaluate(params: dict[str, Any]):
            candidate, trial_info = self._quantize(model, stats, params)
            ranges = tuple(sorted(trial_info.ranges.items()))
            same_model = (params["weight_quantize_type"], params["bias_correct"], ranges)
            if same_model not in scores:
                scores[same_model] = score_of(candidate)
            score, metric = scores[same_model]
            return score, metric, {"latency_ms": round(latency(candidate), 4)}

        # finished trials go to a journal in the work dir: a killed search resumes without losing them. The
        # name is keyed by the settings, so a rerun with another search space does not mix in old trials.
        settings = json.dumps([hpo.to_dict(), self.section.to_dict()], sort_keys=True).encode()
        journal = ctx.work_dir / self.key / f"hpo_{hashlib.sha256(settings).hexdigest()[:16]}.log"
        return search_ptq(hpo, evaluate, journal_path=journal, deadline=ctx.deadline)

    def _fallback(self, model, stats, ctx, params, quantized: PTQInfo, max_drop: float) -> _Fallback:
        """The fewest most sensitive ops back in float that bring the metric drop within max_drop; with every op
        in float the result is the float model itself."""
        nodes = quantized.quantized_nodes
        feeds = list(islice(iter(ctx.train_batches.feeds()), SENSITIVITY_BATCHES))
        sensitivity = node_sensitivity(model, nodes, lambda skip: self._quantize(model, stats, params, skip)[0], feeds)
        results: dict[int, tuple[onnx.ModelProto, PTQInfo, float, float]] = {}

        def drop_of(float_nodes: list[str]) -> float:
            if len(float_nodes) == len(nodes):
                candidate, ptq = model, all_float(quantized)
            else:
                candidate, ptq = self._quantize(model, stats, params, float_nodes)
            metric = ctx.evaluator(candidate)
            drop = ctx.evaluator.drop(ctx.baseline_metric, metric)
            results[len(float_nodes)] = (candidate, ptq, drop, metric)
            return drop

        float_nodes, _ = fewest_float_nodes(list(sensitivity), drop_of, max_drop)
        candidate, ptq, drop, metric = results[len(float_nodes)]
        warnings = []
        if len(float_nodes) == len(nodes):
            reached = "is met" if drop <= max_drop else f"is not met (drop {drop:.4g})"
            warnings.append(
                f"QuantPost.max_metric_drop = {max_drop:g} {reached} only with all {len(nodes)} quantized ops back in "
                "float: the result is the float model, with no int8 op; allow a larger drop to keep ops in int8"
            )
            log.warning(warnings[-1])
        return _Fallback(candidate, ptq, drop, metric, float_nodes, sensitivity, warnings)


@dataclass
class _Chosen:
    """The settings QuantPost keeps, their int8 model and record, its drop and metric, and the ops put back to
    float (by the max_metric_drop fallback, or by the mixed-precision plan)."""

    params: dict[str, Any]
    model: onnx.ModelProto
    ptq: PTQInfo
    score: float
    metric: float
    float_nodes: list[str] = field(default_factory=list)
    mixed: MixedPrecisionPlan | None = None


@dataclass
class _Fallback:
    """The model the accuracy-driven fallback settled on, and what it put back to float."""

    model: onnx.ModelProto
    ptq: PTQInfo
    drop: float
    metric: float
    float_nodes: list[str]
    sensitivity: dict[str, float]
    warnings: list[str]

    def record(self) -> dict[str, Any]:
        out = {"float_fallback_nodes": self.float_nodes, "sensitivity": self.sensitivity}
        return {**out, "warnings": self.warnings} if self.warnings else out


def mixed_precision_ops(decisions: Iterable[NodeDecision], choices: Iterable[OpChoice]) -> list[OpRecord]:
    """The per-op rows of a mixed-precision model: the plan's precision, reason, sensitivity and gain for the ops
    it weighed, the writer's verdict for the others."""
    planned = {choice.name: choice for choice in choices}
    rows = []
    for decision in decisions:
        choice = planned.get(decision.node)
        if choice is None:
            rows.append(
                OpRecord(decision.node, decision.op_type, "int8" if decision.int8 else "float", decision.reason)
            )
        else:
            rows.append(
                OpRecord(
                    choice.name,
                    choice.op_type,
                    "int8" if choice.int8 else "float",
                    choice.reason,
                    sensitivity=float(f"{choice.sensitivity:.4g}"),
                    gain_ms=round(choice.gain_ms, 4),
                )
            )
    return rows


def _precision_record(ptq: PTQInfo, fallback_nodes: list[str]) -> dict[str, Any]:
    """The final state of every op the quantizer considered: int8, or float and why."""
    fallback = set(fallback_nodes)
    precision = dict.fromkeys(ptq.quantized_nodes, "int8")
    for name in ptq.skipped_nodes:
        precision[name] = "float: metric fallback" if name in fallback else "float: skipped (skip list or float stem)"
    return {
        "quantized_op_counts": ptq.quantized_op_counts,
        "quantized_nodes": len(ptq.quantized_nodes),
        "op_precision": precision,
    }


def _speed_check(float_ms: float, int8_ms: float, hardware: str) -> dict[str, Any]:
    """Latencies and speedup of the result against the stage's float input, with a warning when int8 is slower.

    int8 is not always faster: on small or depthwise-heavy nets, Q/DQ overhead can outweigh the int8 kernels.
    The result is kept as it is; the warning tells the user to compare with the float model.
    """
    speedup = float_ms / max(int8_ms, 1e-9)
    info: dict[str, Any] = {
        "float_latency_ms": round(float_ms, 4),
        "int8_latency_ms": round(int8_ms, 4),
        "int8_speedup": round(speedup, 3),
    }
    if speedup < 1.0:
        info["warning"] = (
            f"the int8 model is slower than the float input on {hardware}: {int8_ms:.3f} ms vs {float_ms:.3f} ms "
            f"(speedup {speedup:.2f}x); consider keeping the float model or quantizing fewer ops"
        )
        log.warning(info["warning"])
    return info
