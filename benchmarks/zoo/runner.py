"""Runs the zoo: every tool of a model in its own process, then one scoring and latency pass over their results.

Compression runs in fresh processes (peak RSS is the tool's own; a crash or a timeout is an outcome). Scoring
and latency run here, in one process, so every tool's model is scored on the same evaluation feeds against
fp32 outputs computed once and timed in the same interleaved rounds.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from benchmarks.common import ROOT, child_peak_rss_mb, cpu_session, interleaved_times
from benchmarks.zoo.ops import OpCount, count_ops
from benchmarks.zoo.spec import Feed, ZooModel
from benchmarks.zoo.tools import Sizes, ToolResult, one_line, outputs_on, tools_for

log = logging.getLogger("benchmarks.zoo")

DEFAULT_TOOL_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Latency:
    """Median ms of one batch-1 inference and the spread of the runs (10th and 90th percentiles)."""

    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, times: Sequence[float]) -> Latency:
        p10, median, p90 = np.percentile(times, [10, 50, 90])
        return cls(float(median), float(p10), float(p90))


@dataclass
class Row:
    """One tool on one model, as the table shows it."""

    model: ZooModel
    result: ToolResult
    metric: float | None = None
    latency: dict[str, Latency] = field(default_factory=dict)  # "1T" / "all" -> latency
    ops: OpCount | None = None
    report: dict | None = None  # autocompress's report.json, beside the model it saved

    @property
    def usable(self) -> bool:
        return self.result.model_path is not None and self.result.outcome not in ("error", "timeout", "crash")


# ---------------------------------------------------------------- compression, one process per tool


def tool_argv(model: str, tool: str, work: Path, sizes: Sizes, source: Path | None, budget: float | None) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.zoo.tools",
        "--model",
        model,
        "--tool",
        tool,
        "--work",
        str(work),
        "--out",
        str(work / "result.json"),
        "--calibration",
        str(sizes.calibration),
        "--evaluation",
        str(sizes.evaluation),
    ]
    if source is not None:
        argv += ["--source", str(source)]
    if budget is not None:
        argv += ["--time-budget", str(budget)]
    return argv


def run_tool(
    model: str,
    tool: str,
    work: Path,
    sizes: Sizes,
    source: Path | None = None,
    timeout_s: float = DEFAULT_TOOL_TIMEOUT_S,
    time_budget: float | None = None,
) -> ToolResult:
    """One tool in a fresh process under `timeout`; a crash or a timeout is the result's outcome."""
    work.mkdir(parents=True, exist_ok=True)
    argv = ["timeout", "-k", "10", str(int(timeout_s)), *tool_argv(model, tool, work, sizes, source, time_budget)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "AUTOCOMPRESS_CACHE_DIR": str(work / "cache"),
    }  # a cold statistics cache for every run
    start = time.perf_counter()
    try:
        peak, _ = child_peak_rss_mb(argv, env)
    except RuntimeError as exc:
        wall = time.perf_counter() - start
        if wall >= timeout_s:
            return ToolResult(tool, None, wall, "timeout", f"no result after {timeout_s:.0f} s")
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return ToolResult(tool, None, wall, "crash", lines[-1][:300] if lines else "the process died")
    result = ToolResult.read(work / "result.json")
    result.peak_rss_mb = peak
    return result


def compress_model(
    model: ZooModel,
    work: Path,
    sizes: Sizes,
    timeout_s: float = DEFAULT_TOOL_TIMEOUT_S,
    time_budget: float | None = None,
    tools: Sequence[str] | None = None,
) -> list[ToolResult]:
    """fp32 first (it locates or exports the file every other tool starts from), then each applicable tool
    (those of `tools` that apply, when given)."""
    fp32 = run_tool(model.name, "fp32", work / "fp32", sizes, timeout_s=timeout_s)
    if fp32.model_path is None:
        raise RuntimeError(f"{model.name}: the fp32 model could not be made: {fp32.message}")
    source = Path(fp32.model_path)
    results = [fp32]
    for tool in [name for name in tools_for(source)[1:] if tools is None or name in tools]:
        log.info("%s: %s", model.name, tool)
        results.append(run_tool(model.name, tool, work / tool, sizes, source, timeout_s, time_budget))
        log.info("%s: %s -> %s %s", model.name, tool, results[-1].outcome, results[-1].message)
    return results


