"""A PTQ search killed while it held its journal's lock resumes at once, keeping its finished trials."""

from __future__ import annotations

import os

import optuna.storages.journal._file as journal_file

from autocompress.config.strategies import HyperParameterOptimization
from autocompress.search.hpo import search_ptq


def _evaluate(params):
    return float(params["batch_num"]), 1.0, {}


def test_a_lock_left_by_a_killed_search_does_not_stall_the_next_one(tmp_path, monkeypatch):
    journal = tmp_path / "hpo.log"
    first = search_ptq(HyperParameterOptimization(max_quant_count=2, batch_num=[1, 50]), _evaluate, journal)
    os.symlink(journal, f"{journal}.lock")  # what Optuna's lock is while held; a kill leaves it there

    def waiting(seconds):
        raise AssertionError("the search waits for a lock that nobody holds")

    monkeypatch.setattr(journal_file.time, "sleep", waiting)
    resumed = search_ptq(HyperParameterOptimization(max_quant_count=4, batch_num=[1, 50]), _evaluate, journal)
    assert len(resumed) == 4
    assert [(t.params, t.score) for t in resumed[:2]] == [(t.params, t.score) for t in first]
