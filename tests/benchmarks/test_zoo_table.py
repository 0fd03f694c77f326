"""The zoo table: cells from a run's rows, the plan cell from report.json, reading a section back and merging
runs into it, and the summary's counts over hand-made rows."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import MachineInfo, write_section
from benchmarks.zoo.ops import OpCount
from benchmarks.zoo.runner import Latency, Row
from benchmarks.zoo.spec import EvalSet, ZooModel
from benchmarks.zoo.table import (
    HEADER,
    HEADING,
    RUNS_INTRO,
    new_section,
    plan_cell,
    read_section,
    render,
    run_line,
    summarize,
)
from benchmarks.zoo.tools import ToolResult

MACHINE = MachineInfo("Test CPU", 2, "1.0", "2026-01-01 00:00", "3.11")
AUTO_FLOAT = {
    "strategy": ["Auto[float (no plan within tolerance)]"],
    "plan": [{"plan": ["float (no plan within tolerance)"], "reasons": ["model type: cnn"]}],
    "timeline": [{"stage": "Auto[float (no plan within tolerance)]", "seconds": 1.0, "info": {"model_type": "cnn"}}],
}
AUTO_MIXED = {
    "strategy": ["Auto[QuantPost: int8]"],
    "plan": [{"plan": ["QuantPost: int8"], "reasons": []}],
    "timeline": [{"stage": "Auto[QuantPost: int8]", "info": {"QuantPost": {"mixed_precision": {"int8_ops": 3}}}}],
}
QUANT_POST = {"strategy": ["QuantPost"], "plan": [], "timeline": [{"stage": "QuantPost", "info": {"metric": 0.9}}]}


def _model(name: str) -> ZooModel:
    return ZooModel(
        name, "tiny", "", "agreement", lambda work: work, lambda n: [], lambda n: EvalSet([]), lambda *a: 1.0
    )


def _row(name: str, tool: str, metric: float | None, ms: float | None, outcome: str, report: dict | None = None) -> Row:
    error = outcome in ("error", "timeout")
    result = ToolResult(tool, None if error else f"/m/{tool}.onnx", 2.5, outcome, "ValueError: bad" if error else "")
    latency = {} if ms is None else {"1T": Latency(ms, ms * 0.9, ms * 1.1), "all": Latency(ms / 2, ms / 3, ms)}
    ops = None if error else OpCount(0 if outcome == "fp32" else 4, 4 if outcome == "fp32" else 0)
    return Row(_model(name), result, metric, latency, ops, report)


def test_plan_cell_reads_the_chosen_plan_from_report_json() -> None:
    assert plan_cell("auto", AUTO_FLOAT) == "float (no plan within tolerance)"
    assert plan_cell("auto", AUTO_MIXED) == "QuantPost: int8 (mixed precision)"
    assert plan_cell("quant_post", QUANT_POST) == "QuantPost"
    assert plan_cell("fp32", None) == "-" and plan_cell("ort_static", None) == "-"


def test_cells_of_a_run_and_the_section_it_writes(tmp_path: Path) -> None:
    rows = [
        _row("a", "fp32", 0.90, 10.0, "fp32"),
        _row("a", "ort_static", 0.895, 4.0, "int8"),
        _row("a", "auto", 0.90, 5.0, "int8", AUTO_MIXED),
        _row("a", "quant_post", None, None, "error", QUANT_POST),
    ]
    section = new_section([rows], run_line("python -m benchmarks.zoo --models a", "abc", MACHINE))
    auto = section.rows[2]
    assert (auto["speedup 1T"], auto["Δ vs fp32"], auto["ops int8 / float"]) == ("2.00", "+0.0000", "4 / 0")
    assert auto["plan"] == "QuantPost: int8 (mixed precision)" and section.rows[0]["plan"] == "-"
    assert section.rows[3]["outcome"] == "error: ValueError: bad" and section.rows[3]["ops int8 / float"] == "-"
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n", encoding="utf-8")
    write_section(out, HEADING, render(section, 0.01))
    text = out.read_text(encoding="utf-8")
    assert "## Other\n\nkept" in text and text.count(HEADING) == 1
    assert next(line for line in text.splitlines() if line.startswith("| ")) == "| " + " | ".join(HEADER) + " |"
    assert read_section(text) == section


def test_merge_keeps_other_models_and_replaces_the_same_model_and_tool() -> None:
    first = new_section(
        [
            [_row("a", "fp32", 1.0, 10.0, "fp32"), _row("a", "auto", 0.9, 5.0, "int8")],
            [_row("b", "fp32", 1.0, 1.0, "fp32")],
        ],
        "run 1",
    )
    again = new_section([[_row("a", "fp32", 1.0, 8.0, "fp32"), _row("a", "ort_static", 1.0, 4.0, "int8")]], "run 2")
    merged = read_section(f"{HEADING}\n\n{render(first, 0.01)}\n").merged(again)
    assert [(row["model"], row["tool"]) for row in merged.rows] == [
        ("a", "fp32"),
        ("a", "ort_static"),
        ("a", "auto"),
        ("b", "fp32"),
    ]
    assert merged.rows[0]["ms 1T (p10-p90)"].startswith("8.00") and merged.rows[2]["metric"] == "0.9000"
    assert merged.runs == ["run 1", "run 2"]


def test_an_older_table_reads_back_with_dashes_in_the_new_columns() -> None:
    old = [c for c in HEADER if c not in ("ops int8 / float", "plan")]
    cells = ["a", "tiny", "agreement", "auto", "1.0000", "+0.0000", "1.00 (0.90-1.10)", "1.00"]
    cells += ["1.00 (0.90-1.10)", "1.00", "3.0", "100", "float kept: strategy Auto\\|x"]
    text = "\n".join(
        [HEADING, "", "| " + " | ".join(old) + " |", "|---|", "| " + " | ".join(cells) + " |", "", "Commands (x):"]
    )
    text += "\n- `python -m benchmarks.zoo --models a`\n\n## Next\n\n- not a run\n"
    section = read_section(text)
    assert section.rows[0]["plan"] == "-" and section.rows[0]["outcome"] == "float kept: strategy Auto|x"
    assert section.runs == ["`python -m benchmarks.zoo --models a`"]
    assert RUNS_INTRO.startswith("Runs") and RUNS_INTRO.endswith(":")


def _cells(model: str, tool: str, metric: str, ms: float | None, outcome: str, speed: tuple[str, str]) -> dict:
    latency = "-" if ms is None else f"{ms:.2f} ({ms * 0.9:.2f}-{ms * 1.1:.2f})"
    return {
        "model": model,
        "tool": tool,
        "metric": metric,
        "ms 1T (p10-p90)": latency,
        "ms all-cores (p10-p90)": latency,
        "speedup 1T": speed[0],
        "speedup all-cores": speed[1],
        "outcome": outcome,
    }


def test_summary_counts_over_the_whole_table() -> None:
    rows = [
        _cells("crash", "fp32", "1.0000", 10.0, "fp32", ("1.00", "1.00")),
        _cells("crash", "auto", "-", None, "error: ValueError: x", ("-", "-")),
        _cells("crash", "ort_static", "0.9950", 5.0, "int8: quant_pre_process", ("2.00", "0.90")),
        _cells("slow", "fp32", "1.0000", 10.0, "fp32", ("1.00", "1.00")),
        _cells("slow", "auto", "0.9800", 12.0, "int8: 1 candidates", ("0.83", "0.83")),
        _cells("slow", "ort_dynamic", "0.9800", 5.0, "int8", ("2.00", "2.00")),
        _cells("fast", "fp32", "1.0000", 10.0, "fp32", ("1.00", "1.00")),
        _cells("fast", "auto", "1.0000", 5.0, "int8", ("2.00", "1.80")),
        _cells("fast", "ort_static", "1.0000", 4.0, "int8", ("2.50", "1.90")),
        _cells("fast", "ort_dynamic", "1.0000", 1.0, "float kept", ("9.00", "9.00")),
        _cells("late", "fp32", "1.0000", 10.0, "fp32", ("1.00", "1.00")),
        _cells("late", "auto", "-", None, "timeout: no result after 900 s", ("-", "-")),
        _cells("none", "fp32", "1.0000", 10.0, "fp32", ("1.00", "1.00")),
    ]
    summary = summarize(rows, 0.01)
    assert summary.models == 5 and summary.missing == ["none"]
    assert summary.failed == ["crash"] and summary.timeouts == ["late"]
    assert summary.slower == ["slow: 1 thread 12.00 ms vs fp32 11.00, all cores 12.00 ms vs fp32 11.00"]
    assert summary.dropped == ["slow 2.00%"] and summary.fast == ["fast 2.00x"]
    assert summary.ort_better["1T"] == [
        "crash ort_static 2.00x vs auto none within tolerance",
        "fast ort_static 2.50x vs auto 2.00x",
    ]
    assert summary.ort_better["all"] == ["fast ort_static 1.90x vs auto 1.80x"]
    text = summary.markdown()
    assert "on 1 of 5 models: fast 2.00x" in text and "timed out on 1 model: late" in text
