"""The zoo's section of BENCHMARKS.md: one row per model and tool, the runs that wrote them, and one summary.

The section is data that can be read back: with `--keep-rows` the rows and run lines already written are parsed,
this run's rows replace those of the same model and tool, and the summary is computed from the cells of the whole
table, so rows kept from earlier runs and this run's rows count alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import MachineInfo, markdown_table
from benchmarks.zoo.runner import Latency, Row
from benchmarks.zoo.tools import TOOLS

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
    "ops int8 / float",
    "plan",
    "compression wall s",
    "peak RSS MB",
    "outcome",
)
ORT_TOOLS = ("ort_static", "ort_dynamic")
FAST_SPEEDUP = 1.5
#: Thread settings as the runner labels them, with the columns and the words the summary uses for each.
SETTINGS = {
    "1T": ("ms 1T (p10-p90)", "speedup 1T", "1 thread"),
    "all": ("ms all-cores (p10-p90)", "speedup all-cores", "all cores"),
}
RUNS_INTRO = "Runs, oldest first (each row comes from the latest run of its model and tool; its speedups are against that run's fp32):"
METHOD = (
    "Each tool runs in a fresh process (peak RSS is that process's; compression wall s is its wall time; for "
    "fp32, the time to locate or export the file). ORT static: `quant_pre_process`, then `quantize_static` "
    "(QDQ, U8 activations, S8 per-channel weights, MinMax); ORT dynamic: `quantize_dynamic` (S8 weights), only "
    "for models with MatMul/Gemm; auto: `AutoCompression(model, calibration feeds, eval_callback=metric, "
    'config=None)`; quant_post: config `{"QuantPost": {}}`. Every model is scored on the same evaluation feeds; '
    "Δ is the metric minus fp32's. Latency: batch 1 (the first evaluation item, cut on each input's batch axis), "
    "median and 10th-90th percentiles of interleaved rounds, at 1 thread and at all cores. `ops int8 / float`: "
    "ops of the saved model that run in int8 (QLinear*, ConvInteger, MatMulInteger, DynamicQuantizeMatMul, or a "
    "Conv/MatMul/Gemm whose weight comes from a DequantizeLinear) / Conv, MatMul and Gemm left in float. `plan`: "
    "what autocompress chose, from its report.json. A cell a row's run did not write is `-`."
)

Cells = dict[str, str]  # one table row, by column name


# ---------------------------------------------------------------- from a run's rows to cells


def _fp32(rows: Sequence[Row]) -> Row:
    return next(row for row in rows if row.result.tool == "fp32")


def speedup(row: Row, fp32: Row, label: str) -> float | None:
    if label not in row.latency or label not in fp32.latency:
        return None
    return fp32.latency[label].median / row.latency[label].median


def _latency_cell(row: Row, label: str) -> str:
    latency = row.latency.get(label)
    return "-" if latency is None else f"{latency.median:.2f} ({latency.p10:.2f}-{latency.p90:.2f})"


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def outcome_cell(row: Row) -> str:
    result = row.result
    return f"{result.outcome}: {result.message}" if result.message else result.outcome


def _mentions(value: Any, key: str) -> bool:
    """Whether `key` names an entry anywhere in nested JSON data."""
    if isinstance(value, Mapping):
        return key in value or any(_mentions(item, key) for item in value.values())
    return isinstance(value, list) and any(_mentions(item, key) for item in value)


def plan_cell(tool: str, report: Mapping[str, Any] | None) -> str:
    """What autocompress chose, from report.json: the automatic plan's steps, else the strategies it ran; marked
    when a stage chose per-op mixed precision. `-` for fp32 and for tools that write no report."""
    if tool == "fp32" or report is None:
        return "-"
    steps = "; ".join(" -> ".join(entry["plan"]) for entry in report.get("plan", []) if entry.get("plan"))
    text = steps or "+".join(report.get("strategy", [])) or "-"
    if _mentions(report.get("timeline", []), "mixed_precision") and "mixed precision" not in text:
        text += " (mixed precision)"
    return text


def table_rows(rows: Sequence[Row]) -> list[Cells]:
    """One table row per tool of one model (rows all belong to the same model, fp32 among them)."""
    fp32 = _fp32(rows)
    out = []
    for row in rows:
        delta = None if row is fp32 or row.metric is None or fp32.metric is None else row.metric - fp32.metric
        values = [
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
            "-" if row.ops is None else row.ops.cell(),
            plan_cell(row.result.tool, row.report),
            _number(row.result.wall_s, ".1f"),
            _number(row.result.peak_rss_mb, ".0f"),
            outcome_cell(row),
        ]
        out.append(dict(zip(HEADER, values, strict=True)))
    return out


# ---------------------------------------------------------------- the section as data: rows and runs


@dataclass
class Section:
    """The table's rows and the run lines (command, source, machine) of the runs that wrote them."""

    rows: list[Cells] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def merged(self, new: Section) -> Section:
        """This section with `new`'s rows replacing those of the same model and tool, `new`'s runs after its own;
        rows grouped by model (in order of first appearance), tools in the runner's order."""
        fresh = {(row["model"], row["tool"]) for row in new.rows}
        rows = [row for row in self.rows if (row["model"], row["tool"]) not in fresh] + new.rows
        models = list(dict.fromkeys(row["model"] for row in rows))
        rank = {tool: i for i, tool in enumerate(TOOLS)}
        rows.sort(key=lambda row: (models.index(row["model"]), rank.get(row["tool"], len(rank))))
        return Section(rows, [run for run in self.runs if run not in new.runs] + new.runs)


