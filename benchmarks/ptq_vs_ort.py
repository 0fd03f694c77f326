"""Post-training int8 quantization: autocompress QuantPost vs ONNX Runtime's quantize_static, side by side.

For every model both quantizers get the same fp32 file and the same calibration batches; all variants
(fp32, ours, ours with is_full_quantize, ORT MinMax, ORT Entropy) are scored by the same metric and timed
in the same run, latency interleaved across variants. Also measured: calibration+quantization wall time,
a 20-trial HPO against one calibration plus 20 evaluations, and peak RSS of calibration on 10 vs 200 batches.
Results go to a section of BENCHMARKS.md; nothing in it is typed by hand.

    PYTHONPATH=src .venv/bin/python benchmarks/ptq_vs_ort.py [--quick] [--models ocr_cls,resnet18_like] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "src")):  # run as a script: `benchmarks.*`, `examples.*`, `autocompress`
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402

from autocompress import AutoCompression  # noqa: E402
from autocompress.graph.prepare import prepare_model, simplify  # noqa: E402
from autocompress.quant.ptq import calibration_tensors  # noqa: E402
from autocompress.quant.qdq import QDQOptions  # noqa: E402
from autocompress.quant.statistics import collect_statistics  # noqa: E402
from autocompress.runtime.ort import Predictor  # noqa: E402
from benchmarks.common import (  # noqa: E402
    MachineInfo,
    child_peak_rss_mb,
    cpu_session,
    interleaved_latency,
    load_average,
    markdown_table,
    source_revision,
    write_section,
)
from benchmarks.ptq_cases import CASE_BUILDERS, Case, DataSizes  # noqa: E402

HEADING = "## Post-training quantization vs ONNX Runtime quantize_static"
THREADS = (1, 2)
RESNET_SPEEDUP_TARGET = 2.2
HPO_OVERHEAD_TARGET = 1.3
RSS_GROWTH_TARGET = 0.10  # "flat": the 200-batch peak at most 10 % above the 10-batch peak
HPO_SPACE = {
    "ptq_algo": ["KL", "hist", "avg", "mse"],
    "bias_correct": [True, False],
    "hist_percent": [0.98, 0.9999],
    "weight_quantize_type": ["channel_wise_abs_max"],
}
PER_CHANNEL_OPSET = 13
ORT_METHODS = {"ort_minmax": CalibrationMethod.MinMax, "ort_entropy": CalibrationMethod.Entropy}

log = logging.getLogger("ptq_vs_ort")


@dataclass
class Variant:
    """One quantized (or the fp32) model of a case and what it cost to make."""

    name: str
    path: Path
    settings: str
    quantize_seconds: float | None = None  # calibration + quantization wall time
    metric: float | None = None
    eval_seconds: float | None = None
    latency_ms: dict[int, float] = field(default_factory=dict)
    optimized_ops: dict[str, int] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class CaseResult:
    case: Case
    variants: dict[str, Variant]

    def speedup(self, name: str, threads: int) -> float:
        return self.variants["fp32"].latency_ms[threads] / self.variants[name].latency_ms[threads]


# ---------------------------------------------------------------- quantizers


class FeedReader(CalibrationDataReader):
    """ORT's calibration reader over the very feeds our QuantPost calibrates on."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]] | object):
        self.feeds = feeds
        self._iterator: Iterator | None = None

    def get_next(self):
        if self._iterator is None:
            self._iterator = iter(self.feeds)
        return next(self._iterator, None)

    def rewind(self):
        self._iterator = None