# ---------------------------------------------------------------- scoring and latency, in this process


def batch_axes(path: Path, feed: Feed) -> dict[str, int | None]:
    """Per input, the axis that holds the batch (None: fed whole), read from the declared shapes and the data.

    The batch size is axis 0 of the first input that has axes. An input's batch axis is the one declared with
    that input's batch dimension name, otherwise the first axis of that size not declared as a fixed number
    (so a recurrent state [2, B, H] is cut on axis 1 and a scalar is never cut).
    """
    model = onnx.load(str(path), load_external_data=False)
    declared = {
        i.name: [d.dim_param or (d.dim_value or None) for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    first = next((name for name, value in feed.items() if value.ndim), None)
    if first is None:
        return dict.fromkeys(feed)
    batch, batch_name = feed[first].shape[0], declared.get(first, [None])[0]
    axes: dict[str, int | None] = {}
    for name, value in feed.items():
        dims = declared.get(name, [None] * value.ndim)
        if isinstance(batch_name, str) and batch_name in dims:
            axes[name] = dims.index(batch_name)
            continue
        axes[name] = next(
            (i for i, size in enumerate(value.shape) if size == batch and not isinstance(dims[i], int)), None
        )
    return axes


def batch_one(path: Path, feed: Feed) -> Feed:
    """The feed's first item, cut on each input's batch axis; the whole feed where the cut one does not run."""
    axes = batch_axes(path, feed)
    cut = {
        name: np.ascontiguousarray(np.take(value, [0], axis=axes[name])) if axes[name] is not None else value
        for name, value in feed.items()
    }
    try:
        cpu_session(path, 1).run(None, cut)
    except Exception as exc:  # noqa: BLE001 - any refusal means the model only runs the feed as given
        log.warning("%s does not run a batch-1 cut of the feed (%s); timing the whole feed", path.name, one_line(exc))
        return dict(feed)
    return cut


def score_rows(model: ZooModel, results: Sequence[ToolResult], sizes: Sizes) -> list[Row]:
    """Every result's metric on the same evaluation feeds, against fp32 outputs computed once."""
    evaluation = model.evaluation(sizes.evaluation)
    rows = [Row(model, result) for result in results]
    reference = outputs_on(Path(results[0].model_path), evaluation)
    for row in rows:
        if not row.usable:
            continue
        try:
            outputs = reference if row.result.tool == "fp32" else outputs_on(Path(row.result.model_path), evaluation)
            row.metric = float(model.score(outputs, reference, evaluation.labels))
        except Exception as exc:  # noqa: BLE001 - a model that cannot be scored is an outcome of its tool
            row.result.outcome, row.result.message = "error", f"at scoring: {one_line(exc)}"
    return rows


def time_rows(rows: Sequence[Row], sizes: Sizes, seconds: float, threads: Mapping[str, int]) -> None:
    """Batch-1 latency of every usable row at each thread setting, interleaved across the model's tools."""
    usable = [row for row in rows if row.usable]
    feed = batch_one(Path(usable[0].result.model_path), rows[0].model.evaluation(sizes.evaluation).feeds[0])
    paths = {row.result.tool: row.result.model_path for row in usable}
    for label, count in threads.items():
        for tool, times in interleaved_times(paths, feed, count, seconds=seconds).items():
            next(row for row in usable if row.result.tool == tool).latency[label] = Latency.of(times)


def thread_settings() -> dict[str, int]:
    return {"1T": 1, "all": os.cpu_count() or 1}


def describe_rows(rows: Sequence[Row]) -> None:
    """Every model's op counts, and the report autocompress saved beside its model (absent for other tools)."""
    for row in rows:
        if row.result.model_path is None:
            continue
        path = Path(row.result.model_path)
        row.ops = count_ops(path)
        report = path.parent / "report.json"
        row.report = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else None


def measure_model(model: ZooModel, results: Sequence[ToolResult], sizes: Sizes, latency_seconds: float) -> list[Row]:
    rows = score_rows(model, results, sizes)
    describe_rows(rows)
    time_rows(rows, sizes, latency_seconds, thread_settings())
    return rows