def run_line(command: str, revision: str, machine: MachineInfo, notes: str = "") -> str:
    return f"`{command}` (source {revision}). {machine.markdown()} {notes}".strip()


def new_section(by_model: Sequence[Sequence[Row]], run: str) -> Section:
    return Section([cells for rows in by_model for cells in table_rows(rows)], [run])


def _split_row(line: str) -> list[str]:
    """The cells of a markdown table line (an escaped `\\|` is part of a cell, as markdown_table writes it)."""
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _section_lines(text: str) -> list[str]:
    """The lines under HEADING, up to the next heading of its level or above."""
    lines = text.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() == HEADING), len(lines))
    end = next((i for i in range(start, len(lines)) if re.match(r"^#{1,2}\s", lines[i])), len(lines))
    return lines[start:end]


def _runs(lines: Sequence[str]) -> list[str]:
    """The run lines: a single `Command:` line, or the `- ` items after the last line that introduces the runs
    (`Runs...:` as written here, `Commands...:` as earlier sections wrote it)."""
    runs = [line.removeprefix("Command: ") for line in lines if line.startswith("Command: ")]
    intro = [i for i, line in enumerate(lines) if line.startswith(("Runs", "Commands")) and line.endswith(":")]
    for line in lines[intro[-1] + 1 :] if intro else []:
        if line.strip() and not line.startswith("- "):
            break
        if line.startswith("- "):
            runs.append(line[2:])
    return runs


def read_section(text: str) -> Section:
    """The rows and runs of the zoo section of a BENCHMARKS.md text; cells are read by their column's name, so a
    table written with fewer columns reads back with `-` in the missing ones."""
    lines = _section_lines(text)
    table = [line for line in lines if line.startswith("| ")]
    if not table:
        return Section([], _runs(lines))
    header = _split_row(table[0])
    rows = [dict(zip(header, _split_row(line), strict=False)) for line in table[1:]]
    return Section([{name: row.get(name, "-") for name in HEADER} for row in rows], _runs(lines))


# ---------------------------------------------------------------- the summary, from the cells


def _float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _latency(cell: str) -> Latency | None:
    match = re.fullmatch(r"([\d.]+) \(([\d.]+)-([\d.]+)\)", cell)
    return None if match is None else Latency(*(float(group) for group in match.groups()))


@dataclass(frozen=True)
class Measured:
    """A table row as the summary reads it back from its cells."""

    model: str
    tool: str
    kind: str  # the outcome's first word(s): fp32, int8, float kept, error, crash, timeout
    metric: float | None
    latency: dict[str, Latency]
    speedup: dict[str, float]

    @classmethod
    def of(cls, cells: Mapping[str, str]) -> Measured:
        latency = {label: _latency(cells.get(columns[0], "-")) for label, columns in SETTINGS.items()}
        speed = {label: _float(cells.get(columns[1], "-")) for label, columns in SETTINGS.items()}
        return cls(
            cells["model"],
            cells["tool"],
            cells.get("outcome", "-").split(":")[0],
            _float(cells.get("metric", "-")),
            {label: value for label, value in latency.items() if value is not None},
            {label: value for label, value in speed.items() if value is not None},
        )

    def drop(self, fp32: Measured) -> float | None:
        """How much of fp32's metric this row lost, relative (negative: it gained)."""
        if self.metric is None or fp32.metric is None:
            return None
        return (fp32.metric - self.metric) / max(abs(fp32.metric), 1e-12)

    def within(self, fp32: Measured, tolerance: float) -> bool:
        drop = self.drop(fp32)
        return drop is not None and drop <= tolerance


def _listed(items: Sequence[str], of: int | None = None) -> str:
    """`2 models: a; b`, or `2 of 13 models: a; b` with a total."""
    count = len(items) if of is None else of
    head = f"{len(items)}" if of is None else f"{len(items)} of {of}"
    return f"{head} model{'' if count == 1 else 's'}" + (f": {'; '.join(items)}" if items else "")