def ort_preprocess(fp32_path: Path, out_path: Path) -> tuple[float, str]:
    """ORT's recommended pre-processing (quantize_static warns without it): (seconds, what ran).

    Symbolic shape inference asserts on some paddle2onnx graphs (a Concat of shapes on axis != 0); ORT's
    documented way out is skip_symbolic_shape=True (it matters for transformers only), so retry that way.
    """
    start = time.perf_counter()
    model = onnx.load(str(fp32_path))
    steps, source = [], str(fp32_path)
    if _onnx_opset(model) < PER_CHANNEL_OPSET:
        # quantize_static(per_channel=True) keeps the opset and writes DequantizeLinear(axis=...), which opset
        # < 13 lacks: onnxruntime then refuses the model. Upgrading first is the fix an ORT user has to apply.
        steps.append(f"opset {_onnx_opset(model)}->{PER_CHANNEL_OPSET}")
        source = str(out_path.with_name(out_path.stem + "_opset13.onnx"))
        onnx.save_model(onnx.version_converter.convert_version(model, PER_CHANNEL_OPSET), source)
    with contextlib.chdir(out_path.parent):  # symbolic shape inference may leave temp files in the cwd
        try:
            quant_pre_process(source, str(out_path))
            how = "quant_pre_process"
        except Exception as exc:  # noqa: BLE001 - any failure of ORT's inference means: retry without it
            log.warning(
                "quant_pre_process failed (%s: %s); retrying with skip_symbolic_shape=True", type(exc).__name__, exc
            )
            quant_pre_process(source, str(out_path), skip_symbolic_shape=True)
            how = "quant_pre_process(skip_symbolic_shape)"
    return time.perf_counter() - start, " + ".join([*steps, how])


