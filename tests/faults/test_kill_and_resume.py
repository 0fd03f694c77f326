"""kill -9 at random moments during training and during the PTQ search, then resume.

After every kill: save_dir is absent or complete and valid, the training checkpoint loads (weights_only) and
has not gone back, and every trial the search journal had finished is still there. A run is restarted until it
completes (a *cycle*); the completed result must equal an uninterrupted run (training) or list every trial
finished before any of the kills (search), and nothing may be left beside save_dir. Cycles repeat, each in a new
folder, until at least INJECTIONS kills have landed. The counts are printed at the end of the pytest run.

Slow (dozens of process starts): run with `pytest -m slow tests/faults`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import optuna
import pytest
from onnx import numpy_helper
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autocompress.runtime.ort import Predictor
from autocompress.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from tests.conftest import export_tiny_cnn

pytestmark = pytest.mark.slow

INJECTIONS = int(os.environ.get("AUTOCOMPRESS_FAULT_INJECTIONS", "20"))
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """One scenario's kills: where each landed, and what was checked."""

    scenario: str
    phases: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    cycles: int = 0
    starts: int = 0
    trials_checked: int = 0
    checkpoints_checked: int = 0

    def landed(self, phase: str) -> None:
        self.kills += 1
        self.phases[phase] = self.phases.get(phase, 0) + 1


