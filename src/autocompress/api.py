"""AutoCompression: config -> plan -> stages -> export -> report (PaddleSlim's API, on ONNX)."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from autocompress import progress
from autocompress.config.loader import CompressConfig, load_config, save_config
from autocompress.data.batches import BatchAdapter, InputSpec, batch_one, input_specs
from autocompress.errors import AutoCompressError, ConfigError
from autocompress.evaluation import Evaluator
from autocompress.graph.large import WeightsLayout, save_external, stores_external_data, weights_layout
from autocompress.graph.load import load_model, resolve_model_files
from autocompress.graph.prepare import check_structure, input_signature, prepare_model
from autocompress.identity import input_files, run_identity
from autocompress.report.html import write_html
from autocompress.report.record import HardwareInfo, Report, StageRecord
from autocompress.report.summary import ModelSummary, latencies_by_threads, summarize
from autocompress.runtime.ort import Predictor, resolve_hardware, thread_counts
from autocompress.savedir import atomic_dir, check_save_dir, discard_work_dir, refuse_model_files, work_dir_for
from autocompress.strategy.base import CompressionContext, StageResult
from autocompress.strategy.deadline import deadline_after
from autocompress.strategy.plan import plan_stages
from autocompress.strategy.records import Candidate
from autocompress.train import distributed
from autocompress.train.loop import check_origin_metric

log = logging.getLogger(__name__)

#: save_dir when neither the save_dir argument nor Global.save_dir names one
DEFAULT_SAVE_DIR = "./output"


@dataclass
class CompressResult:
    """Where the result was written, report.json's content (`report`) and the same as a record (`record`)."""

    save_dir: Path
    model_path: Path
    config_path: Path
    report_path: Path
    report: dict[str, Any]
    record: Report
    baseline: ModelSummary
    compressed: ModelSummary
    strategy: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.baseline.latency_ms / max(self.compressed.latency_ms, 1e-9)


def validate_exported(model: onnx.ModelProto, feed: Mapping[str, np.ndarray], hardware) -> None:
    """onnx.checker + one ORT run with finite outputs, before anything is committed to save_dir."""
    try:
        check_structure(model)
    except Exception as exc:  # noqa: BLE001 - onnx.checker raises ValidationError and C++ errors of several types
        raise AutoCompressError(f"the compressed model fails onnx.checker: {exc}") from None
    outputs = Predictor(model, hardware)(dict(feed))
    for name, value in zip([o.name for o in model.graph.output], outputs):
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise AutoCompressError(f"the compressed model's output {name!r} has NaN/Inf; it is not saved")


@dataclass
class _Data:
    """The batches a compression reads, and the batch-1 feed its latencies are measured with."""

    specs: list[InputSpec]
    train: BatchAdapter | None
    eval: BatchAdapter | None
    sample_feed: dict[str, np.ndarray]

    def skipped(self) -> dict[str, list[int]]:
        """Per source, the batches left out for NaN or inf values."""
        sources = {"train": self.train, "eval": self.eval}
        return {name: sorted(batches.skipped) if batches is not None else [] for name, batches in sources.items()}


#: The seed's positional parameters after model_dir and train_dataloader: name, the test a value must pass, and
#: what is allowed in words. A value that fails (an argument given in another order) is a ConfigError.
_SEED_POSITIONALS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("model_filename", lambda value: isinstance(value, str), "the model file's name inside model_dir, or None"),
    ("params_filename", lambda value: isinstance(value, str), "the Paddle params file's name, or None"),
    ("save_dir", lambda value: isinstance(value, (str, os.PathLike)), "a folder path (str or os.PathLike), or None"),
    (
        "strategy_config",
        lambda value: isinstance(value, (Mapping, list, tuple)),
        "a dict of strategy sections such as {'QuantPost': QuantPost(...)}, or None (a YAML path goes to config=)",
    ),
    (
        "train_config",
        lambda value: isinstance(value, Mapping) or (hasattr(value, "__dict__") and not callable(value)),
        "a dict of TrainConfig keys or a TrainConfig object, or None",
    ),
    ("eval_callback", callable, "a function predictor -> metric, or None"),
    ("devices", lambda value: isinstance(value, str), "'cpu' or 'gpu', or None"),
)


def _check_seed_arguments(values: Mapping[str, Any]) -> None:
    """Refuse a seed-order argument of the wrong type, naming its position in the seed's signature: a call
    written for another order fails here, not later with a message about some other key."""
    order = ", ".join(["model_dir", "train_dataloader", *(name for name, _, _ in _SEED_POSITIONALS)])
    for position, (name, fits, allowed) in enumerate(_SEED_POSITIONALS, start=3):
        value = values[name]
        if value is not None and not fits(value):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ConfigError(
                f"AutoCompression argument {position}, {name}, must be {allowed}; got {type(value).__name__} "
                f"{shown}. Positional arguments follow the seed's order ({order}); pass the others by keyword"
            )


