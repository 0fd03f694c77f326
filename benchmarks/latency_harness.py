"""How often a latency comparison calls two identical models more than 5% apart: fixed rounds vs compare_latency.

Two measurements are compared on two pairs, at 1 thread and at all cores, REPEATS times each:
- "fixed": the median of every run over SPEED_ROUNDS rounds of RUNS_PER_ROUND runs per model (what autocompress
  measured before compare_latency), read as "one is faster by >5%" when the ratio of medians leaves [1/1.05, 1.05];
- "harness": compare_latency with threshold 1.05, read as "one is faster by >5%" when the interval lies wholly
  above 1.05 or wholly below 1/1.05.
The pairs: two copies of one float conv net (every ">5%" call is false), and the float net vs its int8 form
(ONNX Runtime's quantize_static, QDQ, per channel), where a call is expected. Not run in CI; it prints a table.

    PYTHONPATH=src .venv/bin/python -m benchmarks.latency_harness
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from autocompress.runtime.latency import RUNS_PER_ROUND, SPEED_ROUNDS, compare_latency, thread_counts
from autocompress.runtime.ort import create_session, resolve_hardware
from benchmarks.common import cpu_model_name
from tests.runtime.test_latency import CHANNELS, SIDE, conv_stack

GAIN = 1.05
REPEATS = 5
#: Convolutions of the float net (tests/runtime/test_latency.py's conv stack): a few ms per inference on one core.
LAYERS = 3


class _Batches(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def int8_net(model: onnx.ModelProto, feed: Mapping[str, np.ndarray], folder: Path) -> onnx.ModelProto:
    """The QDQ int8 form of `model` by ONNX Runtime's own static quantization, calibrated on `feed`."""
    source, target = folder / "float.onnx", folder / "int8.onnx"
    onnx.save(model, source)
    quantize_static(
        str(source),
        str(target),
        _Batches([dict(feed)]),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return onnx.load(str(target))


def fixed_rounds(models: list[onnx.ModelProto], feed: Mapping[str, np.ndarray], threads: int) -> float:
    """Ratio model 0 ms / model 1 ms as measured before compare_latency: SPEED_ROUNDS rounds, each model
    RUNS_PER_ROUND runs in a fixed order, the median of all runs per model (kept here as the baseline)."""
    sessions = [create_session(m, resolve_hardware("cpu"), threads, prepack=True) for m in models]
    for session in sessions:
        session.run(None, feed)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(SPEED_ROUNDS):
        for session, series in zip(sessions, times):
            for _ in range(RUNS_PER_ROUND):
                start = time.perf_counter()
                session.run(None, feed)
                series.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times[0]) / statistics.median(times[1])


@dataclass
class Outcome:
    """One measurement: the ratio model 0 / model 1, the call it makes against GAIN, rounds and seconds."""

    ratio: float
    call: str  # "A>5%", "B>5%" or "-" (no call)
    rounds: int
    seconds: float


def by_fixed_rounds(models: list[onnx.ModelProto], feed: Mapping[str, np.ndarray], threads: int) -> Outcome:
    started = time.perf_counter()
    ratio = fixed_rounds(models, feed, threads)
    call = "B>5%" if ratio > GAIN else "A>5%" if ratio < 1 / GAIN else "-"
    return Outcome(ratio, call, SPEED_ROUNDS, time.perf_counter() - started)


def by_harness(models: list[onnx.ModelProto], feed: Mapping[str, np.ndarray], threads: int) -> Outcome:
    started = time.perf_counter()
    result = compare_latency(models, feed, "cpu", threads, threshold=GAIN)
    (ratio,) = result.ratios
    call = "B>5%" if ratio.verdict == "above" else "-"
    if ratio.interval is not None and ratio.interval[1] < 1 / GAIN:
        call = "A>5%"
    return Outcome(ratio.ratio, call, result.models[0].rounds, time.perf_counter() - started)


def row(pair: str, threads: int, method: str, outcomes: list[Outcome]) -> str:
    ratios = [o.ratio for o in outcomes]
    calls = {c: sum(o.call == c for o in outcomes) for c in ("A>5%", "B>5%", "-")}
    return (
        f"| {pair} | {threads} | {method} | {min(ratios):.3f} / {statistics.median(ratios):.3f} / {max(ratios):.3f} "
        f"| {calls['A>5%']} | {calls['B>5%']} | {calls['-']} | {statistics.median(o.rounds for o in outcomes):.0f} "
        f"| {statistics.mean(o.seconds for o in outcomes):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    model = conv_stack(LAYERS)
    feed = {"x": np.random.default_rng(1).standard_normal((1, CHANNELS, SIDE, SIDE)).astype(np.float32)}
    with tempfile.TemporaryDirectory() as folder:
        pairs = {"identical (A=B)": [model, model], "float A vs int8 B": [model, int8_net(model, feed, Path(folder))]}
    methods: dict[str, Callable[..., Outcome]] = {"fixed": by_fixed_rounds, "harness": by_harness}
    print(f"Machine: {cpu_model_name()}, {os.cpu_count()} cores; load average before {os.getloadavg()}")
    print(f"{args.repeats} repetitions; ratio = A ms / B ms; a call is 'one faster by >{GAIN - 1:.0%}'.")
    print("| pair | threads | method | ratio min / median / max | A>5% | B>5% | no call | rounds | s each |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    started = time.perf_counter()
    for pair, models in pairs.items():
        for threads in thread_counts():
            for method, measure in methods.items():
                outcomes = [measure(models, feed, threads) for _ in range(args.repeats)]
                print(row(pair, threads, method, outcomes), flush=True)
    print(f"total {time.perf_counter() - started:.0f} s; load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
