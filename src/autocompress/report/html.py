"""report.html: one self-contained page (figures embedded as data URIs) written next to report.json."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Mapping

from autocompress.report.figures import bars_figure, pareto_figure, timeline_figure, trials_figure
from autocompress.report.record import Report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}
.note{color:#555;font-size:0.9em}
"""


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" data-figure="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _find(info: Any, key: str) -> Any:
    """The last non-empty `key` in a stage's info, looking into nested stage infos (automatic plans nest them)."""
    if not isinstance(info, dict):
        return None
    found = info.get(key) or None
    for value in info.values():
        nested = _find(value, key)
        if nested:
            found = nested
    return found


def _collect(report: dict[str, Any], key: str) -> list | dict:
    """Gather a per-stage list/dict (trials, sparsity, sensitivity) from the stages' info."""
    found: Any = None
    for stage in report.get("timeline", []):
        value = _find(stage.get("info", {}), key)
        if value:
            found = value
    return found or []


def render_html(report: dict[str, Any]) -> str:
    base, comp = report["baseline"], report["compressed"]
    keys = ["metric", "latency_ms", "size_mb", "params", "macs"]
    rows = [[k, base.get(k, "–"), comp.get(k, "–")] for k in keys if k in base or k in comp]
    hw = report.get("hardware", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>autocompress report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>autocompress report</h1>",
        f"<p>strategy: <b>{html.escape(' → '.join(report.get('strategy', [])) or 'none')}</b>; "
        f"speedup {report.get('speedup', 1.0):.3f}x; took {report.get('elapsed_s', 0):.1f}s</p>",
        f"<p class='note'>metric: {html.escape(str(base.get('metric_name')))}; latency: median, batch 1, "
        f"{hw.get('latency_threads', 1)} thread(s), {html.escape(str(hw.get('deploy_hardware', 'cpu')))} "
        f"({html.escape(str(hw.get('processor', '')))}, ONNX Runtime {html.escape(str(hw.get('onnxruntime', '')))}). "
        f"{html.escape(hw.get('note', '') or '')}</p>",
        "<h2>Before and after</h2>",
        _table(rows, ["", "baseline", "compressed"]),
    ]
    for plan in report.get("plan", []):
        steps = " → ".join(plan.get("plan", []))
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in plan.get("reasons", []))
        parts.append(f"<h2>Automatic plan</h2><p><b>{html.escape(steps)}</b></p><ul>{reasons}</ul>")
    parts.append("<h2>Stages</h2>" + _img(timeline_figure(report.get("timeline", [])), "timeline"))
    parts.append(_img(pareto_figure(report), "pareto"))
    trials = _collect(report, "trials")
    if trials:
        parts.append("<h2>Hyperparameter search</h2>" + _img(trials_figure(trials), "trials"))
        header = sorted({k for t in trials for k in t.get("params", {})})
        parts.append(_table([[i + 1, *[t.get("params", {}).get(h, "") for h in header], t.get("score"), t.get("seconds")]
                             for i, t in enumerate(trials)], ["trial", *header, "score", "seconds"]))
    sparsity = _collect(report, "sparsity")
    if sparsity:
        parts.append(_img(bars_figure(sparsity, "sparsity per layer", "fraction of zeros"), "sparsity"))
    sensitivity = _collect(report, "sensitivity")
    if sensitivity:
        parts.append(_img(bars_figure(sensitivity, "sensitivity per layer", "output error when quantized alone"), "sensitivity"))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: Report | Mapping[str, Any], save_dir: Path) -> Path:
    """Write report.html from the record a compression built, or from report.json's content as read back."""
    data = report.to_dict() if isinstance(report, Report) else dict(report)
    path = Path(save_dir) / "report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path
