"""Pruning and sparsity: ChannelPrune (+ distillation, + int8), int8 alone, UnstructurePrune, Torch-Pruning.

Per model (EfficientNet-Lite0 on photo crops, PP-OCRv4 det on rendered text) every variant is produced by
AutoCompression with the same data and eval callback, counted the same way (params, MACs) and timed in one
interleaved loop at 1 and 2 threads. ChannelPrune+int8 is QuantPost run on the fine-tuned pruned model, which is
what a `ChannelPrune` + `QuantPost` config does (quantization runs last), without repeating the fine-tune.
EfficientNet also gets a no-fine-tune comparison of our channel pruning with Torch-Pruning's (separate venv).
Det also gets UnstructurePrune (75 % of the 1x1 conv weights, as the seed's PaddleSeg config) and the sparse
1x1 conv kernel measurements of sparse_conv_speed.py on its trained layers. Results go to BENCHMARKS.md.

    PYTHONPATH=src .venv/bin/python benchmarks/prune_bench.py [--quick] [--models efficientnet_lite0,ocr_det]
        [--tp-python /tmp/tp-venv/bin/python] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "src")):  # run as a script: `benchmarks.*`, `examples.*`, `autocompress`
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from autocompress import AutoCompression  # noqa: E402
from autocompress.config.strategies import ChannelPrune  # noqa: E402
from autocompress.graph.prepare import fix_input_shapes, prepare_model  # noqa: E402
from autocompress.prune.channel import prune_channels  # noqa: E402
from autocompress.prune.sensitivity import sensitivity_ratios  # noqa: E402
from autocompress.prune.stats import count_params_and_macs  # noqa: E402
from benchmarks.common import (  # noqa: E402
    MachineInfo,
    interleaved_latency,
    load_average,
    markdown_table,
    write_section,
)
from benchmarks.ptq_cases import OURS_BY_MODEL, OURS_DEFAULT  # noqa: E402
from benchmarks.sparse_conv_speed import KERNELS, LayerTiming, heaviest_conv1x1, time_sparse_layers  # noqa: E402
from examples.common.evaluation import make_agreement_eval  # noqa: E402
from examples.common.imagenet_photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, imagenet_photo_split  # noqa: E402
from examples.common.loader import BatchLoader  # noqa: E402
from examples.common.models import (  # noqa: E402
    DET_MODEL_FILENAME,
    export_efficientnet_lite0,
    ort_predictor,
    rapidocr_model_dir,
)
from examples.common.ocr_data import ocr_det_dataset  # noqa: E402
from examples.ocr_det.metric import make_iou_eval  # noqa: E402
from examples.ocr_det.reader import build_det_data  # noqa: E402

HEADING = "## Pruning and sparsity"
THREADS = (1, 2)
SPEEDUP_TARGET = 4.0
MAX_DROP_TARGET = 0.01
#: the uniform ratio of the no-fine-tune comparison with Torch-Pruning (each case has its own fine-tuned ratio)
CHANNEL_RATIO = 0.3
SPARSE_RATIO = 0.75
SPARSE_EXTRA_RATIOS = (0.9,)

Feed = dict[str, np.ndarray]
log = logging.getLogger("prune_bench")


@dataclass(frozen=True)
class Budget:
    """Training and data sizes; --quick shrinks them so a run checks the plumbing in a few minutes."""

    train_iter: int = 60
    #: det ChannelPrune's fine-tune: 600 steps on 512 scenes left 60 % pruning 2 % IoU short of fp32
    det_prune_iter: int = 1200
    photo_train: int = 256
    photo_eval: int = 256
    photo_batch: int = 16
    det_train: int = 1024
    det_eval: int = 48  # selects the fine-tuned state kept
    #: scores every variant in the table, on scenes no choice was made on: IoU differences between 48-scene sets
    #: reached 0.02, so the test set is larger
    det_test: int = 200
    det_size: int = 320
    det_batch: int = 4
    det_latency_sizes: tuple[int, ...] = (640, 320)
    calibration_batches: int = 8
    latency_seconds: float = 6.0

    @classmethod
    def quick(cls) -> Budget:
        return cls(8, 8, 32, 32, 8, 8, 8, 8, 96, 2, (96,), 2, 1.0)


@dataclass
class PruneCase:
    """One model: its fp32 file, data, metric, and the strategy sections that differ per model."""

    name: str
    fp32_path: Path
    input_shapes: dict[str, list[int]]
    train_loader: Iterable
    evaluate: Callable  # predictor -> metric, higher is better; picks the fine-tuned state kept
    metric_name: str
    latency_feeds: dict[str, Feed]  # label (e.g. "640x640") -> batch-1 feed
    count_shapes: dict[str, list[int]]  # input shapes params/MACs are counted at
    distillation: dict
    quant_post: dict
    learning_rate: float
    #: ChannelPrune's pruned_ratio: the MACs of this uniform ratio, allocated by sensitivity
    channel_ratio: float = 0.3
    #: ChannelPrune's fine-tune lr where it differs from learning_rate (the other fine-tunes')
    channel_learning_rate: float | None = None
    #: ChannelPrune's fine-tune length where it differs from the budget's train_iter; the lr then decays to 0
    #: on a cosine over it
    channel_train_iter: int | None = None
    #: scores the table's rows on held-out data when set (otherwise `evaluate` does)
    test: Callable | None = None
    sparse: bool = False
    note: str = ""


@dataclass
class Variant:
    name: str
    path: Path
    metric: float
    params: int = 0
    macs: int = 0
    seconds: float = 0.0
    info: dict = field(default_factory=dict)
    latency_ms: dict[tuple[str, int], float] = field(default_factory=dict)  # (feed label, threads) -> ms


def train_config(iterations: int, learning_rate: float, cosine: bool = False) -> dict:
    schedule = {"type": "CosineAnnealingDecay", "learning_rate": learning_rate, "T_max": iterations}
    return {
        "train_iter": iterations,
        "eval_iter": max(1, iterations // (4 if cosine else 2)),
        "learning_rate": schedule if cosine else learning_rate,
        "optimizer_builder": {"optimizer": {"type": "Adam"}, "weight_decay": 0.0},
        "resume": False,
    }


def compress(case: PruneCase, config: dict, save_dir: Path, source: Path | None = None) -> Variant:
    """One AutoCompression run on `source` (default: the fp32 model) with the case's data and metric."""
    source = source or case.fp32_path
    started = time.perf_counter()
    result = AutoCompression(
        source.parent,
        case.train_loader,
        model_filename=source.name,
        save_dir=save_dir,
        config={"Global": {"deploy_hardware": "cpu"}, **config},
        eval_callback=case.evaluate,
        input_shapes=case.input_shapes,
    ).compress()
    info = {t["stage"]: t["info"] for t in result.report["timeline"]}
    return Variant(
        save_dir.name,
        result.model_path,
        result.report["compressed"]["metric"],
        seconds=time.perf_counter() - started,
        info=info,
    )


