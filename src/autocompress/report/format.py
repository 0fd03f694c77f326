"""Numbers as a reader wants them (4 significant digits, ms with 2 decimals, sizes in MB or KB, changes with
their percent) and the before/after summary both report.html and `autocompress report` show."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: Shown where a figure is unknown (null in report.json).
MISSING = "–"


def significant(value: float | None, digits: int = 4) -> str:
    """`value` to `digits` significant digits (a metric: 0.7097, 12.35, 1.235e+05)."""
    return MISSING if value is None else f"{value:.{digits}g}"


def milliseconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f} ms"


def size(megabytes: float | None) -> str:
    """A file size in MB, or in KB below one MB."""
    if megabytes is None:
        return MISSING
    return f"{megabytes:.2f} MB" if abs(megabytes) >= 1 else f"{megabytes * 1000:.1f} KB"


def count(value: int | None) -> str:
    """A parameter or MAC count with a K/M/G suffix (4 significant digits)."""
    if value is None:
        return MISSING
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.4g} {suffix}"
    return str(value)


def change(before: float | None, after: float | None, shown: Callable[[float], str]) -> str:
    """after - before with its sign, and the percent of `before` (e.g. "-0.0085 (-1.20 %)")."""
    if before is None or after is None:
        return MISSING
    difference = after - before
    text = ("+" if difference >= 0 else "-") + shown(abs(difference))
    return text if before == 0 else f"{text} ({100 * difference / abs(before):+.2f} %)"


def ratio(before: float | None, after: float | None, word: str, opposite: str) -> str:
    """How many times `word` the compressed model is (before / after), e.g. "2.00x faster", or how many times
    `opposite` when it got worse ("1.47x slower")."""
    if not before or not after:
        return MISSING
    return f"{before / after:.2f}x {word}" if before >= after else f"{after / before:.2f}x {opposite}"


def _threads_label(threads: str, all_cores: str) -> str:
    return "1 thread" if threads == "1" else f"{threads} threads{' (all cores)' if threads == all_cores else ''}"


def _latency_rows(base: Mapping[str, Any], comp: Mapping[str, Any], threads: int) -> list[list[str]]:
    """Latency at each thread count both models were measured at (1 and all cores), and at
    Global.latency_threads when that is another count."""
    by_base, by_comp = base.get("latency_ms_by_threads") or {}, comp.get("latency_ms_by_threads") or {}
    counts = sorted((t for t in by_base if t in by_comp), key=int)
    rows = [_latency_row(f"latency, {_threads_label(t, counts[-1])}", by_base[t], by_comp[t]) for t in counts]
    if str(threads) not in counts:
        label = f"latency, {_threads_label(str(threads), '')}"
        rows.insert(0, _latency_row(label, base.get("latency_ms"), comp.get("latency_ms")))
    return rows


def _latency_row(label: str, before: float | None, after: float | None) -> list[str]:
    speed = ratio(before, after, "faster", "slower")
    return [label, milliseconds(before), milliseconds(after), f"{change(before, after, '{:.2f} ms'.format)}, {speed}"]


def summary_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """The before/after table: metric(s), latencies, size, params, MACs, each with its change."""
    base, comp = report["baseline"], report["compressed"]
    metric = significant
    rows = [
        [
            str(base.get("metric_name") or "metric"),
            metric(base.get("metric")),
            metric(comp.get("metric")),
            change(base.get("metric"), comp.get("metric"), metric),
        ]
    ]
    extra_base, extra_comp = base.get("extra_metrics") or {}, comp.get("extra_metrics") or {}
    for name, before in extra_base.items():
        after = extra_comp.get(name)
        rows.append([name, metric(before), metric(after), change(before, after, metric)])
    threads = (report.get("hardware") or {}).get("latency_threads", 1)
    rows += _latency_rows(base, comp, threads)
    before, after = base.get("size_mb"), comp.get("size_mb")
    rows.append(
        [
            "size",
            size(before),
            size(after),
            f"{change(before, after, size)}, {ratio(before, after, 'smaller', 'larger')}",
        ]
    )
    for key in ("params", "macs"):
        if key in base or key in comp:
            rows.append(
                [
                    key if key == "params" else "MACs",
                    count(base.get(key)),
                    count(comp.get(key)),
                    change(base.get(key), comp.get(key), lambda v: count(round(v))),
                ]
            )
    return rows


SUMMARY_HEADER = ["", "baseline", "compressed", "change"]


def text_table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table with aligned columns, for a terminal."""
    table = [header, *rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
