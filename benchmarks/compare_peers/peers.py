"""The tools compared, and how one is run: its worker script in its own venv, in a fresh process.

The driver reads the child's peak RSS from os.wait4 (that process and the children it waited for, nothing
else), the tool's own wall time from the worker's result file, and on failure the last line of its stderr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.compare_peers.venvs import VenvError, ensure_venv
from benchmarks.compare_peers.workers.peer_io import RESULT, read_result

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


@dataclass(frozen=True)
class Peer:
    """One row per model: `venv` None runs in the main venv (with src/ and the repository importable)."""

    name: str
    label: str
    script: str
    args: tuple[str, ...] = ()
    venv: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    needs_paddle_model: bool = False


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("autocompress", "autocompress (auto, config=None)", "autocompress_auto.py"),
        Peer("ort", "ONNX Runtime quantize_static", "ort_static.py"),
        Peer("nncf", "NNCF quantize", "nncf_ptq.py", ("quantize",), venv="nncf"),
        Peer("nncf_ac", "NNCF quantize_with_accuracy_control", "nncf_ptq.py", ("accuracy_control",), venv="nncf"),
        Peer("inc", "Intel Neural Compressor 2.x fit", "inc_ptq.py", venv="inc"),
        Peer(
            "act_ptq",
            "PaddleSlim ACT (QuantPost)",
            "paddleslim_act.py",
            ("quant_post",),
            venv="paddleslim",
            env=(("FLAGS_enable_pir_api", "0"),),
            needs_paddle_model=True,
        ),
        Peer(
            "act_auto",
            "PaddleSlim ACT (auto, config=None)",
            "paddleslim_act.py",
            ("auto",),
            venv="paddleslim",
            env=(("FLAGS_enable_pir_api", "0"),),
            needs_paddle_model=True,
        ),
    )
}


@dataclass
class Outcome:
    """What one tool produced for one model; `error` set means no model (and the reason why)."""

    peer: Peer
    model: Path | None = None
    seconds: float | None = None  # the tool's own work, measured by the worker
    process_seconds: float | None = None  # the whole child, imports and data loading included
    peak_rss_mb: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    error: str | None = None


def python_for(peer: Peer) -> str:
    return sys.executable if peer.venv is None else str(ensure_venv(peer.venv).python)


def child_env(peer: Peer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if peer.venv is None:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    env.update(dict(peer.env))
    return env


def run_peer(peer: Peer, case_dir: Path, out_dir: Path, timeout: float, has_paddle_model: bool) -> Outcome:
    if peer.needs_paddle_model and not has_paddle_model:
        return Outcome(peer, error="no Paddle inference model of this model to compress")
    try:
        python = python_for(peer)
    except VenvError as exc:
        return Outcome(peer, error=str(exc))
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [python, str(WORKERS / peer.script), str(case_dir), str(out_dir), *peer.args]
    log_path = out_dir / "worker.log"
    start = time.perf_counter()
    status, maxrss_kb = run_measured(argv, child_env(peer), out_dir, log_path, timeout)
    outcome = Outcome(peer, process_seconds=time.perf_counter() - start, peak_rss_mb=maxrss_kb / 1024.0)
    if (out_dir / RESULT).is_file():  # a worker may record what the tool did before a later step fails
        result = read_result(out_dir)
        outcome.model = Path(result["model"]) if result["model"] else None
        outcome.seconds, outcome.versions, outcome.notes = result["seconds"], result["versions"], result["notes"]
    if status is None:
        outcome.error = f"timed out after {timeout:.0f} s"
    elif status != 0 or outcome.model is None:
        outcome.error = f"exit {status}: {last_error_line(log_path)}"
    if outcome.error:
        outcome.model = None
    return outcome


# A fork of this (large) process would start with its peak RSS: Linux carries the pre-exec peak into the
# child's ru_maxrss. So a small launcher starts the worker and reports RUSAGE_CHILDREN: only the worker's own.
LAUNCHER = """
import json, os, resource, signal, subprocess, sys
log, timeout, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
with open(log, "w") as out:
    child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = child.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        status = None
print(json.dumps({"status": status, "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_measured(
    argv: list[str], env: dict[str, str], cwd: Path, log_path: Path, timeout: float
) -> tuple[int | None, int]:
    """(exit code, None on timeout; peak RSS in KiB) of `argv` run with its output in `log_path`."""
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(log_path), str(timeout), *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["status"], report["maxrss_kb"]


def last_error_line(log_path: Path) -> str:
    """The line a reader needs from a failed worker, shortened: the last "[ERROR]" line its native code logged
    (Paddle's abort summary says only "Process abort signal"), else its last exception, else its last line."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    native = [line for line in lines if line.startswith("[ERROR]")]
    errors = native or [line for line in lines if EXCEPTION_LINE.match(line)]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= 300 else line[:297] + "..."