def _onnx_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def quantize_with_ort(pre_path: Path, feeds, method: CalibrationMethod, out_path: Path) -> float:
    """quantize_static with ORT's recommended CPU settings (QDQ, per-channel, U8 activations, S8 weights)."""
    start = time.perf_counter()
    with contextlib.chdir(out_path.parent):
        quantize_static(
            str(pre_path),
            str(out_path),
            FeedReader(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
    return time.perf_counter() - start


def quantize_with_ours(case: Case, workdir: Path, quant_post: dict, hpo: dict | None = None) -> tuple[Path, dict]:
    """AutoCompression with a QuantPost section (and HPO if given), statistics cache in a fresh folder."""
    save_dir = workdir / "save"
    config = {"Global": {"cache_dir": str(workdir / "cache")}, "QuantPost": quant_post}
    if hpo:
        config["HyperParameterOptimization"] = hpo
    result = AutoCompression(
        model_dir=str(case.fp32_path.parent),
        model_filename=case.fp32_path.name,
        train_dataloader=case.calibration,
        save_dir=str(save_dir),
        config=config,
        eval_callback=case.evaluate,
        deploy_hardware="cpu",
    ).compress()
    stage = next(s for s in result.report["timeline"] if s["stage"].startswith("QuantPost"))
    return result.model_path, {"stage_seconds": stage["seconds"], **stage["info"]}


def describe_settings(info: dict, quant_post: dict) -> str:
    params = info.get("params", {})
    parts = [f"algo={params.get('algo', quant_post.get('algo'))}"]
    if params.get("algo") == "hist":
        parts.append(f"hist_percent={params.get('hist_percent'):.6g}")
    if params.get("bias_correct"):
        parts.append("bias_correct")
    if quant_post.get("is_full_quantize"):
        parts.append("is_full_quantize")
    if params.get("batch_num"):
        parts.append(f"batch_num={params['batch_num']}")
    counts = info.get("quantized_op_counts", {})
    return ", ".join(parts) + "; quantized " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


# ---------------------------------------------------------------- measurements


def evaluate(case: Case, path: Path) -> tuple[float, float]:
    start = time.perf_counter()
    metric = float(case.evaluate(Predictor(path, "cpu")))
    return metric, time.perf_counter() - start


def optimized_op_counts(path: Path, workdir: Path) -> dict[str, int]:
    """Op types of the graph ORT actually runs (after its QDQ fusions) at 1 thread."""
    target = workdir / f"{path.parent.name}_{path.stem}_optimized.onnx"
    cpu_session(path, 1, str(target))
    return dict(Counter(node.op_type for node in onnx.load(str(target)).graph.node))


def quantize_case(case: Case, workdir: Path, full_quantize: bool) -> dict[str, Variant]:
    variants = {"fp32": Variant("fp32", case.fp32_path, "original")}
    ours_runs = {"ours": case.quant_post}
    if full_quantize:
        ours_runs["ours_full"] = {**case.quant_post, "is_full_quantize": True}
    for name, quant_post in ours_runs.items():
        log.info("%s: %s", case.name, name)
        path, info = quantize_with_ours(case, workdir / name, quant_post)
        variants[name] = Variant(
            name, path, describe_settings(info, quant_post), extra={"stage_seconds": info["stage_seconds"]}
        )
    pre_path = workdir / "ort" / "preprocessed.onnx"
    pre_path.parent.mkdir(parents=True, exist_ok=True)
    pre_seconds, pre_how = ort_preprocess(case.fp32_path, pre_path)
    for name, method in ORT_METHODS.items():
        log.info("%s: %s", case.name, name)
        out = workdir / "ort" / f"{name}.onnx"
        seconds = quantize_with_ort(pre_path, case.calibration, method, out)
        variants[name] = Variant(
            name,
            out,
            f"{pre_how} + quantize_static({method.name})",
            quantize_seconds=seconds + pre_seconds,
            extra={"preprocess_seconds": pre_seconds},
        )
    return variants


def measure_case(case: Case, variants: dict[str, Variant], workdir: Path, latency_seconds: float) -> CaseResult:
    for variant in variants.values():
        variant.metric, variant.eval_seconds = evaluate(case, variant.path)
        if "stage_seconds" in variant.extra:  # the stage also evaluated its result once
            variant.quantize_seconds = max(variant.extra["stage_seconds"] - variant.eval_seconds, 0.0)
        variant.optimized_ops = optimized_op_counts(variant.path, workdir)
    for threads in THREADS:
        paths = {name: v.path for name, v in variants.items()}
        for name, ms in interleaved_latency(paths, case.latency_feed, threads, seconds=latency_seconds).items():
            variants[name].latency_ms[threads] = ms
    return CaseResult(case, variants)


@dataclass
class HpoTiming:
    model: str
    trials: int
    distinct: int
    hpo_seconds: float
    calibration_seconds: float
    eval_seconds: float
    trial_seconds: float  # mean wall time of one distinct trial (quantize + evaluate + latency probe)
    best: Variant

    @property
    def ratio(self) -> float:
        return self.hpo_seconds / (self.calibration_seconds + self.trials * self.eval_seconds)


def calibration_seconds(case: Case, batch_nums: int) -> float:
    """One fresh statistics pass of our calibration (no cache), as QuantPost runs it."""
    model = simplify(prepare_model(onnx.load(str(case.fp32_path))), fold_batch_norm=True)
    tensors = calibration_tensors(model, QDQOptions())
    start = time.perf_counter()
    collect_statistics(model, case.calibration, tensors, batch_nums=batch_nums)
    return time.perf_counter() - start


def time_hpo(case: Case, workdir: Path, trials: int, eval_seconds: float) -> HpoTiming:
    n = len(case.calibration)
    hpo = {**HPO_SPACE, "batch_num": [max(1, n // 2), n], "max_quant_count": trials}
    path, info = quantize_with_ours(case, workdir / "ours_hpo", case.quant_post, hpo)
    best = Variant("ours_hpo", path, describe_settings(info, case.quant_post) + f"; best of {trials}-trial HPO")
    trial_seconds = float(np.mean([t["seconds"] for t in info["trials"]]))
    return HpoTiming(
        case.name,
        trials,
        len(info["trials"]),
        info["stage_seconds"],
        calibration_seconds(case, n),
        eval_seconds,
        trial_seconds,
        best,
    )


# ---------------------------------------------------------------- peak RSS of calibration


class RenderedLines:
    """Calibration batches of two cls text lines rendered on demand, so the data itself takes no memory."""

    def __init__(self, batches: int):
        self.batches = batches

    def __iter__(self):
        from examples.common.ocr_data import ocr_cls_dataset

        for i in range(self.batches):
            yield {"x": ocr_cls_dataset(2, seed=1000 + i).inputs}


def rss_child(tool: str, batches: int, model_path: Path) -> None:
    """Run one calibration in this (fresh) process; the parent reads its peak RSS."""
    data = RenderedLines(batches)
    if tool == "ours":
        model = simplify(prepare_model(onnx.load(str(model_path))), fold_batch_norm=True)
        stats = collect_statistics(model, data, calibration_tensors(model, QDQOptions()))
        print(stats.num_batches)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            quantize_with_ort(model_path, data, CalibrationMethod.MinMax, Path(tmp) / "q.onnx")
        print(batches)


def measure_rss(model_path: Path, workdir: Path, batch_counts: Sequence[int]) -> dict[tuple[str, int], float]:
    pre_path = workdir / "rss_preprocessed.onnx"
    ort_preprocess(model_path, pre_path)  # outside the measured children: it does not depend on the batches
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    peaks = {}
    for tool, path in (("ours", model_path), ("ort_minmax", pre_path)):
        for batches in batch_counts:
            argv = [sys.executable, str(Path(__file__).resolve()), "--rss-child", tool, str(batches), str(path)]
            peaks[tool, batches], _ = child_peak_rss_mb(argv, env)
    return peaks


# ---------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(results: Sequence[CaseResult]) -> str:
    header = [
        "model",
        "variant",
        "metric",
        "Δ vs fp32",
        "ms 1T",
        "speedup 1T",
        "ms 2T",
        "speedup 2T",
        "calib+quant s",
        "settings",
    ]
    rows = []
    for result in results:
        fp32 = result.variants["fp32"]
        for name, v in result.variants.items():
            rows.append(
                [
                    result.case.name,
                    name,
                    _fmt(v.metric),
                    _fmt(v.metric - fp32.metric) if name != "fp32" else "",
                    _fmt(v.latency_ms.get(1), 2),
                    f"{result.speedup(name, 1):.2f}x" if 1 in v.latency_ms else "-",
                    _fmt(v.latency_ms.get(2), 2),
                    f"{result.speedup(name, 2):.2f}x" if 2 in v.latency_ms else "-",
                    _fmt(v.quantize_seconds, 1),
                    v.settings,
                ]
            )
    return markdown_table(header, rows)


def ops_table(results: Sequence[CaseResult]) -> str:
    """What ORT runs after fusing: integer kernels vs float ops and the Q/DQ nodes left around them."""
    rows = []
    for result in results:
        for name, v in result.variants.items():
            top = sorted(v.optimized_ops.items(), key=lambda kv: (-kv[1], kv[0]))
            rows.append([result.case.name, name, sum(v.optimized_ops.values()), ", ".join(f"{k} {n}" for k, n in top)])
    return markdown_table(["model", "variant", "nodes", "op types in ORT's optimized graph (1 thread)"], rows)


def targets_table(results: Sequence[CaseResult], hpo: HpoTiming | None, rss: dict | None) -> str:
    rows = []
    resnet = next((r for r in results if r.case.name == "resnet18_like"), None)
    if resnet is not None:
        s = resnet.speedup("ours", 1)
        rows.append(
            [
                f"ResNet-style int8 speedup at 1 thread >= {RESNET_SPEEDUP_TARGET}x",
                f"{s:.2f}x",
                "yes" if s >= RESNET_SPEEDUP_TARGET else "no",
            ]
        )
    if hpo is not None:
        rows.append(
            [
                f"{hpo.trials}-trial HPO <= {HPO_OVERHEAD_TARGET}x (1 calibration + {hpo.trials} evaluations)",
                f"{hpo.ratio:.2f}x",
                "yes" if hpo.ratio <= HPO_OVERHEAD_TARGET else "no",
            ]
        )
    if rss:
        low, high = sorted({b for _, b in rss})
        growth = rss["ours", high] / rss["ours", low] - 1
        rows.append(
            [
                f"calibration peak RSS flat ({low} -> {high} batches, growth <= {RSS_GROWTH_TARGET:.0%})",
                f"{rss['ours', low]:.0f} -> {rss['ours', high]:.0f} MB ({growth:+.0%})",
                "yes" if growth <= RSS_GROWTH_TARGET else "no",
            ]
        )
    for result in results:
        ort_best = max(result.variants[n].metric for n in ORT_METHODS)
        ours = result.variants["ours"]
        rows.append(
            [
                f"{result.case.name}: ours metric >= best ORT",
                f"{ours.metric:.4f} vs {ort_best:.4f}",
                "yes" if ours.metric >= ort_best else "no",
            ]
        )
        for threads in THREADS:
            ort_fast = min(result.variants[n].latency_ms[threads] for n in ORT_METHODS)
            mine = ours.latency_ms[threads]
            rows.append(
                [
                    f"{result.case.name}: ours latency <= ORT at {threads}T",
                    f"{mine:.2f} vs {ort_fast:.2f} ms",
                    "yes" if mine <= ort_fast else "no",
                ]
            )
    return markdown_table(["target", "measured", "met"], rows)


def render(
    results, hpo, rss, machine, command, loads, sizes: DataSizes, wall_seconds: float, revision: str = ""
) -> str:
    parts = [
        f"Command: `{command}` (source {revision})",
        "",
        machine.markdown() + f" Load average (1/5/15 min) at start {loads[0]}, at end {loads[1]}. "
        f"Total wall time {wall_seconds:.0f} s.",
        "",
        "Both quantizers get the same fp32 file and the same calibration "
        f"batches (photo crops: {sizes.photo_calibration} in batches of {sizes.photo_batch}; det: "
        f"{sizes.det_calibration} scenes {sizes.det_size}x{sizes.det_size}, batch 1, H and W left dynamic, latency at "
        f"{sizes.det_latency_size}x{sizes.det_latency_size}; cls: {sizes.cls_calibration} "
        f"lines in batches of {sizes.cls_batch}). Evaluation: {sizes.photo_evaluation} crops of other photos "
        f"(agreement with fp32 top-1), {sizes.det_evaluation} det scenes (Total IoU), {sizes.cls_evaluation} cls "
        "lines (accuracy). ORT: `quant_pre_process` (quantize_static warns when it was not run) then "
        "`quantize_static(QDQ, per_channel=True, activation QUInt8, weight QInt8)`, default op types; "
        "reduce_range=False since this CPU has VNNI. Ours: `AutoCompression` with the QuantPost settings shown "
        "(fresh statistics cache). Latency: batch 1, median of interleaved rounds, one session running at a time. "
        "calib+quant s: ours = QuantPost stage time minus the one evaluation it includes; ORT = pre-processing + "
        "quantize_static.",
        "",
        results_table(results),
        "",
        "### Targets",
        "",
        targets_table(results, hpo, rss),
    ]
    if hpo is not None:
        parts += [
            "",
            "### HPO cost",
            "",
            markdown_table(
                [
                    "model",
                    "trials (distinct)",
                    "HPO stage s",
                    "1 calibration s",
                    "1 evaluation s",
                    "mean trial s",
                    "ratio",
                    "best",
                ],
                [
                    [
                        hpo.model,
                        f"{hpo.trials} ({hpo.distinct})",
                        f"{hpo.hpo_seconds:.1f}",
                        f"{hpo.calibration_seconds:.1f}",
                        f"{hpo.eval_seconds:.2f}",
                        f"{hpo.trial_seconds:.2f}",
                        f"{hpo.ratio:.2f}x",
                        hpo.best.settings,
                    ]
                ],
            ),
        ]
    if rss:
        parts += [
            "",
            "### Peak RSS of calibration (cls model, batches of 2 rendered lines, one fresh process each)",
            "",
            markdown_table(
                ["calibrator", "batches", "peak RSS MB"],
                [[tool, batches, f"{mb:.0f}"] for (tool, batches), mb in sorted(rss.items())],
            ),
        ]
    parts += ["", "### What ORT runs", "", ops_table(results)]
    return "\n".join(parts)


# ---------------------------------------------------------------- main


def run(args: argparse.Namespace) -> str:
    started = time.perf_counter()
    load_start = load_average()
    revision = source_revision()  # before the run: the code that gets imported
    sizes = DataSizes.quick() if args.quick else DataSizes()
    machine = MachineInfo.current()
    results, hpo, rss = [], None, None
    with tempfile.TemporaryDirectory(prefix="ptq_vs_ort_") as tmp:
        workdir = Path(tmp)
        for name in args.models:
            log.info("building %s", name)
            case = CASE_BUILDERS[name](workdir / "cases", sizes)
            variants = quantize_case(case, workdir / name, full_quantize=not args.no_full_quantize)
            if name == args.hpo_model:
                ours_eval = evaluate(case, variants["ours"].path)[1]
                hpo = time_hpo(case, workdir / name, args.hpo_trials, ours_eval)
                variants["ours_hpo"] = hpo.best
            results.append(measure_case(case, variants, workdir, args.latency_seconds))
        if args.rss_batches:
            cls = next((r.case for r in results if r.case.name == "ocr_cls"), None)
            if cls is None:
                cls = CASE_BUILDERS["ocr_cls"](workdir / "cases", sizes)
            rss = measure_rss(cls.fp32_path, workdir, args.rss_batches)
    load_end = load_average()
    loads = tuple(" / ".join(f"{x:.2f}" for x in load) for load in (load_start, load_end))
    command = "PYTHONPATH=src .venv/bin/python benchmarks/ptq_vs_ort.py " + " ".join(args.argv)
    return render(results, hpo, rss, machine, command.strip(), loads, sizes, time.perf_counter() - started, revision)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and few runs (a smoke run, not results)")
    parser.add_argument(
        "--models", default=",".join(CASE_BUILDERS), help=f"comma-separated subset of {','.join(CASE_BUILDERS)}"
    )
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="markdown file to write the section to")
    parser.add_argument("--hpo-model", default="efficientnet_lite0", help="model whose HPO is timed ('' for none)")
    parser.add_argument("--hpo-trials", type=int, default=20)
    parser.add_argument("--latency-seconds", type=float, default=6.0, help="latency budget per model and thread count")
    parser.add_argument("--rss-batches", default="10,200", help="calibration batch counts for peak RSS ('' to skip)")
    parser.add_argument("--no-full-quantize", action="store_true", help="skip the is_full_quantize variant")
    parser.add_argument("--rss-child", nargs=3, metavar=("TOOL", "BATCHES", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(args.models) - set(CASE_BUILDERS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(CASE_BUILDERS)}")
    args.rss_batches = [int(b) for b in args.rss_batches.split(",") if b]
    if args.quick:
        args.hpo_trials = min(args.hpo_trials, 4)
        args.latency_seconds = min(args.latency_seconds, 1.0)
        args.rss_batches = [min(b, 20) for b in args.rss_batches]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.rss_child:
        tool, batches, model = args.rss_child
        rss_child(tool, int(batches), Path(model))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("autocompress").setLevel(logging.WARNING)
    body = run(args)
    write_section(args.out, HEADING, body)
    print(body)


if __name__ == "__main__":
    main()
