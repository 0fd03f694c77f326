"""Automatic strategy choice, used when the config names no strategy.

Without target_speedup (ACT's flow, with thresholds that make sense):
  CNN: a cheap PTQ trial (plus a variant that keeps depthwise convs in float, whose int8 kernels are often slower
  on CPUs); keep the fastest candidate whose metric drop is within Global.auto_max_relative_drop (1% by default;
  for EMD, 1% of the spread of the original outputs). Else a full PTQ search; else QAT with distillation.
  Transformer: TransformerPrune + distillation, then PTQ.
  If no int8 candidate is faster than the float model on the deploy hardware, the float model is kept and the
  report says why: an int8 model that runs slower is no compression a user wants.
With target_speedup: cheap candidates (uniform channel pruning at several ratios without fine-tuning, int8 with a
quick calibration, and both) are measured on the deploy hardware; the least aggressive plan that reaches the
target is then run with fine-tuning. Latencies are cached per model and hardware, so a rerun is quick.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from autocompress.config.loader import CompressConfig
from autocompress.config.strategies import ChannelPrune, Distillation, HyperParameterOptimization, QuantPost, TransformerPrune
from autocompress.errors import AutoCompressError, StrategyNotImplementedError
from autocompress.graph.index import attribute
from autocompress.graph.naming import stable_names
from autocompress.graph.stats import model_size_mb
from autocompress.prune.channel import prune_channels
from autocompress.runtime.ort import measure_latency
from autocompress.strategy.base import CompressionContext, Stage, StageResult, stage_class
from autocompress.strategy.records import Candidate, StageInfo
from autocompress.strategy.targets import detect_model_type, parse_target_speedup

log = logging.getLogger(__name__)

#: Calibration batches of the cheap PTQ trial.
TRIAL_BATCHES = 8
#: Channel-pruning ratios probed for target_speedup, least aggressive first.
PRUNE_RATIOS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: An int8 model must beat the float one by this factor to be worth keeping.
MIN_INT8_GAIN = 1.05


def _sub_config(config: CompressConfig, strategies: dict[str, Any]) -> CompressConfig:
    sub = copy.copy(config)
    sub.strategies = strategies
    return sub


@dataclass(frozen=True)
class _Option:
    """A plan probed for target_speedup: the channel ratio it prunes, whether it quantizes, and its latency."""

    label: str
    prune_ratio: float
    int8: bool
    latency_ms: float

    def candidate(self, base_ms: float) -> Candidate:
        speedup = base_ms / self.latency_ms
        return Candidate(label=self.label, params={"plan": self.label}, latency_ms=self.latency_ms, speedup=speedup)


class AutoStage(Stage):
    key = "Auto"

    def __init__(self, config: CompressConfig):
        super().__init__(config)
        self.target = parse_target_speedup(config.global_.target_speedup)
        self.plan: list[str] = []
        self.reasons: list[str] = []

    @property
    def name(self) -> str:
        return "Auto[" + " -> ".join(self.plan) + "]" if self.plan else "Auto"

    def _run_sub(self, strategies: dict[str, Any], model, ctx) -> StageResult:
        """Run the stages of `strategies` in order; their records become sub-stages of this one's."""
        sub = _sub_config(self.config, strategies)
        keys = [k for k in sub.stage_keys if not (k == "Distillation" and len(strategies) > 1)]
        result = StageResult(model)
        for key in keys:
            stage = stage_class(key)(sub)
            out = stage.run(result.model, ctx)
            result.model = out.model
            result.info.stages[key] = out.info
            result.candidates += out.candidates
            self.plan.append(stage.name)
        return result

    def _latency(self, model, ctx) -> float:
        return measure_latency(model, ctx.sample_feed, ctx.hardware, ctx.threads, warmup=3, runs=20, max_seconds=10).median_ms

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        kind = detect_model_type(model)
        self.reasons.append(f"model type: {kind}")
        if not ctx.hardware.measured:
            self.reasons.append(ctx.hardware.note)
        if self.target is not None:
            result = self._for_target(model, ctx)
        elif kind == "transformer":
            self.reasons.append("transformer: prune heads/FFN with distillation, then int8")
            result = self._run_sub({"TransformerPrune": TransformerPrune(), "Distillation": Distillation(),
                                    "QuantPost": QuantPost(batch_nums=TRIAL_BATCHES)}, model, ctx)
        else:
            result = self._cnn(model, ctx)
        result.info.plan, result.info.reasons = self.plan, self.reasons
        result.info.details = {"model_type": kind, **result.info.details}
        return result

    # -- CNN without a speed target -------------------------------------------------------------------------
    def _acceptable(self, ctx, metric: float) -> bool:
        tolerance = ctx.evaluator.tolerance(ctx.baseline_metric, self.config.global_.auto_max_relative_drop)
        return ctx.evaluator.drop(ctx.baseline_metric, metric) <= tolerance

    def _ptq(self, label: str, strategies: dict[str, Any], model, ctx) -> tuple[Candidate, list[Candidate]]:
        """One QuantPost run as a candidate of the choice (the model and record kept), and the candidates it tried."""
        out = stage_class("QuantPost")(_sub_config(self.config, strategies)).run(model, ctx)
        accepted = self._acceptable(ctx, out.info.metric)
        tried = Candidate(
            label=label,
            params={"variant": label},
            metric=out.info.metric,
            latency_ms=self._latency(out.model, ctx),
            size_mb=round(model_size_mb(out.model), 4),
            accepted=accepted,
            reason=None if accepted else "metric drop beyond the tolerance",
            model=out.model,
            info=out.info,
        )
        return tried, out.candidates

    def _cnn(self, model, ctx) -> StageResult:
        base_latency = self._latency(model, ctx)
        # stable names: QuantPost's BN folding keeps them on the folded convs (graph/naming.py)
        nodes = model.graph.node
        depthwise = [name for node, name in zip(nodes, stable_names(nodes))
                     if node.op_type == "Conv" and attribute(node, "group", 1) > 1]
        variants = {"int8": QuantPost(batch_nums=TRIAL_BATCHES, algo="KL")}
        if depthwise:
            variants["int8 (depthwise convs float)"] = QuantPost(batch_nums=TRIAL_BATCHES, algo="KL", skip_tensor_list=depthwise)
        tried = [self._ptq(label, {"QuantPost": section}, model, ctx)[0] for label, section in variants.items()]
        candidates = list(tried)
        accepted = [t for t in tried if t.accepted]
        if not accepted:
            self.reasons.append("PTQ trial dropped the metric beyond tolerance: full PTQ search")
            search = {"QuantPost": QuantPost(algo="KL"), "HyperParameterOptimization": HyperParameterOptimization()}
            searched, trials = self._ptq("int8 (searched)", search, model, ctx)
            candidates += trials
            tried.append(searched)
            if searched.accepted:
                accepted = [searched]
            else:
                best_ptq = min(tried, key=lambda t: ctx.evaluator.drop(ctx.baseline_metric, t.metric))
                qat = self._qat_if_better(model, ctx, best_ptq.metric)
                if qat is not None:
                    return StageResult(qat.model, qat.info, candidates + qat.candidates)
                accepted = [best_ptq]
                self.reasons.append("no int8 plan met the tolerance; the most accurate one is kept")
        return self._fastest(model, base_latency, tried, accepted, candidates, ctx)

    def _fastest(
        self, model, base_latency: float, tried: list[Candidate], accepted: list[Candidate], candidates: list[Candidate], ctx
    ) -> StageResult:
        """The fastest accepted int8 model, or the float model when no int8 one is faster on the deploy hardware."""
        fastest = min(accepted, key=lambda t: t.latency_ms)
        if fastest.latency_ms * MIN_INT8_GAIN > base_latency:
            self.reasons.append(
                f"int8 is not faster on {ctx.hardware.name} ({fastest.latency_ms:.3f} ms vs float "
                f"{base_latency:.3f} ms): the float model is kept"
            )
            self.plan.append("float (int8 slower here)")
            return StageResult(model, StageInfo(details={"trials": [t.info.to_dict() for t in tried]}), candidates)
        self.plan.append(f"QuantPost: {fastest.label}")
        self.reasons.append(f"chose {fastest.label}: metric {fastest.metric:.6g}, {fastest.latency_ms:.3f} ms")
        return StageResult(fastest.model, StageInfo(stages={"QuantPost": fastest.info}), candidates)

    def _qat_if_better(self, model, ctx, best_ptq_metric: float) -> StageResult | None:
        """QAT with distillation, kept only if it beats the best PTQ model: a short QAT can end below a searched
        PTQ of the same int8 layers, and then it is no improvement."""
        try:
            stage_class("QuantAware")
        except StrategyNotImplementedError:
            return None
        self.reasons.append("PTQ search missed the tolerance: quantization-aware training with distillation")
        from autocompress.config.strategies import QuantAware  # noqa: PLC0415

        plan_before = list(self.plan)
        qat = self._run_sub({"QuantAware": QuantAware(), "Distillation": Distillation()}, model, ctx)
        qat_metric = ctx.evaluator(qat.model)
        drop = lambda metric: ctx.evaluator.drop(ctx.baseline_metric, metric)  # noqa: E731
        if drop(qat_metric) <= drop(best_ptq_metric):
            return qat
        self.plan = plan_before
        self.reasons.append(f"QAT reached metric {qat_metric:.6g}, below the best PTQ's {best_ptq_metric:.6g}: "
                            "the PTQ model is kept")
        return None

    # -- target speedup --------------------------------------------------------------------------------------
    def _latency_cache(self, model, ctx) -> tuple[Path, dict[str, float]]:
        key = hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:24]
        shapes = "_".join(f"{k}{list(v.shape)}" for k, v in sorted(ctx.sample_feed.items()))
        name = f"{key}_{ctx.hardware.name}_{ctx.threads}t_{hashlib.sha1(shapes.encode()).hexdigest()[:8]}.json"
        path = Path(self.config.global_.resolved_cache_dir()) / "latency" / name
        table = json.loads(path.read_text()) if path.is_file() else {}
        return path, table

    def _for_target(self, model, ctx) -> StageResult:
        base, options = self._probe_options(model, ctx)
        # least aggressive first: less pruning, then float before int8 at equal pruning
        order = sorted(options, key=lambda o: (o.prune_ratio, o.int8))
        reaching = [o for o in order if base / o.latency_ms >= self.target]
        if reaching:
            chosen = reaching[0]
            self.reasons.append(
                f"target {self.target:.2f}x: '{chosen.label}' measures {base / chosen.latency_ms:.2f}x on {ctx.hardware.name}"
            )
        else:
            chosen = min(options, key=lambda o: o.latency_ms)
            self.reasons.append(
                f"target {self.target:.2f}x is not reachable with these strategies on {ctx.hardware.name}; the best "
                f"reachable is {base / chosen.latency_ms:.2f}x ('{chosen.label}'), which is used"
            )
        strategies: dict[str, Any] = {}
        if chosen.prune_ratio > 0:
            # the same MACs as the uniform ratio the latency was probed at, taken where the outputs change least
            strategies["ChannelPrune"] = ChannelPrune(
                pruned_ratio=chosen.prune_ratio, criterion="output_error", ratio_allocation="sensitivity"
            )
            strategies["Distillation"] = Distillation()
        if chosen.int8:
            strategies["QuantPost"] = QuantPost(algo="KL", batch_nums=TRIAL_BATCHES)
        result = self._run_sub(strategies, model, ctx)
        result.candidates = [o.candidate(base) for o in options] + result.candidates
        result.info.details.update(target_speedup=self.target, reachable=bool(reaching))
        return result

    def _probe_options(self, model, ctx) -> tuple[float, list[_Option]]:
        """The float latency and the latency of each cheap plan (uniform pruning, quick int8, both), cached."""
        path, table = self._latency_cache(model, ctx)

        def latency(label: str, build) -> float:
            if label not in table:
                table[label] = self._latency(build(), ctx)
            return table[label]

        quick_int8 = lambda m: stage_class("QuantPost")(_sub_config(self.config, {"QuantPost": QuantPost(batch_nums=2, algo="abs_max")})).run(m, ctx).model  # noqa: E731
        base = latency("fp32", lambda: model)
        options = [_Option("int8", 0.0, True, latency("int8", lambda: quick_int8(model)))]
        for ratio in PRUNE_RATIOS:
            try:
                pruned, _ = prune_channels(model, ratio, input_shapes={k: list(v.shape) for k, v in ctx.sample_feed.items()})
            except AutoCompressError as exc:
                self.reasons.append(f"channel pruning unavailable: {exc}")
                break
            options.append(_Option(f"prune {ratio:.0%}", ratio, False, latency(f"prune{ratio}", lambda: pruned)))
            options.append(_Option(f"prune {ratio:.0%} + int8", ratio, True,
                                   latency(f"prune{ratio}+int8", lambda: quick_int8(pruned))))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=1))
        return base, options