def scored(case: PruneCase, name: str, path: Path, seconds: float = 0.0) -> Variant:
    return Variant(name, path, case.evaluate(ort_predictor(path)), seconds=seconds)


def build_variants(case: PruneCase, budget: Budget, workdir: Path, tp_python: str | None) -> dict[str, Variant]:
    """fp32, ChannelPrune (+int8), int8, and per model the no-fine-tune or sparse extras, each scored by the case."""
    train = {"TrainConfig": train_config(budget.train_iter, case.learning_rate), "Distillation": case.distillation}
    quant = {"QuantPost": {**case.quant_post, "batch_nums": budget.calibration_batches}}
    variants = {"fp32": scored(case, "fp32", case.fp32_path)}
    name = prune_name(case)
    log.info("%s: ChannelPrune %.0f%% + distillation", case.name, case.channel_ratio * 100)
    prune_train = {
        **train,
        "TrainConfig": train_config(
            case.channel_train_iter or budget.train_iter,
            case.channel_learning_rate or case.learning_rate,
            cosine=case.channel_train_iter is not None,
        ),
    }
    variants[name] = compress(case, {"ChannelPrune": prune_section(case.channel_ratio), **prune_train}, workdir / name)
    log.info("%s: QuantPost on the pruned model", case.name)
    variants[f"{name}_int8"] = compress(case, quant, workdir / f"{name}_int8", variants[name].path)
    variants[f"{name}_int8"].seconds += variants[name].seconds
    log.info("%s: QuantPost alone", case.name)
    variants["int8"] = compress(case, quant, workdir / "int8")
    if case.sparse:
        log.info("%s: UnstructurePrune %.0f%% conv1x1 + distillation", case.name, SPARSE_RATIO * 100)
        sparse = {
            "UnstructurePrune": {
                "prune_ratio": SPARSE_RATIO,
                "prune_mode": "ratio",
                "prune_params_type": "conv1x1_only",
                "local_sparsity": True,
                "prune_strategy": "gmp",
                "gmp_config": {
                    "stable_iterations": 0,
                    "pruning_iterations": max(2, budget.train_iter // 3),
                    "tunning_iterations": max(2, budget.train_iter // 3),
                    "pruning_steps": 2,
                    "initial_ratio": 0.15,
                    "resume_iteration": -1,
                },
            }
        }
        variants["sparse75"] = compress(case, {**sparse, **train}, workdir / "sparse75")
    else:
        variants.update(no_fine_tune_variants(case, workdir, tp_python))
    for variant in variants.values():
        counts = count_params_and_macs(onnx.load(str(variant.path)), case.count_shapes)
        variant.params, variant.macs = counts.params, counts.macs
        if case.test is not None:
            variant.metric = case.test(ort_predictor(variant.path))
    return variants


def prune_name(case: PruneCase) -> str:
    return f"prune{round(case.channel_ratio * 100)}"


def prune_section(ratio: float) -> dict:
    """The ChannelPrune section of the fine-tuned rows: uniform ratio's MACs, allocated by sensitivity."""
    return {"pruned_ratio": ratio, "criterion": "output_error", "ratio_allocation": "sensitivity"}


def no_fine_tune_variants(case: PruneCase, workdir: Path, tp_python: str | None) -> dict[str, Variant]:
    """Without fine-tuning at CHANNEL_RATIO: our uniform L1 pruning and Torch-Pruning's (same ratio, round_to 16,
    L1 norm), and ours with the output_error criterion, mean compensation and sensitivity allocation."""
    model = prepare_model(onnx.load(str(case.fp32_path)), case.input_shapes)
    calibration = list(itertools.islice(iter(case.train_loader), ChannelPrune().batch_nums))
    out = {}
    for name, build in (
        ("prune30_noft", lambda: prune_channels(model, CHANNEL_RATIO, input_shapes=case.count_shapes)),
        (
            "prune30_sens_noft",
            lambda: prune_channels(
                model,
                sensitivity_ratios(model, CHANNEL_RATIO, calibration, "output_error", input_shapes=case.count_shapes),
                "output_error",
                input_shapes=case.count_shapes,
                calibration=calibration,
            ),
        ),
    ):
        started = time.perf_counter()
        pruned, _ = build()
        path = workdir / name / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(pruned, str(path))
        out[name] = scored(case, name, path, time.perf_counter() - started)
    if tp_python:
        started = time.perf_counter()
        tp_path = workdir / "torch_pruning30_noft" / "exported.onnx"
        tp_path.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                tp_python,
                str(ROOT / "benchmarks" / "torch_pruning_export.py"),
                str(tp_path),
                "--ratio",
                str(CHANNEL_RATIO),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        fixed = tp_path.with_name("model.onnx")
        onnx.save_model(fix_input_shapes(onnx.load(str(tp_path)), case.input_shapes), str(fixed))
        variant = scored(case, "torch_pruning30_noft", fixed, time.perf_counter() - started)
        variant.info = json.loads(done.stdout.strip().splitlines()[-1])
        out[variant.name] = variant
    return out


def measure_latency(case: PruneCase, variants: dict[str, Variant], seconds: float) -> None:
    """All variants of a case in one interleaved loop per (feed, threads)."""
    paths = {name: v.path for name, v in variants.items()}
    for label, feed in case.latency_feeds.items():
        for threads in THREADS:
            for name, ms in interleaved_latency(paths, feed, threads, seconds=seconds).items():
                variants[name].latency_ms[(label, threads)] = ms


# ---------------------------------------------------------------- cases


def efficientnet_case(workdir: Path, budget: Budget) -> PruneCase:
    path = export_efficientnet_lite0(workdir / "efficientnet_lite0" / "fp32" / "model.onnx")
    split = imagenet_photo_split(budget.photo_train, budget.photo_eval, seed=0)
    shapes = {"x": [-1, 3, 224, 224]}
    return PruneCase(
        name="efficientnet_lite0",
        fp32_path=path,
        input_shapes=shapes,
        train_loader=BatchLoader(split.calibration, budget.photo_batch, "x"),
        evaluate=make_agreement_eval(ort_predictor(path), split.evaluation, 32, "x"),
        metric_name="top-1 agreement with fp32",
        latency_feeds={"224x224": {"x": split.evaluation[:1]}},
        count_shapes={"x": [1, 3, 224, 224]},
        distillation={"loss": "soft_label", "node": ["teacher_logits", "logits"], "alpha": 1.0},
        quant_post={**OURS_DEFAULT, **OURS_BY_MODEL.get("efficientnet_lite0", {})},
        learning_rate=3e-5,
        channel_ratio=0.1,
        note=f"{budget.photo_train} train crops of {', '.join(CALIBRATION_PHOTOS)}; "
        f"{budget.photo_eval} eval crops of {', '.join(EVALUATION_PHOTOS)}",
    )


def det_case(workdir: Path, budget: Budget) -> PruneCase:
    data = build_det_data(budget.det_train, budget.det_eval, budget.det_size, budget.det_batch, seed=0)
    test = ocr_det_dataset(budget.det_test, seed=3, size=(budget.det_size, budget.det_size))
    feeds = {}
    for side in budget.det_latency_sizes:
        scene = build_det_data(1, 1, side, 1, seed=2).eval_data.inputs
        feeds[f"{side}x{side}"] = {"x": scene[:1]}
    return PruneCase(
        name="ocr_det",
        fp32_path=rapidocr_model_dir() / DET_MODEL_FILENAME,
        input_shapes={"x": [-1, 3, -1, -1]},
        train_loader=data.train_loader,
        evaluate=data.eval_callback,
        metric_name="Total IoU",
        latency_feeds=feeds,
        count_shapes={"x": [1, 3, budget.det_latency_sizes[0], budget.det_latency_sizes[0]]},
        distillation={"loss": "l2", "node": ["teacher_sigmoid_0.tmp_0", "sigmoid_0.tmp_0"], "alpha": 1.0},
        quant_post={**OURS_DEFAULT, **OURS_BY_MODEL.get("ocr_det", {})},
        learning_rate=3e-4,
        channel_ratio=0.75,
        channel_learning_rate=2e-4,
        channel_train_iter=budget.det_prune_iter,
        sparse=True,
        test=make_iou_eval(test.inputs, test.masks, budget.det_batch),
        note=f"PP-OCRv4 det; rendered {budget.det_size}x{budget.det_size} scenes: {budget.det_train} train, "
        f"{budget.det_eval} eval (picks the fine-tuned state kept), {budget.det_test} test (the metric "
        "column); H/W dynamic",
    )


CASE_BUILDERS: dict[str, Callable[[Path, Budget], PruneCase]] = {
    "efficientnet_lite0": efficientnet_case,
    "ocr_det": det_case,
}


# ---------------------------------------------------------------- report


def variant_rows(case: PruneCase, variants: dict[str, Variant]) -> list[list[object]]:
    fp32 = variants["fp32"]
    rows = []
    for v in variants.values():
        row: list[object] = [case.name, v.name, f"{v.params / 1e6:.3f} M", f"{v.macs / 1e9:.3f} G"]
        for label in case.latency_feeds:
            for threads in THREADS:
                ms = v.latency_ms[(label, threads)]
                row.append(f"{ms:.2f} ({fp32.latency_ms[(label, threads)] / ms:.2f}x)")
        row += [f"{v.metric:.4f}", f"{fp32.metric - v.metric:+.4f}", f"{v.seconds:.0f}"]
        rows.append(row)
    return rows


def target_line(case: PruneCase, variants: dict[str, Variant]) -> str:
    fp32, best = variants["fp32"], variants[f"{prune_name(case)}_int8"]
    label = next(iter(case.latency_feeds))
    speedup = fp32.latency_ms[(label, 1)] / best.latency_ms[(label, 1)]
    drop = fp32.metric - best.metric
    met = speedup >= SPEEDUP_TARGET and drop <= MAX_DROP_TARGET
    return (
        f"{case.name}: ChannelPrune {case.channel_ratio:.0%} + int8 is {speedup:.2f}x faster than fp32 at 1 thread ({label}) with a "
        f"metric drop of {drop:+.4f}; target >= {SPEEDUP_TARGET:.0f}x at <= {MAX_DROP_TARGET:.0%} drop: "
        f"{'met' if met else 'NOT met'}."
    )


def sparsity_lines(variant: Variant) -> str:
    info = variant.info["UnstructurePrune"]
    per_layer = info["sparsity"]
    rows = [[name, f"{value:.3f}"] for name, value in per_layer.items()]
    return "\n".join(
        [
            f"UnstructurePrune {SPARSE_RATIO:.0%} (conv1x1_only, local_sparsity, GMP) + distillation: total sparsity of "
            f"the {len(per_layer)} 1x1 conv weights {info['total_sparsity']:.4f}; model {info['dense_size_mb']:.2f} MB "
            f"dense, {info['compressed_size_mb']:.2f} MB zlib-compressed; metric {variant.metric:.4f}; "
            f"{info['steps']} steps in {info['train_seconds']:.0f} s.",
            "",
            "<details><summary>per-layer sparsity</summary>",
            "",
            markdown_table(["weight", "sparsity"], rows),
            "",
            "</details>",
        ]
    )


def det_readme_rows(case: PruneCase, variants: dict[str, Variant], label: str) -> str:
    fp32 = variants["fp32"].latency_ms[(label, 1)]
    rows = []
    for title, name in (
        ("稀疏 / UnstructurePrune 75% conv1x1 + distillation", "sparse75"),
        (f"通道剪枝+离线量化 / ChannelPrune {case.channel_ratio:.0%} + QuantPost", f"{prune_name(case)}_int8"),
    ):
        v = variants[name]
        ms = v.latency_ms[(label, 1)]
        rows.append(f"| {title} | {v.metric:.4f} | {ms:.2f} | {fp32 / ms:.2f} |")
    return "\n".join(rows)


def render(
    results: list[tuple[PruneCase, dict[str, Variant]]],
    sparse_layers: list[LayerTiming],
    machine: MachineInfo,
    command: str,
    loads: tuple[str, str],
    budget: Budget,
) -> str:
    parts = [
        f"Command: `{command}`",
        "",
        machine.markdown() + f" Load average (1/5/15 min) at start {loads[0]}, at end {loads[1]}.",
        "",
        f"Fine-tune: {budget.train_iter} iterations of Adam (lr per model below), distillation from the fp32 model "
        f"(no labels), evaluated every {max(1, budget.train_iter // 2)} steps; the best evaluated state is kept "
        "(selected on the eval set). QuantPost: calibration on "
        f"{budget.calibration_batches} training batches. Latency: median ms of batch-1 runs, all variants of a model "
        "interleaved in one loop per (input size, threads); speedup vs fp32 in brackets. MACs and params counted by "
        "`autocompress.prune.stats` (int8 weights counted as params).",
        "",
    ]
    for case, variants in results:
        header = ["model", "variant", "params", "MACs"]
        header += [f"ms {label} t={t}" for label in case.latency_feeds for t in THREADS]
        header += [case.metric_name, "drop", "build s"]
        lrs = f"fine-tune lr {case.learning_rate:g}" + (
            f" (ChannelPrune {case.channel_learning_rate:g})" if case.channel_learning_rate else ""
        )
        if case.channel_train_iter:
            lrs += (
                f"; ChannelPrune fine-tunes {case.channel_train_iter} iterations, lr on a cosine to 0, evaluated "
                f"every {max(1, case.channel_train_iter // 4)}"
            )
        parts += [
            f"### {case.name}",
            "",
            f"{case.note}; {lrs}.",
            "",
            markdown_table(header, variant_rows(case, variants)),
            "",
            target_line(case, variants),
            "",
        ]
        if "torch_pruning30_noft" in variants:
            tp = variants["torch_pruning30_noft"]
            parts += [
                "`prune30_noft` / `torch_pruning30_noft`: our ChannelPrune and Torch-Pruning "
                f"{tp.info['torch_pruning']} "
                "(MetaPruner, MagnitudeImportance p=1, uniform ratio 0.3, round_to 16, classifier kept) on the same "
                "weights, neither fine-tuned. Torch-Pruning prunes the output channels of every layer incl. the "
                "stem and the depthwise-separable blocks' expansions. `prune30_sens_noft`: the same MACs as our "
                "uniform 30%, chosen by sensitivity (criterion output_error, mean compensation, "
                "ratio_allocation sensitivity, on 4 training batches).",
                "",
            ]
        if "sparse75" in variants:
            parts += [sparsity_lines(variants["sparse75"]), ""]
            label = next(iter(case.latency_feeds))
            parts += [
                f"Rows for examples/ocr_det/README.md (thread=1, {label}):",
                "",
                "```",
                det_readme_rows(case, variants, label),
                "```",
                "",
            ]
    if sparse_layers:
        parts += [
            "### Sparse 1x1 convolutions in ONNX Runtime",
            "",
            "Each layer alone, batch 1, at its input size in the det model at the largest latency size; "
            "the weight is the trained UnstructurePrune weight (75%) or the original magnitude-pruned (90%). "
            "Dense: the 1x1 Conv as in the model. SparseToDenseMatMul: com.microsoft op, weight fed as an ORT "
            "sparse tensor (COO or CSR), activations as [Cin, H*W]; sparse initializers are densified at load, "
            "so "
            "the weight must be a sparse graph input. scipy CSR: `csr @ x` in NumPy/SciPy, outside ORT, as the "
            "best case of a plain sparse kernel. 1 thread, median ms.",
            "",
            markdown_table(["weight", "shape", "H*W", "sparsity", *KERNELS], [t.row() for t in sparse_layers]),
            "",
        ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budget: checks the plumbing")
    parser.add_argument("--models", default=",".join(CASE_BUILDERS))
    parser.add_argument("--tp-python", default="/tmp/tp-venv/bin/python", help="python of a venv with torch-pruning")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    budget = Budget.quick() if args.quick else Budget()
    tp_python = args.tp_python if args.tp_python and Path(args.tp_python).exists() else None
    if tp_python is None:
        log.warning("no torch-pruning venv at %s: the Torch-Pruning row is skipped", args.tp_python)
    start_load = "{:.2f} / {:.2f} / {:.2f}".format(*load_average())
    results = []
    sparse_layers: list[LayerTiming] = []
    with tempfile.TemporaryDirectory(prefix="prune_bench_") as tmp:
        for name in args.models.split(","):
            case = CASE_BUILDERS[name](Path(tmp), budget)
            variants = build_variants(case, budget, Path(tmp) / name, tp_python)
            measure_latency(case, variants, budget.latency_seconds)
            results.append((case, variants))
            if case.sparse:
                side = budget.det_latency_sizes[0]
                layers = heaviest_conv1x1(onnx.load(str(variants["sparse75"].path)), {"x": [1, 3, side, side]}, 4)
                sparse_layers = time_sparse_layers(layers, SPARSE_EXTRA_RATIOS, seconds=budget.latency_seconds / 4)
    end_load = "{:.2f} / {:.2f} / {:.2f}".format(*load_average())
    command = "PYTHONPATH=src .venv/bin/python benchmarks/prune_bench.py" + (" --quick" if args.quick else "")
    body = render(results, sparse_layers, MachineInfo.current(), command, (start_load, end_load), budget)
    write_section(args.out, HEADING, body)
    print(body)


if __name__ == "__main__":
    main()
