"""The zoo's section of BENCHMARKS.md: one row per model and tool, and the summary the goal numbers ask for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.common import MachineInfo, markdown_table
from benchmarks.zoo.runner import Row

HEADING = "## Zoo"
HEADER = (
    "model",
    "family",
    "metric name",
    "tool",
    "metric",
    "Δ vs fp32",
    "ms 1T (p10-p90)",
    "speedup 1T",
    "ms all-cores (p10-p90)",
    "speedup all-cores",
    "compression wall s",
    "peak RSS MB",
    "outcome",
)
ORT_TOOLS = ("ort_static", "ort_dynamic")
FAST_SPEEDUP = 1.5


def _fp32(rows: Sequence[Row]) -> Row:
    return next(row for row in rows if row.result.tool == "fp32")


def speedup(row: Row, fp32: Row, label: str) -> float | None:
    if label not in row.latency or label not in fp32.latency:
        return None
    return fp32.latency[label].median / row.latency[label].median


def relative_drop(row: Row, fp32: Row) -> float | None:
    """How much of fp32's metric the row lost (negative: it gained)."""
    if row.metric is None or fp32.metric is None:
        return None
    return (fp32.metric - row.metric) / max(abs(fp32.metric), 1e-12)


def _latency_cell(row: Row, label: str) -> str:
    latency = row.latency.get(label)
    return "-" if latency is None else f"{latency.median:.2f} ({latency.p10:.2f}-{latency.p90:.2f})"


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def outcome_cell(row: Row) -> str:
    result = row.result
    return f"{result.outcome}: {result.message}" if result.message else result.outcome


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    """One table row per tool of one model (rows all belong to the same model, fp32 among them)."""
    fp32 = _fp32(rows)
    out = []
    for row in rows:
        delta = None if row is fp32 or row.metric is None or fp32.metric is None else row.metric - fp32.metric
        out.append(
            [
                row.model.name,
                row.model.family,
                row.model.metric,
                row.result.tool,
                _number(row.metric, ".4f"),
                _number(delta, "+.4f"),
                _latency_cell(row, "1T"),
                _number(speedup(row, fp32, "1T"), ".2f"),
                _latency_cell(row, "all"),
                _number(speedup(row, fp32, "all"), ".2f"),
                _number(row.result.wall_s, ".1f"),
                _number(row.result.peak_rss_mb, ".0f"),
                outcome_cell(row),
            ]
        )
    return out


@dataclass(frozen=True)
class Summary:
    """The goal numbers: auto within tolerance and not slower, auto at >= 1.5x, where ORT beats auto."""

    models: int
    auto_kept: int
    auto_fast: int
    ort_better: tuple[str, ...]
    tolerance: float

    def markdown(self) -> str:
        better = "; ".join(self.ort_better) or "none"
        return (
            f"Summary: auto kept the metric within {self.tolerance:.0%} and was at least as fast as fp32 (1 thread "
            f"and all cores, or kept the float model) on {self.auto_kept} of {self.models} models; "
            f"{self.auto_fast} of {self.models} reach >= {FAST_SPEEDUP}x at 1 thread with auto. "
            f"ORT's quantizers beat auto (within tolerance and faster at 1 thread) on: {better}."
        )


def auto_holds(auto: Row, fp32: Row, tolerance: float) -> bool:
    """Auto ended with a model within tolerance that is not slower than fp32 (a float model kept is not slower)."""
    drop = relative_drop(auto, fp32)
    if not auto.usable or drop is None or drop > tolerance:
        return False
    if auto.result.outcome == "float kept":
        return True
    return all((speedup(auto, fp32, label) or 0.0) >= 1.0 for label in ("1T", "all"))


def _ort_beats(rows: Sequence[Row], auto: Row | None, fp32: Row, tolerance: float) -> list[str]:
    auto_speed = speedup(auto, fp32, "1T") if auto is not None and auto_holds(auto, fp32, tolerance) else 0.0
    found = []
    for row in rows:
        drop, fast = relative_drop(row, fp32), speedup(row, fp32, "1T")
        quantized = row.result.tool in ORT_TOOLS and row.result.outcome == "int8"
        if quantized and drop is not None and drop <= tolerance and (fast or 0) > (auto_speed or 0):
            found.append(f"{row.model.name} {row.result.tool} {fast:.2f}x vs auto {auto_speed or 0:.2f}x")
    return found


def summarize(by_model: Sequence[Sequence[Row]], tolerance: float) -> Summary:
    kept = fast = 0
    better: list[str] = []
    for rows in by_model:
        fp32 = _fp32(rows)
        auto = next((row for row in rows if row.result.tool == "auto"), None)
        if auto is not None and auto_holds(auto, fp32, tolerance):
            kept += 1
            fast += (speedup(auto, fp32, "1T") or 0.0) >= FAST_SPEEDUP
        better += _ort_beats(rows, auto, fp32, tolerance)
    return Summary(len(by_model), kept, fast, tuple(better), tolerance)


def render(
    by_model: Sequence[Sequence[Row]],
    command: str,
    machine: MachineInfo,
    revision: str,
    tolerance: float,
    notes: str = "",
) -> str:
    """The section's body: command, machine, how it was measured, the table and the summary."""
    rows = [line for model_rows in by_model for line in table_rows(model_rows)]
    return "\n".join(
        [
            f"Command: `{command}` (source {revision})",
            "",
            machine.markdown(),
            "",
            "Each tool runs in a fresh process (peak RSS is that process's; compression wall s is its wall time; for "
            "fp32, the time to locate or export the file). ORT static: `quant_pre_process`, then `quantize_static` "
            "(QDQ, U8 activations, S8 per-channel weights, MinMax); ORT dynamic: `quantize_dynamic` (S8 weights), only "
            "for models with MatMul/Gemm; auto: `AutoCompression(model, calibration feeds, eval_callback=metric, "
            'config=None)`; quant_post: config `{"QuantPost": {}}`. Every model is scored on the same evaluation feeds; '
            "Δ is the metric minus fp32's. Latency: batch 1 (the first evaluation item, cut on each input's batch axis), "
            "median and 10th-90th percentiles of interleaved rounds, at 1 thread and at all cores. " + notes,
            "",
            markdown_table(HEADER, rows),
            "",
            summarize(by_model, tolerance).markdown(),
        ]
    )