class Worker:
    """Starts tests/faults/worker.py for one save_dir; kills it or lets it finish."""

    def __init__(self, scenario: str, model: Path, save_dir: Path, cache: Path):
        self.args = [sys.executable, "-m", "tests.faults.worker", scenario, str(model), str(save_dir), str(cache)]
        self.log = save_dir.parent / "worker.log"

    def start(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        with open(self.log, "wb") as log:  # a file, not a pipe: a full pipe would block the worker
            proc = subprocess.Popen(self.args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
        if proc.stdout.readline().strip() != b"ready":
            proc.wait()
            pytest.fail(f"the worker did not start:\n{self.log.read_text()[-3000:]}")
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float | None = None) -> bool:
        """True when the run ended by itself (successfully) within timeout; else it is killed with SIGKILL."""
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            return False
        proc.stdout.close()
        assert returncode == 0, self.log.read_text()[-3000:]
        return True


def _clean_run(scenario: str, model: Path, save_dir: Path, cache: Path) -> float:
    """An uninterrupted run; returns the seconds it worked after its imports."""
    save_dir.parent.mkdir(parents=True)
    worker = Worker(scenario, model, save_dir, cache)
    proc = worker.start()
    started = time.perf_counter()
    assert worker.finish(proc, timeout=600)
    return time.perf_counter() - started


def _check_save_dir(save_dir: Path) -> bool:
    """save_dir is absent, or complete and valid; True when it is there."""
    if not save_dir.exists():
        return False
    assert {"model.onnx", "config.yaml", "report.json"} <= {p.name for p in save_dir.iterdir()}
    onnx.checker.check_model(str(save_dir / "model.onnx"))
    json.loads((save_dir / "report.json").read_text())
    return True


def _checkpoint_step(work_dir: Path) -> int | None:
    paths = list(work_dir.rglob(CHECKPOINT_NAME)) if work_dir.exists() else []
    if not paths:
        return None
    return int(load_checkpoint(paths[0])["progress"]["step"])  # weights_only: a torn file would raise here


def _finished_trials(work_dir: Path) -> dict[int, tuple[str, float]]:
    journals = list(work_dir.rglob("hpo_*.log")) if work_dir.exists() else []
    if not journals:
        return {}
    study = optuna.load_study(study_name="ptq", storage=JournalStorage(JournalFileBackend(str(journals[0]))))
    return {
        t.number: (json.dumps(t.user_attrs["params"], sort_keys=True), t.value)
        for t in study.get_trials()
        if t.state == optuna.trial.TrialState.COMPLETE
    }


def _leftovers(save_dir: Path) -> list[str]:
    return sorted(
        p.name for p in save_dir.parent.iterdir() if p.name.startswith((f".{save_dir.name}.tmp-", f"{save_dir.name}."))
    )


def _reported_trials(save_dir: Path, finished: dict[int, tuple]) -> int:
    """Every trial the journal had finished is in the committed report (same settings, same score)."""
    trials = json.loads((save_dir / "report.json").read_text())["timeline"][0]["info"]["trials"]
    assert len(trials) == 12
    reported = {(json.dumps(t["params"], sort_keys=True), t["score"]) for t in trials}
    assert set(finished.values()) <= reported, "a trial finished before a kill is missing from the report"
    return len(finished)


def _cycle(run: Run, worker: Worker, save_dir: Path, rng: random.Random, window: float) -> None:
    """Kill and restart one run until it completes. A kill after the result was committed makes the restart a new
    run (the work folder is gone), so what was tracked so far is checked against the committed result then."""
    work_dir = save_dir.with_name(save_dir.name + ".work")
    last_step, finished = -1, {}
    run.cycles += 1
    for _ in range(2 * INJECTIONS):
        proc = worker.start()
        run.starts += 1
        if worker.finish(proc, timeout=rng.uniform(0.0, window)):
            if run.scenario == "hpo":
                run.trials_checked += _reported_trials(save_dir, finished)
            return
        committed = _check_save_dir(save_dir)
        writing = any(p.name.startswith(f".{save_dir.name}.tmp-") for p in save_dir.parent.iterdir())
        if run.scenario == "train":
            step = _checkpoint_step(work_dir)
            if step is not None:
                run.checkpoints_checked += 1
                assert step >= last_step, f"the checkpoint went back from step {last_step} to {step}"
            last_step = -1 if committed else step if step is not None else last_step
            progress = "before the first checkpoint" if step is None else "training"
        else:
            trials = _finished_trials(work_dir)
            if committed:
                run.trials_checked += _reported_trials(save_dir, finished)
                finished = {}
            else:
                lost = {n: t for n, t in finished.items() if trials.get(n) != t}
                assert not lost, f"finished trials lost after a kill: {lost}"
                finished = trials
            progress = "before the first finished trial" if not trials else "search"
        run.landed("after save_dir was committed" if committed else "writing save_dir" if writing else progress)
    pytest.fail(f"{2 * INJECTIONS} restarts without completing: something a kill left stalls the run")


def _kill_repeatedly(run: Run, tmp_path: Path, model: Path, window: float, check) -> None:
    """Cycles of kills and restarts, each in a new folder, until INJECTIONS kills have landed; `check` judges
    each completed result."""
    rng, cache = random.Random(0), tmp_path / "cache"
    while run.kills < INJECTIONS:
        assert run.cycles < 4 * INJECTIONS, "the runs finish before the kills land"
        save_dir = tmp_path / f"cycle{run.cycles}" / "out"
        save_dir.parent.mkdir()
        _cycle(run, Worker(run.scenario, model, save_dir, cache), save_dir, rng, window)
        check(save_dir)
        assert _leftovers(save_dir) == [], "a temp, .previous or .work folder was left beside save_dir"


@pytest.fixture
def model(tmp_path):
    (tmp_path / "model").mkdir()
    return export_tiny_cnn(tmp_path / "model" / "tiny.onnx")


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_training_killed_and_resumed_equals_an_uninterrupted_run(tmp_path, model, fault_records):
    started = time.perf_counter()
    clean = tmp_path / "clean" / "out"
    seconds = _clean_run("train", model, clean, tmp_path / "clean_cache")
    expected = _weights(clean / "model.onnx")

    def check(save_dir: Path) -> None:
        weights = _weights(save_dir / "model.onnx")
        assert weights.keys() == expected.keys()
        for name in weights:
            np.testing.assert_allclose(weights[name], expected[name], rtol=1e-6, atol=1e-7)

    run = Run("train")
    _kill_repeatedly(run, tmp_path, model, 1.1 * seconds, check)
    fault_records.append((run, time.perf_counter() - started))


def test_hpo_killed_and_resumed_keeps_every_finished_trial(tmp_path, model, fault_records):
    started = time.perf_counter()
    seconds = _clean_run("hpo", model, tmp_path / "clean" / "out", tmp_path / "clean_cache")
    x = np.zeros((1, 3, 16, 16), np.float32)
    run = Run("hpo")

    def check(save_dir: Path) -> None:
        assert np.isfinite(Predictor(onnx.load(str(save_dir / "model.onnx")))({"x": x})[0]).all()

    _kill_repeatedly(run, tmp_path, model, 1.1 * seconds, check)
    fault_records.append((run, time.perf_counter() - started))
