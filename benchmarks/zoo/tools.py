"""The compression tools the zoo compares, each run alone in a fresh process so its peak RSS is its own.

    python -m benchmarks.zoo.tools --model NAME --tool TOOL --work DIR --out RESULT.json [--source FP32.onnx]

writes a `ToolResult` as JSON: the model the tool produced, its wall time and its outcome (int8, float kept, or
error with the exception's one-line message). A tool that raises is an outcome, not a failure of this process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from benchmarks.common import cpu_session
from benchmarks.zoo.spec import EvalSet, Outputs, ZooModel, all_models

log = logging.getLogger("benchmarks.zoo")

#: Op types whose presence makes a model an integer (quantized) one.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
    }
)
DYNAMIC_OPS = frozenset({"MatMul", "Gemm"})


@dataclass(frozen=True)
class Sizes:
    """How many calibration feeds and evaluation samples every tool and the scoring use."""

    calibration: int
    evaluation: int

    @classmethod
    def of(cls, model: ZooModel, calibration: int | None = None, evaluation: int | None = None) -> Sizes:
        return cls(calibration or model.calibration_size, evaluation or model.evaluation_size)


@dataclass
class ToolResult:
    tool: str
    model_path: str | None
    wall_s: float | None
    outcome: str  # "int8", "float kept", "error", "timeout", "crash"
    message: str = ""  # the error's one line, or a note on the run (ORT's preprocessing, candidates tried)
    peak_rss_mb: float | None = None

    @classmethod
    def read(cls, path: Path) -> ToolResult:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")


@dataclass(frozen=True)
class Job:
    """What one tool gets: the zoo model, the fp32 file, a folder of its own, the data sizes and a time budget."""

    model: ZooModel
    source: Path
    work: Path
    sizes: Sizes
    time_budget: float | None = None


def op_types(path: Path) -> set[str]:
    """Every op type in the model, subgraphs (If/Loop branches) included."""
    model = onnx.load(str(path), load_external_data=False)
    found: set[str] = set()
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            found.add(node.op_type)
            pending += [attr.g for attr in node.attribute if attr.type == onnx.AttributeProto.GRAPH]
            pending += [g for attr in node.attribute for g in attr.graphs]
    return found


def precision(path: Path) -> str:
    return "int8" if op_types(path) & QUANTIZED_OPS else "float kept"


def tools_for(source: Path) -> list[str]:
    """The tools that apply to a model: quantize_dynamic only where there is a MatMul or Gemm to quantize."""
    names = list(TOOLS)
    return names if op_types(source) & DYNAMIC_OPS else [n for n in names if n != "ort_dynamic"]


def load_model(name: str) -> ZooModel:
    """The zoo model `name`: its own module when it is named after it, otherwise found among all of them."""
    try:
        model = importlib.import_module(f"benchmarks.zoo.models.{name}").MODEL
    except ModuleNotFoundError:
        model = None
    if model is not None and model.name == name:
        return model
    models = all_models()
    if name not in models:
        raise SystemExit(f"unknown zoo model {name!r}; known: {', '.join(sorted(models))}")
    return models[name]


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# ---------------------------------------------------------------- the tools


def outputs_on(path: Path, evaluation: EvalSet) -> list[Outputs]:
    """A model's outputs on every evaluation feed, at all cores."""
    session = cpu_session(path, os.cpu_count() or 1)
    return [session.run(None, feed) for feed in evaluation.feeds]


def eval_callback(job: Job) -> Callable[[Callable], float]:
    """The user's metric as AutoCompression calls it: the model's score on the evaluation feeds."""
    evaluation = job.model.evaluation(job.sizes.evaluation)
    reference = outputs_on(job.source, evaluation)

    def evaluate(predictor: Callable) -> float:
        return job.model.score([predictor(feed) for feed in evaluation.feeds], reference, evaluation.labels)

    return evaluate


