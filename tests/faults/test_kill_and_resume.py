"""kill -9 at random moments during training and during the PTQ search, then resume: the result is valid and
equals an uninterrupted run, no checkpoint is corrupted and no finished trial is lost.

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
from pathlib import Path

import numpy as np
import onnx
import optuna
import pytest
from onnx import numpy_helper
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autocompress.runtime.ort import Predictor
from tests.conftest import export_tiny_cnn

pytestmark = pytest.mark.slow

INJECTIONS = 20
ROOT = Path(__file__).resolve().parents[2]


def _start(scenario, model, save_dir, cache):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    return subprocess.Popen([sys.executable, "-m", "tests.faults.worker", scenario, str(model), str(save_dir), str(cache)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _valid_or_absent(save_dir: Path) -> None:
    if save_dir.exists():
        assert {"model.onnx", "config.yaml", "report.json"} <= {p.name for p in save_dir.iterdir()}
        onnx.checker.check_model(str(save_dir / "model.onnx"))


def _finished_trials(work_dir: Path) -> int:
    journals = list((work_dir / "QuantPost").glob("hpo_*.log")) if (work_dir / "QuantPost").exists() else []
    if not journals:
        return 0
    study = optuna.load_study(study_name="ptq", storage=JournalStorage(JournalFileBackend(str(journals[0]))))
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials())


def _run_with_kills(scenario: str, tmp_path: Path, model: Path) -> tuple[Path, int]:
    save_dir, cache = tmp_path / "killed" / "out", tmp_path / "cache"
    save_dir.parent.mkdir()
    work_dir = save_dir.with_name("out.work")
    rng = random.Random(0)
    kills, finished_before = 0, 0
    while kills < INJECTIONS:
        proc = _start(scenario, model, save_dir, cache)
        time.sleep(rng.uniform(2.5, 7.0))  # interpreter start is ~2-3 s; kills land in setup, training and saving
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        _valid_or_absent(save_dir)
        if scenario == "hpo" and not (save_dir / "report.json").exists():
            # once the result is committed the work folder (and its journal) is removed on purpose
            finished = _finished_trials(work_dir)
            assert finished >= finished_before, "a finished trial was lost"
            finished_before = finished
    if not (save_dir / "model.onnx").exists() or kills == INJECTIONS:
        proc = _start(scenario, model, save_dir, cache)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
    return save_dir, kills


@pytest.fixture
def model(tmp_path):
    (tmp_path / "model").mkdir()
    return export_tiny_cnn(tmp_path / "model" / "tiny.onnx")


def test_training_killed_and_resumed_equals_an_uninterrupted_run(tmp_path, model):
    killed, kills = _run_with_kills("train", tmp_path, model)
    clean = tmp_path / "clean" / "out"
    proc = _start("train", model, clean, tmp_path / "cache2")
    assert proc.wait(timeout=600) == 0
    assert kills >= 10
    a, b = _weights(killed / "model.onnx"), _weights(clean / "model.onnx")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7)


def test_hpo_killed_and_resumed_keeps_every_finished_trial(tmp_path, model):
    killed, kills = _run_with_kills("hpo", tmp_path, model)
    report = json.loads((killed / "report.json").read_text())
    trials = report["timeline"][0]["info"]["trials"]
    assert len(trials) == 12 and kills >= 10
    x = np.zeros((1, 3, 16, 16), np.float32)
    assert np.isfinite(Predictor(onnx.load(str(killed / "model.onnx")))({"x": x})[0]).all()
