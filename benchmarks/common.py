"""What every benchmark script shares: machine description, interleaved latency, peak RSS, BENCHMARKS.md sections."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]


def cpu_model_name() -> str:
    """`lscpu`'s "Model name" (platform.processor() is empty on most Linux builds)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    match = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def source_revision(paths: Sequence[str] = ("src",)) -> str:
    """The commit the numbers were measured on, flagged when `paths` hold uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--", *paths) else "")


@dataclass(frozen=True)
class MachineInfo:
    cpu: str
    cores: int
    onnxruntime: str
    date: str
    python: str

    @classmethod
    def current(cls) -> MachineInfo:
        return cls(
            cpu=cpu_model_name(),
            cores=os.cpu_count() or 1,
            onnxruntime=ort.__version__,
            date=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            python=platform.python_version(),
        )

    def markdown(self) -> str:
        return (
            f"Machine: {self.cpu}, {self.cores} cores; onnxruntime {self.onnxruntime}; Python {self.python}; "
            f"date {self.date}."
        )


def cpu_session(path: str | Path, threads: int, optimized_model_path: str | None = None) -> ort.InferenceSession:
    """A CPU session with a fixed intra-op thread count (inter-op 1), full graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_model_path:
        options.optimized_model_filepath = str(optimized_model_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved_latency(
    models: Mapping[str, str | Path], feed: Mapping[str, np.ndarray], threads: int, **rounds: float
) -> dict[str, float]:
    """Median ms of one inference per model; `rounds` sizes the measurement as `interleaved_times` takes it."""
    times = interleaved_times(models, feed, threads, **rounds)
    return {name: statistics.median(values) for name, values in times.items()}


def interleaved_times(
    models: Mapping[str, str | Path],
    feed: Mapping[str, np.ndarray],
    threads: int,
    rounds: int = 10,
    seconds: float = 8.0,
    min_runs: int = 20,
    max_runs: int = 400,
) -> dict[str, list[float]]:
    """Every measured ms of one inference per model, measured in interleaved rounds.

    On a shared machine load changes over seconds; running every model a few times per round, rounds in
    rotating order, spreads that noise evenly over the models instead of penalising whichever ran last.
    Only one session runs at a time. `seconds` is the rough total budget that sets the number of runs.
    """
    names = list(models)
    sessions = {name: cpu_session(models[name], threads) for name in names}
    feed = dict(feed)
    estimate = {}
    for name, session in sessions.items():  # warm-up, and a per-run estimate to size the rounds
        session.run(None, feed)
        start = time.perf_counter()
        session.run(None, feed)
        estimate[name] = time.perf_counter() - start
    per_model = seconds / max(sum(estimate.values()), 1e-6)
    runs = int(min(max(per_model, min_runs), max_runs))
    block = max(1, -(-runs // rounds))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            session = sessions[name]
            for _ in range(block):
                start = time.perf_counter()
                session.run(None, feed)
                times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def child_peak_rss_mb(argv: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[float, str]:
    """(peak RSS in MB, stdout) of a fresh Python process running argv; each call measures one child alone."""
    code = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "if done.returncode: sys.exit(done.returncode)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(done.stdout, end='')\n"
    )
    # A wrapper process reads RUSAGE_CHILDREN so that earlier children of this process do not mix in.
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=dict(env) if env else None
    )
    if done.returncode:
        raise RuntimeError(f"child {argv} failed:\n{done.stderr[-4000:]}")
    first, _, rest = done.stdout.partition("\n")
    return int(first) / 1024.0, rest  # ru_maxrss is in KiB on Linux


def write_section(path: str | Path, heading: str, body: str, title: str = "# Benchmarks") -> None:
    """Replace (or append) the section under `heading` in a markdown file, keeping every other section."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n"
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading.strip()), None)
    section = [heading, "", *body.strip("\n").splitlines(), ""]
    if start is None:
        new = lines + ([""] if lines and lines[-1].strip() else []) + section
    else:
        end = start + 1
        while end < len(lines) and not _is_heading_at_most(lines[end], level):
            end += 1
        new = lines[:start] + section + lines[end:]
    path.write_text("\n".join(new).rstrip("\n") + "\n", encoding="utf-8")


def _is_heading_at_most(line: str, level: int) -> bool:
    match = re.match(r"^(#+)\s", line)
    return bool(match) and len(match.group(1)) <= level


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
