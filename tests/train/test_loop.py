import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from autocompress.config.train import TrainConfig
from autocompress.distill.distiller import Distiller
from autocompress.distill.nodes import DistillTerm
from autocompress.errors import ConfigError, DataError
from autocompress.train import loop as loop_module
from autocompress.train.checkpoint import CHECKPOINT_NAME
from autocompress.train.loop import (
    DEFAULT_MAX_STEPS,
    DEFAULT_MIN_STEPS,
    check_origin_metric,
    total_steps,
    train_loop,
)

from .resume_worker import train_tiny
from .tiny import FeedsMLP, LabelledBatches, make_pair

HERE = Path(__file__).parent


def _config(**kw):
    base = dict(train_iter=12, eval_iter=3, logging_iter=2, learning_rate=0.05, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_early_stop_when_target_metric_is_reached(tmp_path):
    student, distiller = make_pair()
    metrics = iter([0.1, 0.5, 0.9, 0.95])
    steps = []
    result = train_loop(
        student,
        distiller,
        LabelledBatches(),
        _config(target_metric=0.8),
        lambda: next(metrics),
        True,
        tmp_path,
        on_step=steps.append,
    )
    assert result.stopped_early and not result.diverged
    assert result.steps == 9 and steps == list(range(1, 10))
    assert result.best_metric == 0.9 and result.best_step == 9


def test_best_state_is_kept_for_lower_is_better_metric(tmp_path):
    student, distiller = make_pair()
    snapshots = {}
    values = iter([3.0, 1.0, 2.0, 5.0])

    def evaluate():
        snapshots[len(snapshots)] = _state(student)
        return next(values)

    result = train_loop(student, distiller, LabelledBatches(), _config(), evaluate, False, tmp_path)
    assert result.steps == 12 and result.best_metric == 1.0 and result.best_step == 6
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k], rtol=0, atol=0)
    assert [h["metric"] for h in result.history if h["metric"] is not None] == [3.0, 1.0, 2.0, 5.0]


def test_history_logs_loss_and_lr_every_logging_iter(tmp_path, caplog):
    student, distiller = make_pair()
    config = _config(learning_rate={"type": "StepDecay", "learning_rate": 0.1, "step_size": 4, "gamma": 0.5})
    with caplog.at_level(logging.INFO, logger="autocompress.train.loop"):
        result = train_loop(student, distiller, LabelledBatches(), config, None, True, tmp_path)
    logged = [h for h in result.history if h["loss"] is not None]
    assert [h["step"] for h in logged] == [2, 4, 6, 8, 10, 12]
    assert [h["lr"] for h in logged] == pytest.approx([0.1, 0.05, 0.05, 0.025, 0.025, 0.0125])
    assert all(math.isfinite(h["loss"]) and h["losses"] for h in logged)
    assert "step 12/12" in caplog.text and "lr" in caplog.text
    assert logged[-1]["loss"] < logged[0]["loss"]


class _NaNAfter:
    """Wraps a loss function and returns NaN from call `bad` on."""

    def __init__(self, inner, bad):
        self.inner, self.bad, self.calls = inner, bad, 0

    def __call__(self, feeds, label):
        self.calls += 1
        total, parts = self.inner(feeds, label)
        return (total * float("nan") if self.calls >= self.bad else total), parts


def test_nan_loss_stops_and_restores_best_state(tmp_path, caplog):
    student, distiller = make_pair()
    snapshots = []

    def evaluate():
        snapshots.append(_state(student))
        return [0.5, 0.9, 0.7][len(snapshots) - 1]

    with caplog.at_level(logging.ERROR):
        result = train_loop(student, _NaNAfter(distiller, 10), LabelledBatches(), _config(), evaluate, True, tmp_path)
    assert result.diverged and result.steps == 9 and result.best_step == 6
    assert "NaN" in caplog.text
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k], rtol=0, atol=0)
    assert all(torch.isfinite(v).all() for v in student.state_dict().values())


def test_origin_metric_mismatch_is_a_config_error():
    check_origin_metric(0.755, 0.76, 0.02)
    check_origin_metric(0.1, None, 0.02)
    with pytest.raises(
        ConfigError, match="your eval function gives 0.5 for the uncompressed model but origin_metric says 0.76"
    ):
        check_origin_metric(0.5, 0.76, 0.02)


def test_default_length_follows_dataset_size():
    config = TrainConfig()
    assert total_steps(config, 10) == DEFAULT_MIN_STEPS
    assert total_steps(config, 500) == 1500
    assert total_steps(config, 100_000) == DEFAULT_MAX_STEPS
    assert total_steps(TrainConfig(epochs=2), 7) == 14
    assert total_steps(TrainConfig(train_iter=5), 7) == 5


def test_iterators_and_distributed_settings_are_rejected(tmp_path):
    student, distiller = make_pair()
    with pytest.raises(DataError, match="re-iterable"):
        train_loop(student, distiller, iter(list(LabelledBatches())), _config(), None, True, tmp_path)
    with pytest.raises(ConfigError, match="sharding_config"):
        train_loop(student, distiller, LabelledBatches(), _config(sharding_config={"stage": 3}), None, True, tmp_path)


def test_checkpoint_loads_with_weights_only_and_finished_run_is_not_repeated(tmp_path):
    student, distiller = make_pair()
    first = train_loop(student, distiller, LabelledBatches(), _config(), None, True, tmp_path)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["progress"]["step"] == 12 and state["progress"]["finished"]
    calls = []
    again = train_loop(student, distiller, LabelledBatches(), _config(), None, True, tmp_path, on_step=calls.append)
    assert calls == [] and again.steps == first.steps and again.history == first.history


