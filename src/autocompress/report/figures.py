"""Matplotlib figures of a report, returned as PNG bytes so the HTML can embed them (readable offline)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


#: Candidates labelled on the accuracy-vs-latency plot; beyond it only the first ones get a label.
MAX_LABELS = 25


def candidate_label(candidate: dict[str, Any], index: int) -> str:
    """A candidate's label, or its settings in short (e.g. "algo=KL, batch_num=4"), or its number."""
    if candidate.get("label"):
        return str(candidate["label"])
    params = candidate.get("params") or {}
    text = ", ".join(f"{k}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in params.items())
    return (text if len(text) <= 32 else text[:31] + "…") or f"#{index + 1}"


def pareto_figure(report: dict[str, Any]) -> bytes | None:
    """Metric vs latency of the baseline, the result and every candidate tried, each point labelled."""
    points = [
        c for c in report.get("candidates", []) if c.get("latency_ms") is not None and c.get("metric") is not None
    ]
    base, comp = report["baseline"], report["compressed"]
    if not points and base["latency_ms"] == comp["latency_ms"]:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if points:
        ax.scatter(
            [p["latency_ms"] for p in points], [p["metric"] for p in points], s=18, alpha=0.6, label="candidates"
        )
        for i, point in enumerate(points[:MAX_LABELS]):
            ax.annotate(
                candidate_label(point, i),
                (point["latency_ms"], point["metric"]),
                fontsize=6,
                alpha=0.8,
                xytext=(3, 3),
                textcoords="offset points",
            )
    for summary, name, style in (
        (base, "baseline", {"marker": "s", "s": 60, "color": "black"}),
        (comp, "result", {"marker": "*", "s": 140, "color": "crimson"}),
    ):
        if summary["latency_ms"] is None or summary["metric"] is None:
            continue
        ax.scatter([summary["latency_ms"]], [summary["metric"]], label=name, **style)
        ax.annotate(
            f"{name}: {summary['metric']:.4g} @ {summary['latency_ms']:.2f} ms",
            (summary["latency_ms"], summary["metric"]),
            fontsize=8,
            xytext=(5, -12),
            textcoords="offset points",
        )
    ax.set_xlabel("latency (ms, batch 1)")
    ax.set_ylabel(
        f"{base['metric_name']} ({'higher' if report.get('metric_higher_is_better', True) else 'lower'} is better)"
    )
    ax.ticklabel_format(useOffset=False)  # metrics read as themselves, not as "+1.048" plus a small offset
    ax.set_title("accuracy vs latency")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def trials_figure(trials: list[dict[str, Any]]) -> bytes | None:
    """Score of each hyperparameter-search trial in order."""
    scored = [t for t in trials if t.get("score") is not None]
    if not scored:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(1, len(scored) + 1), [t["score"] for t in scored], marker="o")
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("score (metric drop or EMD, lower is better)")
    ax.set_title("hyperparameter search")
    ax.grid(alpha=0.3)
    return _png(fig)


def bars_figure(values: dict[str, float], title: str, xlabel: str) -> bytes | None:
    """Horizontal bars per layer (sparsity, sensitivity)."""
    if not values:
        return None
    names = list(values)[:60]
    fig, ax = plt.subplots(figsize=(7, max(2.0, 0.22 * len(names))))
    ax.barh(range(len(names)), [values[n] for n in names])
    ax.set_yticks(range(len(names)), [n if len(n) < 40 else "…" + n[-38:] for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def timeline_figure(timeline: list[dict[str, Any]]) -> bytes | None:
    if not timeline:
        return None
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.3 * len(timeline)))
    start = 0.0
    for i, stage in enumerate(timeline):
        ax.barh(i, stage["seconds"], left=start)
        ax.text(start, i, f" {stage['stage']} ({stage['seconds']:.1f}s)", va="center", fontsize=8)
        start += stage["seconds"]
    ax.set_yticks([])
    ax.set_xlabel("seconds")
    ax.set_title("stages")
    return _png(fig)
