"""AutoCompression: config -> plan -> stages -> export -> report (PaddleSlim's API, on ONNX)."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from autocompress import progress
from autocompress.config.loader import CompressConfig, load_config, save_config
from autocompress.data.batches import BatchAdapter, input_specs
from autocompress.errors import AutoCompressError, ConfigError
from autocompress.evaluation import Evaluator
from autocompress.graph.load import load_model, resolve_model_files
from autocompress.graph.large import WeightsLayout, save_external, stores_external_data, weights_layout
from autocompress.graph.prepare import check_structure, prepare_model
from autocompress.report.html import write_html
from autocompress.report.summary import ModelSummary, summarize
from autocompress.runtime.ort import Predictor, resolve_hardware
from autocompress.identity import input_files, run_identity
from autocompress.savedir import atomic_dir, check_save_dir, discard_work_dir, refuse_model_files, work_dir_for
from autocompress.strategy.base import CompressionContext, StageResult
from autocompress.strategy.plan import plan_stages
from autocompress.train import distributed
from autocompress.train.loop import check_origin_metric

log = logging.getLogger(__name__)

#: save_dir when neither the save_dir argument nor Global.save_dir names one
DEFAULT_SAVE_DIR = "./output"


@dataclass
class CompressResult:
    save_dir: Path
    model_path: Path
    config_path: Path
    report_path: Path
    report: dict[str, Any]
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
    except Exception as exc:
        raise AutoCompressError(f"the compressed model fails onnx.checker: {exc}") from None
    outputs = Predictor(model, hardware)(dict(feed))
    for name, value in zip([o.name for o in model.graph.output], outputs):
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise AutoCompressError(f"the compressed model's output {name!r} has NaN/Inf; it is not saved")


def _batch_one(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Latency is reported for batch 1, as in the seed's tables."""
    return {k: np.ascontiguousarray(v[:1]) if v.ndim > 0 else v for k, v in feed.items()}