@dataclass
class Summary:
    """The zoo's goal numbers over every model in the table: auto's failures, slowdowns and drops, its models at
    >= FAST_SPEEDUP, and where ORT's quantizers beat it."""

    models: int
    tolerance: float
    failed: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    slower: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    fast: list[str] = field(default_factory=list)
    ort_better: dict[str, list[str]] = field(default_factory=lambda: {label: [] for label in SETTINGS})

    def markdown(self) -> str:
        tol = f"{self.tolerance:.0%}"
        lines = [
            f"Summary over the {self.models} models in the table (tolerance: a relative metric drop of {tol}):",
            f"- auto failed (error or crash) on {_listed(self.failed)}",
            f"- auto timed out on {_listed(self.timeouts)}",
            f"- auto slower than fp32 beyond the spread (its median above fp32's 90th percentile, at 1 thread or at "
            f"all cores) on {_listed(self.slower)}",
            f"- auto's metric drop beyond {tol} on {_listed(self.dropped)}",
            f"- auto reaches >= {FAST_SPEEDUP}x at 1 thread within {tol} on {_listed(self.fast, self.models)}",
        ]
        lines += [
            f"- ORT's quantizers (int8, within {tol}) beat auto at {SETTINGS[label][2]} on "
            f"{_listed(self.ort_better[label])}"
            for label in SETTINGS
        ]
        if self.missing:
            lines.append(f"- not run with auto: {_listed(self.missing)}")
        return "\n".join(lines)


def _auto_findings(summary: Summary, auto: Measured, fp32: Measured) -> None:
    """What auto's row of one model adds to the summary."""
    if auto.kind in ("error", "crash"):
        summary.failed.append(auto.model)
    elif auto.kind == "timeout":
        summary.timeouts.append(auto.model)
    slow = [
        f"{SETTINGS[label][2]} {mine.median:.2f} ms vs fp32 {fp32.latency[label].p90:.2f}"
        for label, mine in auto.latency.items()
        if label in fp32.latency and mine.median > fp32.latency[label].p90
    ]
    if slow:
        summary.slower.append(f"{auto.model}: {', '.join(slow)}")
    drop = auto.drop(fp32)
    if drop is not None and drop > summary.tolerance:
        summary.dropped.append(f"{auto.model} {drop:.2%}")
    if auto.within(fp32, summary.tolerance) and auto.speedup.get("1T", 0.0) >= FAST_SPEEDUP:
        summary.fast.append(f"{auto.model} {auto.speedup['1T']:.2f}x")


def _ort_findings(summary: Summary, rows: Sequence[Measured], auto: Measured | None, fp32: Measured) -> None:
    """ORT rows of one model with an int8 model within tolerance that is faster than auto's (or than fp32,
    where auto left no model within tolerance: the user would keep fp32)."""
    holds = auto is not None and auto.within(fp32, summary.tolerance)
    for row in rows:
        if row.tool not in ORT_TOOLS or row.kind != "int8" or not row.within(fp32, summary.tolerance):
            continue
        for label, speed in row.speedup.items():
            theirs = auto.speedup.get(label) if holds and auto is not None else None
            if speed > (theirs if theirs is not None else 1.0):
                versus = f"{theirs:.2f}x" if theirs is not None else "none within tolerance"
                summary.ort_better[label].append(f"{row.model} {row.tool} {speed:.2f}x vs auto {versus}")


def summarize(cells: Sequence[Mapping[str, str]], tolerance: float) -> Summary:
    """The summary over every model of the table that has an fp32 row (the reference of every comparison)."""
    rows = [Measured.of(row) for row in cells]
    models = list(dict.fromkeys(row.model for row in rows if row.tool == "fp32"))
    summary = Summary(len(models), tolerance)
    for model in models:
        mine = [row for row in rows if row.model == model]
        fp32 = next(row for row in mine if row.tool == "fp32")
        auto = next((row for row in mine if row.tool == "auto"), None)
        if auto is None:
            summary.missing.append(model)
        else:
            _auto_findings(summary, auto, fp32)
        _ort_findings(summary, mine, auto, fp32)
    return summary


def render(section: Section, tolerance: float) -> str:
    """The section's body: how it was measured, the table, the summary over the whole table, and the runs."""
    table = markdown_table(HEADER, [[row.get(name, "-") for name in HEADER] for row in section.rows])
    runs = [f"- {run}" for run in section.runs]
    return "\n".join([METHOD, "", table, "", summarize(section.rows, tolerance).markdown(), "", RUNS_INTRO, *runs])
