"""autocompress (auto mode) side by side with other toolkits, on the same models, data and metric.

Each tool runs in a fresh process (the peers in their own venvs under .venvs/, made on first use) on data
exported once to .npz; every resulting model is then scored here by the same metric and timed in the same
ORT latency loop as the fp32 model (interleaved rounds, one session at a time, 1 and 2 threads). The table
goes to the "Side by side with other toolkits" section of BENCHMARKS.md.

    PYTHONPATH=src:. .venv/bin/python -m benchmarks.compare_peers [--models ocr_cls,efficientnet_lite0,ocr_det]
        [--peers autocompress,ort,nncf,nncf_ac,inc,act_ptq,act_auto] [--quick] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    ROOT,
    MachineInfo,
    interleaved_latency,
    load_average,
    markdown_table,
    source_revision,
    write_section,
)
from benchmarks.compare_peers.cases import build_case
from benchmarks.compare_peers.peers import PEERS, Outcome, run_peer
from benchmarks.compare_peers.workers.peer_io import evaluate, load_case, ort_predictor
from benchmarks.ptq_cases import CASE_BUILDERS, DataSizes

HEADING = "## Side by side with other toolkits"
THREADS = (1, 2)
DEFAULT_MODELS = ("ocr_cls", "efficientnet_lite0", "ocr_det")

log = logging.getLogger("compare_peers")


@dataclass
class Row:
    """One tool's model of one case, as measured here."""

    tool: str
    outcome: Outcome | None  # None: the fp32 model
    path: Path | None
    metric: float | None = None
    latency_ms: dict[int, float] = field(default_factory=dict)


@dataclass
class CaseTable:
    name: str
    metric_name: str
    rows: list[Row]

    @property
    def fp32(self) -> Row:
        return self.rows[0]


def compare_case(
    name: str, peers: Sequence[str], workdir: Path, sizes: DataSizes, timeout: float, latency_seconds: float
) -> CaseTable:
    log.info("%s: building the case and exporting its data", name)
    case, case_dir = build_case(name, workdir, sizes)
    data = load_case(case_dir)
    rows = [Row("fp32", None, case.fp32_path)]
    for peer_name in peers:
        peer = PEERS[peer_name]
        log.info("%s: %s", name, peer.label)
        has_paddle = data.paddle_model_dir is not None
        outcome = run_peer(peer, case_dir, workdir / "runs" / name / peer_name, timeout, has_paddle)
        row = Row(peer.label, outcome, outcome.model)
        log.info("%s: %s -> %s", name, peer_name, outcome.error or f"{outcome.seconds:.1f} s")
        rows.append(row)
    items = data.eval_items()
    for row in rows:
        if row.path is None:
            continue
        try:
            row.metric = evaluate(ort_predictor(row.path), data.metric, items)[0]
        except Exception as exc:  # noqa: BLE001 - a model ORT cannot run is a result to report, not a crash
            row.outcome.error, row.path = f"its model does not run in ORT: {type(exc).__name__}: {exc}"[:300], None
    measured = {str(i): row.path for i, row in enumerate(rows) if row.path is not None}
    for threads in THREADS:
        for key, ms in interleaved_latency(measured, case.latency_feed, threads, seconds=latency_seconds).items():
            rows[int(key)].latency_ms[threads] = ms
    return CaseTable(name, case.metric_name, rows)


# ---------------------------------------------------------------- report


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_rows(table: CaseTable) -> list[list[str]]:
    fp32 = table.fp32
    rows = []
    for row in table.rows:
        outcome = row.outcome
        speedups = [
            f"{fp32.latency_ms[t] / row.latency_ms[t]:.2f}x" if t in row.latency_ms and t in fp32.latency_ms else "-"
            for t in THREADS
        ]
        if outcome is None:
            notes, seconds, rss = "original", "-", None
        else:
            notes = "; ".join(filter(None, [outcome.error and f"no model: {outcome.error}", outcome.notes]))
            seconds = _num(outcome.seconds, 1)
            if outcome.process_seconds is not None:
                seconds += f" ({outcome.process_seconds:.0f})"
            rss = outcome.peak_rss_mb
        known = outcome is not None and row.metric is not None and fp32.metric is not None
        delta = f"{row.metric - fp32.metric:+.4f}" if known else ""
        rows.append(
            [
                table.name,
                row.tool,
                _num(row.metric, 4),
                delta,
                _num(row.latency_ms.get(1), 2),
                speedups[0],
                _num(row.latency_ms.get(2), 2),
                speedups[1],
                seconds,
                _num(rss, 0),
                notes,
            ]
        )
    return rows


def versions_line(tables: Sequence[CaseTable]) -> str:
    """Package versions per venv (the peers' venvs pin their own onnx and onnxruntime)."""
    found: dict[str, dict[str, str]] = {}
    for table in tables:
        for row in table.rows:
            if row.outcome is not None:
                found.setdefault(row.outcome.peer.venv or "main", {}).update(row.outcome.versions)
    return "; ".join(
        f"{venv} venv: " + ", ".join(f"{name} {version}" for name, version in sorted(packages.items()))
        for venv, packages in found.items()
        if packages
    )