def run_fp32(job: Job) -> tuple[Path, str]:
    """The reference: the model file as shipped (or exported into the work folder)."""
    return job.model.onnx_file(job.work), ""


def run_ort_static(job: Job) -> tuple[Path, str]:
    """quantize_static as ORT recommends for CPU: QDQ, U8 activations, S8 per-channel weights, MinMax."""
    from onnxruntime.quantization import CalibrationMethod

    from benchmarks.ptq_vs_ort import ort_preprocess, quantize_with_ort

    pre = job.work / "preprocessed.onnx"
    _, how = ort_preprocess(job.source, pre)
    out = job.work / "ort_static.onnx"
    quantize_with_ort(pre, job.model.calibration(job.sizes.calibration), CalibrationMethod.MinMax, out)
    return out, how


def run_ort_dynamic(job: Job) -> tuple[Path, str]:
    """quantize_dynamic with its defaults (S8 weights of MatMul/Gemm, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from benchmarks.ptq_vs_ort import ort_preprocess

    pre = job.work / "preprocessed.onnx"
    _, how = ort_preprocess(job.source, pre)
    out = job.work / "ort_dynamic.onnx"
    quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
    return out, how


def _global_section(job: Job) -> dict:
    """Global keys the zoo sets: the time budget, where the config has one."""
    from autocompress.config.global_section import GlobalConfig

    if job.time_budget is None:
        return {}
    if "time_budget" not in GlobalConfig.model_fields:
        log.warning("this autocompress has no Global.time_budget; --time-budget is ignored")
        return {}
    return {"time_budget": job.time_budget}


def _compress(job: Job, config: dict | None) -> tuple[Path, str]:
    from autocompress import AutoCompression

    result = AutoCompression(
        str(job.source),
        job.model.calibration(job.sizes.calibration),
        save_dir=str(job.work / "save"),
        config=config,
        eval_callback=eval_callback(job),
    ).compress()
    # the plan it chose is the table's own column, read from save_dir/report.json
    return Path(result.model_path), f"{len(result.report.get('candidates', []))} candidates"


def run_auto(job: Job) -> tuple[Path, str]:
    """Automatic mode as a new user calls it: no strategy, the model's metric as eval_callback."""
    section = _global_section(job)
    return _compress(job, {"Global": section} if section else None)


def run_quant_post(job: Job) -> tuple[Path, str]:
    """An explicit QuantPost with every default."""
    section = _global_section(job)
    return _compress(job, {"QuantPost": {}, **({"Global": section} if section else {})})


TOOLS: dict[str, Callable[[Job], tuple[Path, str]]] = {
    "fp32": run_fp32,
    "ort_static": run_ort_static,
    "ort_dynamic": run_ort_dynamic,
    "auto": run_auto,
    "quant_post": run_quant_post,
}


def run_job(tool: str, job: Job) -> ToolResult:
    """Run one tool, timing it; an exception becomes the outcome "error" with its one-line message."""
    start = time.perf_counter()
    try:
        path, message = TOOLS[tool](job)
    except Exception as exc:
        log.exception("%s failed on %s", tool, job.model.name)
        return ToolResult(tool, None, time.perf_counter() - start, "error", one_line(exc))
    outcome = "fp32" if tool == "fp32" else precision(path)
    return ToolResult(tool, str(path), time.perf_counter() - start, outcome, message)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tool", required=True, choices=list(TOOLS))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", type=Path, help="the fp32 model file (every tool but fp32)")
    parser.add_argument("--calibration", type=int)
    parser.add_argument("--evaluation", type=int)
    parser.add_argument("--time-budget", type=float)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, filename=args.work / "log.txt", format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    model = load_model(args.model)
    job = Job(
        model, args.source or Path(), args.work, Sizes.of(model, args.calibration, args.evaluation), args.time_budget
    )
    run_job(args.tool, job).write(args.out)


if __name__ == "__main__":
    main()
