"""Dynamic int8 on a BERT sentence encoder: ORT's quantize_dynamic vs per-channel weights vs the sensitivity plan.

The zoo's `minilm` (all-MiniLM-L6-v2, 6 layers) is prepared as the pipeline prepares any model, then quantized
with: ORT quantize_dynamic's defaults (S8 per-tensor weights, embeddings' Gather included), per-channel S8
weights on every MatMul/Gemm (quant/dynamic.py), the levers tried on top (reduce_range, the pooler and the last
FFN projection float), and the per-op sensitivity plan (dynamic_candidate) at a few tolerances. Metric: mean
cosine of the sentence embeddings to fp32's on the zoo's evaluation sentences. Latency: one thread, every variant
and fp32 taking turns (runtime/ort.interleaved_latency) on one batch of 8 sentences, repeated; the speed-up is
the median over repeats of fp32 ms / variant ms, with its min-max spread over repeats.

    PYTHONPATH=src .venv/bin/python benchmarks/dynamic_minilm.py [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "src")):  # run as a script: `benchmarks.*`, `autocompress`
    if _path not in sys.path:
        sys.path.insert(0, _path)

import onnx  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402

from autocompress.graph.prepare import prepare_model  # noqa: E402
from autocompress.quant.dynamic import dynamic_candidate, dynamic_ops, quantize_dynamic_int8  # noqa: E402
from autocompress.runtime.ort import Predictor, interleaved_latency, resolve_hardware  # noqa: E402
from benchmarks.zoo.spec import EvalSet  # noqa: E402
from benchmarks.zoo.tools import load_model  # noqa: E402

#: Relative output error budgets of the sensitivity plan, and the cosine drop its verification accepts.
TOLERANCES = (0.01, 0.005, 0.0025)
MAX_DROP = 0.01
CALIBRATION_FEEDS = 8


def ort_dynamic(model: onnx.ModelProto, **options) -> onnx.ModelProto:
    """ORT's quantize_dynamic with S8 weights and `options`, on a copy of `model`."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "q.onnx")
        quantize_dynamic(copy.deepcopy(model), path, weight_type=QuantType.QInt8, **options)
        return onnx.load(path)


def cosine_of(evaluation: EvalSet, reference: list, model: onnx.ModelProto) -> float:
    predictor = Predictor(model)
    return load_model("minilm").score([predictor(f) for f in evaluation.feeds], reference, evaluation.labels)


def variants(model: onnx.ModelProto, drop_of: Callable, calibration: list, feed: dict, cache: str) -> dict:
    """label -> (model, note) for every variant measured."""
    ops = dynamic_ops(model)
    pooler = [op for op in ops if "pooler" in op]
    last_ffn = [op for op in ops if "layer.5/output/dense" in op]
    found = {
        "fp32": (model, ""),
        "ORT quantize_dynamic (defaults)": (ort_dynamic(model), "per-tensor, Gather too"),
        "per-channel (all MatMul/Gemm)": (quantize_dynamic_int8(model), f"{len(ops)} int8"),
        "per-channel + reduce_range": (
            ort_dynamic(model, per_channel=True, reduce_range=True, op_types_to_quantize=["MatMul"]),
            "7-bit weights",
        ),
        "per-channel, pooler float": (quantize_dynamic_int8(model, pooler), f"{len(pooler)} float"),
        "per-channel, last FFN + pooler float": (
            quantize_dynamic_int8(model, pooler + last_ffn),
            f"{len(pooler + last_ffn)} float",
        ),
    }
    for tolerance in TOLERANCES:
        result = dynamic_candidate(
            model, calibration, drop_of, tolerance, MAX_DROP, "cpu", 1, cache_dir=cache, sample_feed=feed
        )
        floats = [c.name for c in result.choices if not c.int8]
        note = f"{len(floats)} float: " + ", ".join(name.replace("/bert/encoder/", "") for name in floats)
        found[f"sensitivity plan, tolerance {tolerance:g}"] = (result.model, note)
    return found


def speedups(models: Sequence[onnx.ModelProto], feed: dict, repeats: int) -> list[tuple[float, float, float, float]]:
    """Per model: (median ms, median speed-up over fp32 = models[0], min and max speed-up over repeats)."""
    target = resolve_hardware("cpu")
    rounds = [interleaved_latency(models, feed, target, 1) for _ in range(repeats)]
    out = []
    for i in range(len(models)):
        ratios = [r[0] / r[i] for r in rounds]
        out.append((statistics.median(r[i] for r in rounds), statistics.median(ratios), min(ratios), max(ratios)))
    return out


def run(args: argparse.Namespace) -> list[dict]:
    zoo = load_model("minilm")
    work = Path(args.work)
    calibration = zoo.calibration(CALIBRATION_FEEDS)
    model = prepare_model(onnx.load(str(zoo.onnx_file(work))), sample_feed=calibration[0])
    evaluation = zoo.evaluation(zoo.evaluation_size)
    reference = [Predictor(model)(f) for f in evaluation.feeds]
    feed = evaluation.feeds[0]
    found = variants(model, lambda m: 1.0 - cosine_of(evaluation, reference, m), calibration, feed, str(work))
    times = speedups([m for m, _ in found.values()], feed, args.repeats)
    rows = []
    for (label, (candidate, note)), (ms, speedup, low, high) in zip(found.items(), times):
        cosine = cosine_of(evaluation, reference, candidate)
        rows.append({"variant": label, "cosine": cosine, "ms": ms, "speedup": speedup, "spread": [low, high]})
        rows[-1]["note"] = note
    return rows


def table(rows: list[dict], repeats: int) -> str:
    lines = [
        f"minilm, batch of 8 sentences, 1 thread, interleaved with fp32, median of {repeats} repeats",
        "| variant | mean cosine to fp32 | ms | speed-up (min-max) | notes |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = r["spread"]
        lines.append(
            f"| {r['variant']} | {r['cosine']:.4f} | {r['ms']:.2f} | {r['speedup']:.2f}x ({low:.2f}-{high:.2f}) "
            f"| {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved latency measurements per variant")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "autocompress-dynamic-minilm"))
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("autocompress").setLevel(logging.INFO)  # ORT's quantizer logs every node at INFO on root
    rows = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(table(rows, args.repeats))


if __name__ == "__main__":
    main()