def render(
    tables: Sequence[CaseTable],
    machine: MachineInfo,
    command: str,
    loads: tuple[str, str],
    sizes: DataSizes,
    wall_seconds: float,
    revision: str,
    unfinished: Sequence[str] = (),
) -> str:
    """The section's markdown; `unfinished` names the models still to come when it was written."""
    header = [
        "model",
        "tool (mode)",
        "metric",
        "Δ vs fp32",
        "ms 1T",
        "speedup 1T",
        "ms 2T",
        "speedup 2T",
        "compression s",
        "peak RSS MB",
        "notes",
    ]
    rows = [row for table in tables for row in table_rows(table)]
    metrics = "; ".join(f"{t.name}: {t.metric_name}" for t in tables)
    return "\n".join(
        [
            f"Command: `{command}` (source {revision})"
            + (
                f". Not measured when this was written: {', '.join(unfinished)} (a complete run rewrites this section)."
                if unfinished
                else ""
            ),
            "",
            machine.markdown() + f" Load average (1/5/15 min) at start {loads[0]}, at end {loads[1]}. "
            f"Total wall time {wall_seconds:.0f} s. Versions: {versions_line(tables)}.",
            "",
            "Every tool gets the same fp32 model and the same calibration batches (those of the PTQ benchmark above: "
            f"photo crops {sizes.photo_calibration} in batches of {sizes.photo_batch}, cls lines "
            f"{sizes.cls_calibration} in batches of {sizes.cls_batch}, det scenes {sizes.det_calibration} at "
            f"{sizes.det_size}x{sizes.det_size}), written once to .npz. Tools with an accuracy loop (autocompress auto, "
            "NNCF accuracy control, INC, ACT) see the evaluation set the table reports "
            f"({sizes.cls_evaluation} cls lines, {sizes.photo_evaluation} photo crops, {sizes.det_evaluation} det "
            f"scenes) through the same metric code. Metrics: {metrics}. Every output model is scored here by that "
            "metric in ONNX Runtime; ACT quantizes the Paddle original of the same model, exported to ONNX with "
            "paddle2onnx 1.x as ACT's export_onnx does. ms 1T / 2T: latency of each tool's output model (int8 unless "
            "its notes say float) at 1 and 2 intra-op threads, batch 1, median of interleaved rounds with the fp32 "
            "model in the same run, one session at a time. compression s: the tool's own call(s), timed inside its "
            "process (imports and data loading excluded); in brackets the whole process. peak RSS: the tool's whole process, framework imports "
            "included. Each tool runs in a fresh process, the peers in their own venvs "
            "(benchmarks/compare_peers/.venvs/, made by this command; none is a dependency of autocompress).",
            "",
            markdown_table(header, rows),
        ]
    )


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, of {','.join(CASE_BUILDERS)}"
    )
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {','.join(PEERS)}")
    parser.add_argument("--quick", action="store_true", help="small data, short latency loop (a smoke run)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds one tool may take on one model")
    parser.add_argument("--latency-seconds", type=float, default=6.0, help="latency budget per thread count")
    parser.add_argument("--workdir", help="keep models, data and worker logs here (default: a temp folder)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="markdown file to write the section to")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.peers = [p for p in args.peers.split(",") if p]
    unknown = sorted(set(args.models) - set(CASE_BUILDERS)) + sorted(set(args.peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown models or peers {unknown}")
    if args.quick:
        args.latency_seconds = min(args.latency_seconds, 1.0)
    return args


def shown_argv(argv: Sequence[str]) -> list[str]:
    """The arguments that reproduce the table: where the files went (--workdir) is no part of it."""
    shown, skip = [], False
    for arg in argv:
        if not skip and not arg.startswith("--workdir"):
            shown.append(arg)
        skip = arg == "--workdir"
    return shown


def run(args: argparse.Namespace) -> str:
    """Compare every model; the section is rewritten after each one, so an interrupted run keeps its tables."""
    started = time.perf_counter()
    load_start, revision, machine = load_average(), source_revision(), MachineInfo.current()
    sizes = DataSizes.quick() if args.quick else DataSizes()
    command = "PYTHONPATH=src:. .venv/bin/python -m benchmarks.compare_peers " + " ".join(shown_argv(args.argv))
    tables: list[CaseTable] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="compare_peers_")))
        for name in args.models:
            tables.append(compare_case(name, args.peers, workdir, sizes, args.timeout, args.latency_seconds))
            loads = tuple(" / ".join(f"{x:.2f}" for x in load) for load in (load_start, load_average()))
            body = render(
                tables,
                machine,
                command.strip(),
                loads,
                sizes,
                time.perf_counter() - started,
                revision,
                unfinished=args.models[len(tables) :],
            )
            write_section(args.out, HEADING, body)
    return body


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("autocompress").setLevel(logging.WARNING)
    print(run(args))
