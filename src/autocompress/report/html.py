"""report.html: one self-contained page (figures embedded as data URIs) written next to report.json.

Warnings come first, then the before/after summary, the automatic plan, what was done to each op, and the
figures; every number is formatted (report/format.py), never printed raw.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from autocompress.report.figures import bars_figure, pareto_figure, timeline_figure, trials_figure
from autocompress.report.format import SUMMARY_HEADER, ratio, significant, summary_rows, text_table
from autocompress.report.record import Report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}
.note{color:#555;font-size:0.9em}.headline{font-size:1.15em}
.warnings{background:#fff4e5;border-left:4px solid #e69500;padding:0.5em 1em;margin:1em 0}
td.text{text-align:left}
"""


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" data-figure="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _table(rows: list[list[Any]], header: list[str], text_columns: tuple[int, ...] = ()) -> str:
    """An HTML table; cells of `text_columns` are left-aligned like prose."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=text' if i in text_columns else ''}>{html.escape(str(c))}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _stage_infos(report: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(stage name, info) of every stage, and of the sub-stages an automatic plan ran (nested in its info)."""

    def walk(name: str, info: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        if not isinstance(info, dict):
            return
        yield name, info
        for key, value in info.items():
            yield from walk(key, value)

    for stage in report.get("timeline", []):
        yield from walk(stage.get("stage", ""), stage.get("info", {}))


def _collect(report: Mapping[str, Any], key: str) -> list | dict:
    """The last non-empty `key` (trials, sparsity, sensitivity) among the stages' records."""
    found: Any = None
    for _, info in _stage_infos(report):
        if info.get(key):
            found = info[key]
    return found or []


def warnings_of(report: Mapping[str, Any]) -> list[str]:
    """The warnings about the whole result, then every stage's, prefixed by the stage, in run order."""
    stages = [f"{name}: {text}" for name, info in _stage_infos(report) for text in info.get("warnings", [])]
    return [*report.get("warnings", []), *stages]


def _op_detail(op: Mapping[str, Any]) -> str:
    """The kept/original channels of a pruned weight, or the sparsity of a sparse one."""
    if op.get("original") is not None:
        kept, original = op.get("kept"), op["original"]
        return f"{kept}/{original} channels ({100 * (1 - kept / original):.1f} % pruned)" if original else ""
    if op.get("sparsity") is not None:
        return f"{100 * op['sparsity']:.1f} % zeros"
    return ""


def op_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row per op or weight a stage recorded: stage, name, op type, what was done, detail, why."""
    return [
        [name, op.get("name", ""), op.get("op_type", ""), op.get("action", ""), _op_detail(op), op.get("reason", "")]
        for name, info in _stage_infos(report)
        for op in info.get("ops", [])
    ]


OP_HEADER = ["stage", "op / weight", "op type", "result", "detail", "why"]


def _headline(report: Mapping[str, Any]) -> str:
    """One sentence: speed at each thread count, size ratio, metric before and after."""
    base, comp = report["baseline"], report["compressed"]
    by_base, by_comp = base.get("latency_ms_by_threads") or {}, comp.get("latency_ms_by_threads") or {}
    counts = sorted((t for t in by_base if t in by_comp), key=int)
    speeds = [
        f"{ratio(by_base[t], by_comp[t], 'faster', 'slower')} at {t} thread{'s' if t != '1' else ''}" for t in counts
    ] or [ratio(base.get("latency_ms"), comp.get("latency_ms"), "faster", "slower")]
    name = html.escape(str(base.get("metric_name") or "metric"))
    metric = f"{name} {significant(base.get('metric'))} → {significant(comp.get('metric'))}"
    size = ratio(base.get("size_mb"), comp.get("size_mb"), "smaller", "larger")
    return f"<p class='headline'>{', '.join(speeds)}; {size}; {metric}</p>"


def _intro(report: Mapping[str, Any]) -> list[str]:
    """Title, strategy, headline and warnings: what a reader sees before scrolling."""
    hw = report.get("hardware", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>autocompress report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>autocompress report</h1>",
        f"<p>strategy: <b>{html.escape(' → '.join(report.get('strategy', [])) or 'none')}</b>; "
        f"took {report.get('elapsed_s', 0):.1f} s</p>",
        _headline(report),
    ]
    warnings = warnings_of(report)
    if warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        parts.append(f"<div class='warnings'><b>Warnings</b><ul>{items}</ul></div>")
    parts += [
        "<h2>Before and after</h2>",
        _table(summary_rows(report), SUMMARY_HEADER),
        f"<p class='note'>latency: median, batch 1, {html.escape(str(hw.get('deploy_hardware', 'cpu')))} "
        f"({html.escape(str(hw.get('processor', '')))}, ONNX Runtime {html.escape(str(hw.get('onnxruntime', '')))}); "
        f"size: the saved model file. {html.escape(hw.get('note', '') or '')}</p>",
    ]
    return parts


def _searches(report: Mapping[str, Any]) -> list[str]:
    """The hyperparameter search's figure and table, and the per-layer bar charts."""
    parts = []
    trials = _collect(report, "trials")
    if trials:
        header = sorted({k for t in trials for k in t.get("params", {})})
        rows = [
            [
                i + 1,
                *[_cell(t.get("params", {}).get(h, "")) for h in header],
                significant(t.get("score")),
                significant(t.get("metric")),
                f"{t.get('seconds') or 0:.1f} s",
            ]
            for i, t in enumerate(trials)
        ]
        parts.append("<h2>Hyperparameter search</h2>" + _img(trials_figure(trials), "trials"))
        parts.append(_table(rows, ["trial", *header, "score", "metric", "time"]))
    sparsity = _collect(report, "sparsity")
    if sparsity:
        parts.append(_img(bars_figure(sparsity, "sparsity per layer", "fraction of zeros"), "sparsity"))
    sensitivity = _collect(report, "sensitivity")
    if sensitivity:
        parts.append(
            _img(bars_figure(sensitivity, "sensitivity per layer", "output error when quantized alone"), "sensitivity")
        )
    return parts


def _cell(value: Any) -> str:
    """A searched setting: floats to 4 significant digits, the rest as written."""
    return significant(value) if isinstance(value, float) else str(value)


def render_html(report: Mapping[str, Any]) -> str:
    parts = _intro(report)
    for plan in report.get("plan", []):
        steps = " → ".join(plan.get("plan", []))
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in plan.get("reasons", []))
        parts.append(f"<h2>Automatic plan</h2><p><b>{html.escape(steps)}</b></p><ul>{reasons}</ul>")
    ops = op_rows(report)
    if ops:
        parts.append("<h2>What was done to each op</h2>" + _table(ops, OP_HEADER, text_columns=(1, 2, 3, 5)))
    parts.append("<h2>Accuracy and latency</h2>" + _img(pareto_figure(report), "pareto"))
    parts.append("<h2>Stages</h2>" + _img(timeline_figure(report.get("timeline", [])), "timeline"))
    parts += _searches(report)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: Report | Mapping[str, Any], save_dir: Path) -> Path:
    """Write report.html from the record a compression built, or from report.json's content as read back."""
    data = report.to_dict() if isinstance(report, Report) else dict(report)
    path = Path(save_dir) / "report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


def text_summary(report: Mapping[str, Any]) -> str:
    """The page's summary for a terminal: headline figures, warnings, the before/after table and the count of
    ops per result."""
    lines = [f"strategy: {' -> '.join(report.get('strategy', [])) or 'none'}"]
    lines += [f"WARNING {text}" for text in warnings_of(report)]
    lines += ["", text_table(summary_rows(report), SUMMARY_HEADER)]
    counts: dict[str, int] = {}
    for row in op_rows(report):
        counts[row[3]] = counts.get(row[3], 0) + 1
    if counts:
        lines += ["", "ops: " + ", ".join(f"{number} {action}" for action, number in counts.items())]
    return "\n".join(lines)