def test_recompute_gives_the_same_weights_and_restores_forward(tmp_path):
    results = []
    for recompute in (None, {"checkpoints": ["hidden"]}):
        student, distiller = make_pair(dropout=0.3)
        train_loop(
            student,
            distiller,
            LabelledBatches(),
            _config(recompute_config=recompute),
            None,
            True,
            tmp_path / str(bool(recompute)),
        )
        assert "forward" not in vars(student)
        results.append(_state(student))
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=0, atol=0)


def test_amp_on_cpu_trains_in_bfloat16(tmp_path):
    student, distiller = make_pair()
    dtypes = []

    def loss_fn(feeds, label):
        out = distiller(feeds, label)
        dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return out

    before = _state(student)
    result = train_loop(
        student, loss_fn, LabelledBatches(), _config(amp_config={"dtype": "float16"}), None, True, tmp_path
    )
    assert set(dtypes) == {torch.bfloat16} and not result.diverged
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())


def _run_worker(work_dir: Path, out: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, KILL_AT_STEP=str(kill_at), PYTHONPATH=str(HERE.parents[1] / "src"))
    return subprocess.run(
        [sys.executable, str(HERE / "resume_worker.py"), str(work_dir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_killed_mid_way_resumes_to_the_same_final_weights(tmp_path):
    killed = _run_worker(tmp_path / "resumed", tmp_path / "resumed.pt", kill_at=10)
    assert killed.returncode == 3 and not (tmp_path / "resumed.pt").exists(), killed.stderr
    assert torch.load(tmp_path / "resumed" / CHECKPOINT_NAME, weights_only=True)["progress"]["step"] == 8
    resumed = _run_worker(tmp_path / "resumed", tmp_path / "resumed.pt")
    assert resumed.returncode == 0, resumed.stderr
    straight = train_tiny(tmp_path / "straight")
    again = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert straight["steps"] == again["steps"] == 18
    for k in straight["state"]:
        torch.testing.assert_close(straight["state"][k], again["state"][k], rtol=0, atol=1e-6)
    assert straight["history"] == again["history"]


def _wider_pair(dropout: float = 0.0):
    """The tiny pair with a student of other shapes (a hidden layer of 6, not 8)."""
    student, teacher = FeedsMLP(1, dropout), FeedsMLP(2)
    student.fc1, student.bn, student.fc2 = nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)
    return student, Distiller(student, [teacher], [DistillTerm("l2", ("logits",), ("logits",), 1.0)])


def test_a_checkpoint_of_a_student_with_other_shapes_is_not_resumed(tmp_path, caplog):
    killed = _run_worker(tmp_path / "work", tmp_path / "killed.pt", kill_at=10)
    assert killed.returncode == 3 and (tmp_path / "work" / CHECKPOINT_NAME).exists(), killed.stderr
    with caplog.at_level(logging.WARNING, logger="autocompress.train.loop"):
        rerun = train_tiny(tmp_path / "work", pair=_wider_pair)
    assert "not resuming from checkpoint" in caplog.text and "'fc1.weight' has shape (8, 4)" in caplog.text
    fresh = train_tiny(tmp_path / "fresh", pair=_wider_pair)
    assert rerun["steps"] == fresh["steps"] == 18
    for k in fresh["state"]:
        torch.testing.assert_close(rerun["state"][k], fresh["state"][k], rtol=0, atol=0)


def test_past_the_deadline_training_stops_after_one_step_without_evaluating(tmp_path, caplog):
    student, distiller = make_pair()
    before, evaluations = _state(student), []
    with caplog.at_level(logging.WARNING, logger="autocompress.train.loop"):
        result = train_loop(
            student,
            distiller,
            LabelledBatches(),
            _config(),
            lambda: evaluations.append(1) or 0.5,
            True,
            tmp_path,
            deadline=0.0,
        )
    assert result.steps == 1 and result.total_steps == 12 and result.stopped_at_deadline
    assert evaluations == [] and result.best_metric is None
    assert "training stopped at the time budget after 1 of 12 steps" in caplog.text
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())  # the last weights


class _StepClock:
    """Stands in for the loop's `time` module: perf_counter() reads the number of steps taken."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_at_the_deadline_training_ends_with_the_best_evaluated_state(tmp_path, monkeypatch):
    clock = _StepClock()
    monkeypatch.setattr(loop_module, "time", clock)
    student, distiller = make_pair()
    snapshots = []

    def evaluate():
        snapshots.append(_state(student))
        return 0.5

    def tick(step):
        clock.now = float(step)

    result = train_loop(
        student, distiller, LabelledBatches(), _config(), evaluate, True, tmp_path, on_step=tick, deadline=4.5
    )
    assert result.steps == 5 and result.stopped_at_deadline and result.best_step == 3
    assert len(snapshots) == 1  # evaluated at step 3 (eval_iter), not again after the deadline
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, snapshots[0][k], rtol=0, atol=0)


def test_a_generous_deadline_trains_as_without_one(tmp_path):
    results, states = [], []
    for name, deadline in (("free", None), ("bounded", math.inf)):
        student, distiller = make_pair()
        results.append(
            train_loop(student, distiller, LabelledBatches(), _config(), None, True, tmp_path / name, deadline=deadline)
        )
        states.append(_state(student))
    assert [r.steps for r in results] == [12, 12] and not results[1].stopped_at_deadline
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=0, atol=0)
