"""The PTQ search: its deadline (past it no trial starts beyond the one a search needs to have a best), and a small
space searched whole."""

from __future__ import annotations

import logging
import math

from autocompress.config.strategies import HyperParameterOptimization
from autocompress.search.hpo import search_ptq

SPACE = HyperParameterOptimization(max_quant_count=5, batch_num=[1, 50])


def _counting(calls: list[dict]):
    def evaluate(params):
        calls.append(params)
        return float(params["batch_num"]), 1.0, {}

    return evaluate


def test_past_the_deadline_the_search_runs_one_trial_and_says_it_stopped(caplog):
    calls: list[dict] = []
    with caplog.at_level(logging.WARNING, logger="autocompress.search.hpo"):
        trials = search_ptq(SPACE, _counting(calls), deadline=0.0)
    assert len(trials) == len(calls) == 1
    assert "PTQ search stopped at the time budget after 1 of 5 trials" in caplog.text


def test_past_the_deadline_a_resumed_search_keeps_its_trials_and_runs_none(tmp_path):
    journal = tmp_path / "hpo.log"
    first = search_ptq(HyperParameterOptimization(max_quant_count=2, batch_num=[1, 50]), _counting([]), journal)
    calls: list[dict] = []
    resumed = search_ptq(SPACE, _counting(calls), journal, deadline=0.0)
    assert calls == [] and [t.params for t in resumed] == [t.params for t in first]


def test_a_generous_deadline_runs_every_trial_as_without_one(caplog):
    unbounded = search_ptq(SPACE, _counting([]))
    with caplog.at_level(logging.WARNING, logger="autocompress.search.hpo"):
        bounded = search_ptq(SPACE, _counting([]), deadline=math.inf)
    assert len(bounded) == 5 and [t.params for t in bounded] == [t.params for t in unbounded]
    assert "stopped at the time budget" not in caplog.text


def test_a_space_no_larger_than_the_trial_count_is_searched_whole_each_setting_once():
    space = HyperParameterOptimization(
        ptq_algo=["KL", "abs_max", "mse"], bias_correct=[False], batch_num=[8], hist_percent=[0.999], max_quant_count=5
    )
    calls: list[dict] = []
    trials = search_ptq(space, _counting(calls))
    assert sorted(p["algo"] for p in calls) == ["KL", "abs_max", "mse"] and len(trials) == 3


def test_a_larger_space_is_sampled():
    from autocompress.search.hpo import grid

    assert grid(SPACE) is None  # batch_num is a range
    assert grid(HyperParameterOptimization(batch_num=[8], hist_percent=[0.999], max_quant_count=3)) is None  # 8 > 3
