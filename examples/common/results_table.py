"""Rows of an example's results table: metric from each run's report.json, latency timed against fp32 here.

The latency in report.json is measured while a compression runs, each model alone; on a shared machine the
load changes between runs. Here the fp32 model and every compressed model are timed in one process, in
interleaved rounds at a fixed thread count (benchmarks/common.py), so the speedups compare like with like.

    PYTHONPATH=src:. python -m examples.common.results_table --fp32 MODEL.onnx --shape x=1,3,320,320 \
        --baseline_dir output/det_auto "离线量化 / QuantPost=output/det_ptq" "自动 / auto=output/det_auto"
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from benchmarks.common import interleaved_latency, markdown_table

FP32 = "Baseline"


def parse_shape(text: str) -> tuple[str, list[int]]:
    """'x=1,3,320,320' -> ('x', [1, 3, 320, 320])."""
    name, _, dims = text.partition("=")
    if not dims:
        raise argparse.ArgumentTypeError(f"--shape wants NAME=D0,D1,...; got {text!r}")
    return name, [int(d) for d in dims.split(",")]


def parse_row(text: str) -> tuple[str, Path]:
    """'LABEL=SAVE_DIR' -> (label, save_dir); the save_dir holds model.onnx and report.json."""
    label, _, save_dir = text.rpartition("=")
    if not label:
        raise argparse.ArgumentTypeError(f"a row is LABEL=SAVE_DIR; got {text!r}")
    return label, Path(save_dir)


def report(save_dir: Path) -> dict:
    return json.loads((save_dir / "report.json").read_text(encoding="utf-8"))


def results_rows(
    fp32: Path,
    baseline_dir: Path,
    rows: list[tuple[str, Path]],
    feed: dict[str, np.ndarray],
    threads: int,
    seconds: float,
) -> list[list[str]]:
    """[method, metric, ms, speedup] per row, the fp32 model first (its metric from baseline_dir's report)."""
    models = {FP32: fp32, **{label: save_dir / "model.onnx" for label, save_dir in rows}}
    latency = interleaved_latency(models, feed, threads, seconds=seconds)
    metrics = {FP32: report(baseline_dir)["baseline"]["metric"]}
    metrics.update({label: report(save_dir)["compressed"]["metric"] for label, save_dir in rows})
    table = []
    for label in models:
        speedup = "-" if label == FP32 else f"{latency[FP32] / latency[label]:.2f}"
        table.append([label, f"{metrics[label]:.4f}", f"{latency[label]:.2f}", speedup])
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fp32", type=Path, required=True, help="the uncompressed ONNX model")
    parser.add_argument("--shape", type=parse_shape, action="append", required=True, help="input NAME=D0,D1,...")
    parser.add_argument(
        "--baseline_dir", type=Path, required=True, help="a run on the fp32 model: its report's baseline metric"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0, help="rough timing budget over all models")
    parser.add_argument("rows", type=parse_row, nargs="+", help="LABEL=SAVE_DIR of each compressed model")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal(dims).astype(np.float32) for name, dims in args.shape}
    before = os.getloadavg()
    table = results_rows(args.fp32, args.baseline_dir, args.rows, feed, args.threads, args.seconds)
    after = os.getloadavg()
    print(markdown_table(["Method", "Metric", f"ms thread={args.threads}", "speedup"], table))
    print(
        f"load average (1/5/15 min) before {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, "
        f"after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}"
    )


if __name__ == "__main__":
    main()
