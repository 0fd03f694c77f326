"""Global.time_budget bounds an explicit run: past it the search, calibration and training stop and say so."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from autocompress import AutoCompression
from autocompress.strategy.base import CompressionContext
from autocompress.strategy.deadline import deadline_after, earliest, is_past, seconds_left, stopped_note

SEARCH = {
    "ptq_algo": ["KL", "avg", "abs_max"],
    "bias_correct": [True, False],
    "weight_quantize_type": ["channel_wise_abs_max"],
    "batch_num": [1, 4],
    "max_quant_count": 6,
}
#: Smallest time_budget the config accepts in effect: the deadline is past before the first stage starts.
NO_TIME = 1e-9


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(4)]


def _compress(tiny_cnn, data, tmp_path, config: dict) -> dict:
    """The timeline record of the one stage an explicit run of `config` ran (statistics cached in tmp_path only)."""
    config["Global"]["cache_dir"] = str(tmp_path / "cache")
    compressor = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "out", config=config, eval_dataloader=data)
    (stage,) = compressor.compress().report["timeline"]
    return stage["info"]


def test_deadline_helpers():
    now = time.perf_counter()
    assert deadline_after(None) is None and deadline_after(5.0, started=10.0) == 15.0
    assert deadline_after(5.0) >= now + 5.0
    assert earliest(None, 3.0, 2.0) == 2.0 and earliest(None, None) is None
    assert seconds_left(None) == math.inf and seconds_left(0.0) == 0.0 and seconds_left(now + 100) > 90
    assert is_past(0.0) and not is_past(None) and not is_past(now + 100)
    assert stopped_note(1, 6, "trials") == "stopped at the time budget after 1 of 6 trials"


def test_a_bounded_context_keeps_the_earlier_deadline():
    ctx = CompressionContext(None, None, None, None, None, None, 0.0, {})  # type: ignore[arg-type]
    assert ctx.deadline is None and ctx.time_left() == math.inf and not ctx.past_deadline()
    later = ctx.bounded(time.perf_counter() + 100)
    assert later.time_left() > 90 and ctx.deadline is None  # the original is not changed
    assert later.bounded(0.0).past_deadline() and later.bounded(None).deadline == later.deadline
    assert later.bounded(later.deadline + 50).deadline == later.deadline


def test_past_its_budget_an_explicit_search_runs_one_trial_on_two_calibration_batches(tiny_cnn, data, tmp_path):
    config = {"Global": {"time_budget": NO_TIME}, "QuantPost": {}, "HyperParameterOptimization": SEARCH}
    info = _compress(tiny_cnn, data, tmp_path, config)
    assert len(info["trials"]) == 1
    assert info["search_stopped"] == "stopped at the time budget after 1 of 6 trials"
    assert info["calibration_batches"] == 2


def test_a_generous_budget_changes_nothing_in_the_search(tiny_cnn, data, tmp_path):
    config = {"Global": {"time_budget": 1e6}, "QuantPost": {}, "HyperParameterOptimization": SEARCH}
    info = _compress(tiny_cnn, data, tmp_path, config)
    assert len(info["trials"]) == 6 and "search_stopped" not in info
    assert info["calibration_batches"] == 4


def test_past_its_budget_explicit_training_stops_after_one_step_and_says_so(tiny_cnn, data, tmp_path):
    train = {"train_iter": 8, "eval_iter": 4, "learning_rate": 0.01}
    config = {"Global": {"time_budget": NO_TIME}, "Distillation": {}, "TrainConfig": train}
    info = _compress(tiny_cnn, data, tmp_path, config)
    assert info["steps"] == 1 and info["stopped"] == "stopped at the time budget after 1 of 8 steps"
    config["Global"] = {"time_budget": 1e6}
    generous = _compress(tiny_cnn, data, tmp_path / "generous", config)
    assert generous["steps"] == 8 and "stopped" not in generous