class AutoCompression:
    """Compress an exported model.

    Args mirror PaddleSlim's AutoCompression. `config` is a YAML path or dict holding strategy sections,
    `TrainConfig` and `Global`; `strategy_config` / `train_config` may also be given directly (dicts or typed
    objects). `eval_callback(predictor) -> float` scores a candidate (higher is better unless
    `higher_is_better=False`); without it, the EMD to the original model on `eval_dataloader` is the metric.
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
        config: str | os.PathLike | Mapping[str, Any] | CompressConfig | None = None,
        input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
        target_speedup: float | str | None = None,
        eval_callback: Callable | None = None,
        eval_dataloader: Iterable | Callable[[], Iterable] | None = None,
        deploy_hardware: str | None = None,
        strategy_config: Mapping[str, Any] | None = None,
        train_config: Any = None,
        devices: str | None = None,
        higher_is_better: bool | None = None,
    ):
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
            g.save_dir = _save_dir_argument(save_dir)
        elif g.save_dir is None:
            g.save_dir = DEFAULT_SAVE_DIR
        if g.model_dir is None:
            raise ConfigError("model_dir is not set: pass it or set Global.model_dir in the config")
        self.kind, self.model_path, self.params_path = resolve_model_files(g.model_dir, g.model_filename, g.params_filename)
        self.save_dir = check_save_dir(g.save_dir, [p for p in (self.model_path, self.params_path) if p is not None])
        self.hardware = resolve_hardware(g.deploy_hardware)
        self.train_dataloader = train_dataloader
        self.eval_callback = eval_callback
        self.eval_dataloader = eval_dataloader
        if eval_callback is None and eval_dataloader is None:
            raise ConfigError(
                "give eval_callback (predictor -> metric) or eval_dataloader (the metric is then the EMD between the "
                "outputs of the original and the compressed model)"
            )

    @progress.scoped(lambda ac: ac.config.global_.progress)
    def compress(self) -> CompressResult:
        started = time.perf_counter()
        g = self.config.global_
        log.info("loading %s", self.model_path)
        external = self.kind == "onnx" and stores_external_data(self.model_path)
        files = input_files(self.model_path, self.params_path, external)
        refuse_model_files(g.save_dir, self.save_dir, files)  # external data files are known only now
        # the loaded model is not kept: a model over 2 GB would otherwise be held twice the whole run
        model = prepare_model(load_model(g.model_dir, g.model_filename, g.params_filename), g.input_shapes)
        specs = input_specs(model)
        train = eval_batches = None
        if self.train_dataloader is not None:
            train = BatchAdapter(self.train_dataloader, specs, "train_dataloader", prefetch=g.prefetch_batches)
        if self.eval_dataloader is not None:
            eval_batches = BatchAdapter(self.eval_dataloader, specs, "eval_dataloader", prefetch=g.prefetch_batches)
        first_source = train if train is not None else eval_batches
        if first_source is None:
            raise ConfigError("train_dataloader is None; compression needs data (calibration or training batches)")
        sample_feed = _batch_one(first_source.first()[0])
        if eval_batches is not None:
            eval_batches.first()

        evaluator = Evaluator(model, self.hardware, self.eval_callback, eval_batches, g.higher_is_better, threads=None)
        baseline_metric = evaluator(model)
        log.info("baseline %s = %.6g", evaluator.name, baseline_metric)
        if self.config.train is not None and self.config.train.origin_metric is not None:
            check_origin_metric(baseline_metric, self.config.train.origin_metric, self.config.train.origin_metric_tolerance)
        baseline = summarize(model, baseline_metric, evaluator.name, sample_feed, self.hardware, g.latency_threads)

        # Under torchrun every rank runs compress(); rank 0 owns the work area (checkpoints, caches) and save_dir.
        suffix = "" if distributed.is_primary() else f".rank{distributed.rank()}"
        work_dir = work_dir_for(self.save_dir, suffix, run_identity(files, self.config, specs))
        ctx = CompressionContext(
            config=self.config,
            original=model,
            train_batches=train,
            evaluator=evaluator,
            hardware=self.hardware,
            work_dir=work_dir,
            baseline_metric=baseline_metric,
            sample_feed=sample_feed,
            threads=g.latency_threads,
        )
        try:
            result = self._finish(ctx, baseline, external, started, [train, eval_batches])
        except BaseException:  # a checkpoint stays for the rerun to resume; an unused work folder goes
            discard_work_dir(work_dir, self.save_dir, keep_progress=True)
            raise
        discard_work_dir(work_dir, self.save_dir)
        distributed.barrier()  # the other ranks return once save_dir is complete
        return result

    def _finish(
        self, ctx: CompressionContext, baseline: ModelSummary, external: bool, started: float,
        data: list[BatchAdapter | None],
    ) -> CompressResult:  # fmt: skip
        """Run the stages, check and measure the result, and (rank 0) commit it to save_dir."""
        stages = plan_stages(self.config)
        timeline = []
        candidates: list[dict[str, Any]] = []
        current = ctx.original
        for stage in stages:
            t0 = time.perf_counter()
            log.info("stage %s", stage.name)
            with progress.stage(stage.name, len(stages)):
                result: StageResult = stage.run(current, ctx)
            current = result.model
            timeline.append({"stage": stage.name, "seconds": round(time.perf_counter() - t0, 3), "info": result.info})
            candidates.extend({"stage": stage.name, **c} for c in result.candidates)

        validate_exported(current, ctx.sample_feed, self.hardware)
        metric = ctx.evaluator(current) if stages else ctx.baseline_metric
        g = self.config.global_
        compressed = summarize(current, metric, ctx.evaluator.name, ctx.sample_feed, self.hardware, g.latency_threads)
        report = strict_report({
            "baseline": baseline.to_dict(),
            "compressed": compressed.to_dict(),
            "speedup": round(baseline.latency_ms / max(compressed.latency_ms, 1e-9), 4),
            "metric_higher_is_better": ctx.evaluator.higher_is_better,
            "strategy": [s.name for s in stages],
            "plan": [{"plan": t["info"]["plan"], "reasons": t["info"].get("reasons", [])} for t in timeline
                     if "plan" in t["info"]],
            "timeline": timeline,
            "candidates": candidates,
            "elapsed_s": round(time.perf_counter() - started, 3),
            "hardware": self._hardware_info(),
            "data": {f"{source}_batches_skipped_nonfinite": sorted(batches.skipped) if batches is not None else []
                     for source, batches in zip(("train", "eval"), data)},
            "model": {"source": str(self.model_path), "format": self.kind},
        })  # fmt: skip
        if distributed.is_primary():
            self._save(current, report, external)
        return CompressResult(
            save_dir=self.save_dir,
            model_path=self.save_dir / "model.onnx",
            config_path=self.save_dir / "config.yaml",
            report_path=self.save_dir / "report.json",
            report=report,
            baseline=baseline,
            compressed=compressed,
            strategy=report["strategy"],
        )

    def _save(self, model: onnx.ModelProto, report: dict[str, Any], external: bool) -> None:
        """Write the result into a temp folder that replaces save_dir in one rename."""
        with atomic_dir(self.save_dir) as tmp:
            save_model(model, tmp / "model.onnx", external)
            save_config(self.config, tmp / "config.yaml")
            (tmp / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
            write_html(report, tmp)
        log.info("saved %s", self.save_dir)

    def _hardware_info(self) -> dict[str, Any]:
        return {
            "deploy_hardware": self.hardware.name,
            "latency_measured_on_target": self.hardware.measured,
            "note": self.hardware.note,
            "providers": list(self.hardware.providers),
            "latency_threads": self.config.global_.latency_threads,
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
        }


def save_model(model: onnx.ModelProto, path: Path, external: bool = False) -> None:
    """One file, or `path` with its weights in `path`.data beside it: when `external` (the user's model kept its
    weights apart) or the model is over protobuf's 2 GB limit."""
    if external or weights_layout(model) is WeightsLayout.EXTERNAL:
        save_external(model, path)
    else:
        onnx.save_model(model, str(path))


def _save_dir_argument(save_dir: Any) -> str:
    if not isinstance(save_dir, (str, os.PathLike)):
        raise ConfigError(f"save_dir must be a folder path (str or os.PathLike), got {type(save_dir).__name__}")
    return os.fspath(save_dir)


def strict_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report as strict JSON data (report.json must load in any JSON parser): a NaN or inf becomes null, and
    "non_finite" names where each was and what it was."""
    nulled: dict[str, str] = {}
    plain = _plain(report, "", nulled)
    if nulled:
        plain["non_finite"] = nulled
    return plain


def _plain(value: Any, where: str, nulled: dict[str, str]) -> Any:
    """`value` as JSON data: numpy scalars and arrays as numbers and lists, paths as strings, NaN/inf as None."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        nulled[where] = str(value)
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}" if where else str(k), nulled) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", nulled) for i, v in enumerate(value)]
    return value