class AutoCompression:
    """Compress an exported model.

    The positional arguments follow PaddleSlim's AutoCompression (model_dir, train_dataloader, model_filename,
    params_filename, save_dir, strategy_config, train_config, eval_callback, devices); the rest are keyword-only.
    `strategy_config` / `train_config` are dicts or typed objects; `config` is a YAML path or dict holding strategy
    sections, `TrainConfig` and `Global`. `eval_callback(predictor) -> float` scores a candidate (higher is better
    unless `higher_is_better=False`), or a mapping {name: value} whose first entry is the metric; without it, the
    EMD to the original model on `eval_dataloader` is the metric. `metric_name` names the metric in the report.
    `devices` is where training runs ('cpu' or 'gpu'); `deploy_hardware` is where the model will run.
    `save_dir` (default: Global.save_dir, else './output') must be new, an empty folder or an earlier result of
    autocompress; it may sit beside the model's files but not hold them.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None,
        train_dataloader: Iterable | Callable[[], Iterable] | None,
        model_filename: str | None = None,
        params_filename: str | None = None,
        save_dir: str | os.PathLike | None = None,
        strategy_config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        train_config: Mapping[str, Any] | Any = None,
        eval_callback: Callable | None = None,
        devices: str | None = None,
        *,
        input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
        target_speedup: float | str | None = None,
        eval_dataloader: Iterable | Callable[[], Iterable] | None = None,
        deploy_hardware: str | None = None,
        config: str | os.PathLike | Mapping[str, Any] | CompressConfig | None = None,
        higher_is_better: bool | None = None,
        metric_name: str | None = None,
    ):
        _check_seed_arguments(locals())
        self.config = load_config(config, strategy_config, train_config)
        g = self.config.global_
        # Explicit arguments win over the Global section of a YAML.
        overrides = {
            "model_dir": str(model_dir) if model_dir is not None else None,
            "model_filename": model_filename,
            "params_filename": params_filename,
            "input_shapes": input_shapes,
            "deploy_hardware": deploy_hardware,
            "devices": devices,
            "higher_is_better": higher_is_better,
            "target_speedup": target_speedup,
        }
        for key, value in overrides.items():
            if value is not None:
                setattr(g, key, value)
        if save_dir is not None:  # the argument wins over Global.save_dir
            g.save_dir = os.fspath(save_dir)
        elif g.save_dir is None:
            g.save_dir = DEFAULT_SAVE_DIR
        if g.model_dir is None:
            raise ConfigError("model_dir is not set: pass it or set Global.model_dir in the config")
        self.kind, self.model_path, self.params_path = resolve_model_files(
            g.model_dir, g.model_filename, g.params_filename
        )
        self.save_dir = check_save_dir(g.save_dir, [p for p in (self.model_path, self.params_path) if p is not None])
        self.hardware = resolve_hardware(g.deploy_hardware)
        self.train_dataloader = train_dataloader
        self.eval_callback = eval_callback
        self.eval_dataloader = eval_dataloader
        self.metric_name = metric_name
        if eval_callback is None and eval_dataloader is None:
            raise ConfigError(
                "give eval_callback (predictor -> metric) or eval_dataloader (the metric is then the EMD between the "
                "outputs of the original and the compressed model)"
            )

    @progress.scoped(lambda ac: ac.config.global_.progress)
    def compress(self) -> CompressResult:
        """Load and prepare the model, read the data, score the baseline, run the stages, check the result and
        (rank 0) write save_dir; each step is one method below."""
        started = time.perf_counter()
        model, files, external, data = self._load()
        evaluator, baseline = self._baseline(model, data)
        # Under torchrun every rank runs compress(); rank 0 owns the work area (checkpoints, caches) and save_dir.
        suffix = "" if distributed.is_primary() else f".rank{distributed.rank()}"
        work_dir = work_dir_for(self.save_dir, suffix, run_identity(files, self.config, data.specs))
        ctx = CompressionContext(
            config=self.config,
            original=model,
            train_batches=data.train,
            evaluator=evaluator,
            hardware=self.hardware,
            work_dir=work_dir,
            baseline_metric=baseline.metric,
            sample_feed=data.sample_feed,
            threads=self.config.global_.resolved_latency_threads(),
            deadline=self._deadline(started),
        )
        try:
            result = self._finish(ctx, baseline, data, external, started)
        except BaseException:  # a checkpoint stays for the rerun to resume; an unused work folder goes
            discard_work_dir(work_dir, self.save_dir, keep_progress=True)
            raise
        discard_work_dir(work_dir, self.save_dir)
        distributed.barrier()  # the other ranks return once save_dir is complete
        return result

    def _deadline(self, started: float) -> float | None:
        """With explicit strategies, Global.time_budget bounds the whole compress() run from `started`. The
        automatic choice (no strategy) counts its own budget from its stage's start and bounds its plans itself."""
        if not self.config.stage_keys:
            return None
        return deadline_after(self.config.global_.time_budget, started)

    def _load(self) -> tuple[onnx.ModelProto, list[Path], bool, _Data]:
        """The prepared float model, the user's input files, whether the model keeps its weights apart, and the
        data, whose first batch preparation checks the model's outputs on."""
        g = self.config.global_
        log.info("loading %s", self.model_path)
        external = self.kind == "onnx" and stores_external_data(self.model_path)
        files = input_files(self.model_path, self.params_path, external)
        refuse_model_files(g.save_dir, self.save_dir, files)  # external data files are known only now
        # the loaded model is not kept: a model over 2 GB would otherwise be held twice the whole run
        loaded = load_model(g.model_dir, g.model_filename, g.params_filename)
        data = self._data(input_specs(input_signature(loaded, g.input_shapes)))
        return prepare_model(loaded, g.input_shapes, data.sample_feed), files, external, data

    def _data(self, specs: list[InputSpec]) -> _Data:
        """The dataloaders as batches of the model's inputs (`specs`); their first batches are read now, so a
        loader that yields nothing or the wrong inputs fails before any work. Latency is measured at batch 1, as in
        the seed's tables, cut along each input's own batch axis."""
        g = self.config.global_
        train = eval_batches = None
        if self.train_dataloader is not None:
            train = BatchAdapter(self.train_dataloader, specs, "train_dataloader", prefetch=g.prefetch_batches)
        if self.eval_dataloader is not None:
            eval_batches = BatchAdapter(self.eval_dataloader, specs, "eval_dataloader", prefetch=g.prefetch_batches)
        first_source = train if train is not None else eval_batches
        if first_source is None:
            raise ConfigError("train_dataloader is None; compression needs data (calibration or training batches)")
        sample_feed = batch_one(first_source.first()[0], specs)
        if eval_batches is not None:
            eval_batches.first()
        return _Data(specs, train, eval_batches, sample_feed)

    def _baseline(self, model: onnx.ModelProto, data: _Data) -> tuple[Evaluator, ModelSummary]:
        """The evaluator and the original model's figures; a metric far from TrainConfig.origin_metric is an
        error, since it means the eval function is broken."""
        g = self.config.global_
        evaluator = Evaluator(
            model,
            self.hardware,
            self.eval_callback,
            data.eval,
            g.higher_is_better,
            threads=None,
            metric_name=self.metric_name,
        )
        metric = evaluator(model)
        log.info("baseline %s = %.6g", evaluator.name, metric)
        train = self.config.train
        if train is not None and train.origin_metric is not None:
            check_origin_metric(metric, train.origin_metric, train.origin_metric_tolerance)
        summary = summarize(
            model,
            metric,
            evaluator.name,
            data.sample_feed,
            self.hardware,
            g.resolved_latency_threads(),
            extra_metrics=evaluator.extra_metrics,
        )
        return evaluator, summary

    def _finish(
        self, ctx: CompressionContext, baseline: ModelSummary, data: _Data, external: bool, started: float
    ) -> CompressResult:
        """Run the stages, check and measure the result, and (rank 0) commit it to save_dir."""
        model, timeline, candidates = self._run_stages(ctx)
        compressed = self._validate(model, ctx, ran=bool(timeline))
        baseline, compressed = self._by_threads(ctx, model, baseline, compressed)
        warnings = self._drop_warnings(ctx, compressed.metric)
        report = Report(
            baseline=baseline,
            compressed=compressed,
            higher_is_better=ctx.evaluator.higher_is_better,
            timeline=timeline,
            candidates=candidates,
            elapsed_s=round(time.perf_counter() - started, 3),
            hardware=self._hardware_info(),
            model_source=str(self.model_path),
            model_format=self.kind,
            skipped_batches=data.skipped(),
            warnings=warnings,
        )
        if distributed.is_primary():
            self._save(model, report, external)
        return CompressResult(
            save_dir=self.save_dir,
            model_path=self.save_dir / "model.onnx",
            config_path=self.save_dir / "config.yaml",
            report_path=self.save_dir / "report.json",
            report=report.to_dict(),
            record=report,
            baseline=baseline,
            compressed=compressed,
            strategy=report.strategy,
        )

    def _run_stages(self, ctx: CompressionContext) -> tuple[onnx.ModelProto, list[StageRecord], list[Candidate]]:
        """Each planned stage on the model the previous one returned, timed, with every candidate it tried (the
        report keeps the candidates' figures, not their models)."""
        stages = plan_stages(self.config)
        timeline: list[StageRecord] = []
        candidates: list[Candidate] = []
        current = ctx.original
        for stage in stages:
            t0 = time.perf_counter()
            log.info("stage %s", stage.name)
            with progress.stage(stage.name, len(stages)):
                result: StageResult = stage.run(current, ctx)
            current = result.model
            timeline.append(StageRecord(stage.name, round(time.perf_counter() - t0, 3), result.info))
            candidates += [replace(c, stage=c.stage or stage.name, model=None) for c in result.candidates]
        return current, timeline, candidates

    def _drop_warnings(self, ctx: CompressionContext, metric: float) -> list[str]:
        """A warning (logged, and for the report) when explicit strategies lost more metric than the tolerance:
        the strategies' own max_metric_drop where one is set, else Global.auto_max_relative_drop of the baseline.
        The automatic choice keeps its result within tolerance itself."""
        keys, g, evaluator = self.config.stage_keys, self.config.global_, ctx.evaluator
        if not keys:
            return []
        own = [getattr(s, "max_metric_drop", None) for s in self.config.strategies.values()]
        own = [value for value in own if value is not None]
        if own:
            tolerance, source = max(own), "max_metric_drop"
        else:
            tolerance = evaluator.tolerance(ctx.baseline_metric, g.auto_max_relative_drop)
            source = f"Global.auto_max_relative_drop = {g.auto_max_relative_drop:g}"
        drop = evaluator.drop(ctx.baseline_metric, metric)
        if drop <= tolerance:
            return []
        message = (
            f"{' + '.join(keys)} lowered {evaluator.name} from {ctx.baseline_metric:.6g} to {metric:.6g} (a drop of "
            f"{drop:.4g}), beyond the tolerance {tolerance:.4g} ({source}); to keep the metric, set "
            "QuantPost.max_metric_drop (the most harmful ops return to float until the drop is met) or keep "
            "sensitive tensors in float with QuantPost.skip_tensor_list; when pruning, use a smaller ratio"
        )
        log.warning("%s", message)
        return [message]

    def _validate(self, model: onnx.ModelProto, ctx: CompressionContext, ran: bool) -> ModelSummary:
        """The compressed model's figures, once onnx.checker and a run with finite outputs have passed."""
        validate_exported(model, ctx.sample_feed, self.hardware)
        metric = ctx.evaluator(model) if ran else ctx.baseline_metric
        g = self.config.global_
        return summarize(
            model,
            metric,
            ctx.evaluator.name,
            ctx.sample_feed,
            self.hardware,
            g.resolved_latency_threads(),
            extra_metrics=ctx.evaluator.extra_metrics,
        )

    def _by_threads(
        self, ctx: CompressionContext, model: onnx.ModelProto, baseline: ModelSummary, compressed: ModelSummary
    ) -> tuple[ModelSummary, ModelSummary]:
        """The summaries with both models' latencies at 1 thread and at all cores, measured in turn, so the
        report's speedups compare runs made under the same machine load."""
        by_threads = latencies_by_threads([ctx.original, model], ctx.sample_feed, self.hardware, thread_counts())
        return (
            replace(baseline, latency_ms_by_threads=by_threads[0]),
            replace(compressed, latency_ms_by_threads=by_threads[1]),
        )

    def _save(self, model: onnx.ModelProto, report: Report, external: bool) -> None:
        """Write the result into a temp folder that replaces save_dir in one rename."""
        with atomic_dir(self.save_dir) as tmp:
            save_model(model, tmp / "model.onnx", external)
            save_config(self.config, tmp / "config.yaml")
            (tmp / "report.json").write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
            write_html(report, tmp)
        log.info("saved %s", self.save_dir)

    def _hardware_info(self) -> HardwareInfo:
        return HardwareInfo(
            deploy_hardware=self.hardware.name,
            latency_measured_on_target=self.hardware.measured,
            note=self.hardware.note,
            providers=list(self.hardware.providers),
            latency_threads=self.config.global_.resolved_latency_threads(),
            machine=platform.machine(),
            processor=platform.processor() or platform.machine(),
            cpu_count=os.cpu_count(),
            onnxruntime=ort.__version__,
            onnx=onnx.__version__,
        )


def save_model(model: onnx.ModelProto, path: Path, external: bool = False) -> None:
    """One file, or `path` with its weights in `path`.data beside it: when `external` (the user's model kept its
    weights apart) or the model is over protobuf's 2 GB limit."""
    if external or weights_layout(model) is WeightsLayout.EXTERNAL:
        save_external(model, path)
    else:
        onnx.save_model(model, str(path))
