"""Latency comparisons the automatic decisions can trust: interleaved rounds until the answer is settled.

On a shared machine one inference's time swings by more than the gaps a decision rests on (two identical graphs
can measure 10 ms and 7.5 ms at 2 threads in one run), and the swings come in waves. So the models take turns,
round after round, the order rotated each round; each round gives each model the median of a few runs, and each
round gives a paired ratio baseline / other, which a load wave moves little because it hits both sides of the pair.
Rounds are added until the ratio's confidence interval lies wholly above or below the threshold the caller decides
against, or a time or round cap is reached (then the comparison says "undecided"). The interval is looked at only
after the rounds in LOOKS (and at the cap), each look at a confidence raised so that all looks together keep
CONFIDENCE (Bonferroni): an interval checked after every round would, by chance, once lie on one side far more
often than its confidence says.

The interval is the distribution-free one for the median of the paired ratios (order statistics, the interval that
inverts the sign test; scipy.stats.quantile_test): its coverage holds for any distribution of round ratios, an
outlier round counts as one vote whatever its size, it needs no resampling (the same rounds give the same answer)
and it is exact from 5 rounds at 90%, where a bootstrap over so few rounds covers less than it claims.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import onnx
from scipy.stats import quantile_test

from autocompress import progress

if TYPE_CHECKING:
    from autocompress.runtime.ort import HardwareTarget

#: Rounds a comparison with nothing to decide takes, runs of each model per round, and the most seconds a
#: comparison may take (at least one round is measured).
SPEED_ROUNDS, RUNS_PER_ROUND, SPEED_SECONDS = 5, 4, 10.0
#: Rounds after which the interval is looked at (the last is the round cap), growing by half each time: a clear
#: gap is settled at the first look (8 rounds: the fewest whose interval at the per-look confidence exists).
LOOKS = (8, 12, 18, 27, 40, 60)
#: Confidence of all the looks of a comparison together.
CONFIDENCE = 0.9
#: The thread-count setting that means every core this process may run on.
ALL_CORES = "all"
#: Runs of each session before timing: the first ones allocate buffers and pack weights.
WARMUP_RUNS = 2

Verdict = Literal["above", "below", "undecided"]


def all_cores() -> int:
    """The CPU cores this process may run on: its affinity where the system reports one, else the CPU count."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def thread_counts() -> list[int]:
    """The thread counts every comparison covers: 1 and all cores (one count on a single-core machine)."""
    return sorted({1, all_cores()})


def thread_setting(value: object) -> int | Literal["all"]:
    """A thread-count setting as written (a positive int, or 'all'), checked; anything else is a ValueError naming
    what is allowed."""
    if isinstance(value, str) and value.strip().lower() == ALL_CORES:
        return ALL_CORES
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(
        f"threads must be a positive integer or {ALL_CORES!r} (every core this process may use: {all_cores()} here), "
        f"not {value!r}"
    )


def resolve_threads(value: object) -> int:
    """The thread count a setting stands for: 'all' is all_cores()."""
    setting = thread_setting(value)
    return all_cores() if setting == ALL_CORES else int(setting)


@dataclass(frozen=True)
class ModelLatency:
    """One model's ms per inference over the rounds of a comparison (each round's median of its runs)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    rounds: int


@dataclass(frozen=True)
class LatencyRatio:
    """Baseline ms / this model's ms (above 1: this model is faster): the median of the paired round ratios, its
    interval (None when the rounds are too few for one at its confidence), and where that lies against the
    threshold."""

    ratio: float
    interval: tuple[float, float] | None
    verdict: Verdict

    @property
    def decided(self) -> bool:
        return self.verdict != "undecided"


@dataclass(frozen=True)
class LatencyComparison:
    """Each model's latency, and each model's ratio to model 0 (`ratios[i - 1]` is model i's); `confidence` is that
    of the whole comparison, each ratio's interval is at the confidence of its look."""

    models: tuple[ModelLatency, ...]
    ratios: tuple[LatencyRatio, ...]
    threads: int
    threshold: float | None
    confidence: float

    @property
    def decided(self) -> bool:
        """Whether every ratio's interval lies wholly on one side of the threshold."""
        return self.threshold is not None and all(r.decided for r in self.ratios)


def paired_ratio(
    base_ms: Sequence[float], other_ms: Sequence[float], threshold: float | None, confidence: float = CONFIDENCE
) -> LatencyRatio:
    """The ratio of two models' round medians, paired by round, with its interval and verdict against `threshold`
    (None: nothing to decide, always undecided)."""
    ratios = np.asarray(base_ms, dtype=float) / np.asarray(other_ms, dtype=float)
    median = float(np.median(ratios))
    found = quantile_test(ratios, q=median, p=0.5).confidence_interval(confidence)
    if np.isnan(found.low) or np.isnan(found.high):
        return LatencyRatio(median, None, "undecided")
    low, high = float(found.low), float(found.high)
    verdict: Verdict = "undecided"
    if threshold is not None and low > threshold:
        verdict = "above"
    elif threshold is not None and high < threshold:
        verdict = "below"
    return LatencyRatio(median, (low, high), verdict)


def model_latency(round_ms: Sequence[float]) -> ModelLatency:
    """Median, p10 and p90 of a model's round medians."""
    p10, median, p90 = np.percentile(np.asarray(round_ms, dtype=float), [10, 50, 90])
    return ModelLatency(float(median), float(p10), float(p90), len(round_ms))


def _timed_round(sessions: Sequence, feed: Mapping[str, np.ndarray], first: int, runs: int) -> list[float]:
    """One round: every session `runs` times in turn, starting at session `first`; the median ms of each."""
    medians = [0.0] * len(sessions)
    for step in range(len(sessions)):
        index = (first + step) % len(sessions)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            sessions[index].run(None, feed)
            times.append((time.perf_counter() - start) * 1000.0)
        medians[index] = float(np.median(times))
    return medians


def _ratios(rounds: Sequence[Sequence[float]], threshold: float | None, confidence: float) -> list[LatencyRatio]:
    """Each model's ratio to model 0 over the rounds measured so far."""
    by_model = list(zip(*rounds))
    return [paired_ratio(by_model[0], other, threshold, confidence) for other in by_model[1:]]


def _sessions(
    models: Sequence[onnx.ModelProto | str | Path],
    feed: Mapping[str, np.ndarray],
    hardware: HardwareTarget | str,
    threads: int,
) -> list:
    """Latency sessions (weights pre-packed, as deployed), each run WARMUP_RUNS times on `feed`."""
    # ort.py re-exports this module's functions, so it is imported when used rather than when this module loads.
    from autocompress.runtime.ort import create_session, resolve_hardware  # noqa: PLC0415

    target = resolve_hardware(hardware) if isinstance(hardware, str) else hardware
    sessions = [create_session(model, target, threads, prepack=True) for model in models]
    for session in sessions:
        for _ in range(WARMUP_RUNS):
            session.run(None, feed)
    return sessions


def compare_latency(
    models: Sequence[onnx.ModelProto | str | Path],
    feed: Mapping[str, np.ndarray],
    hardware: HardwareTarget | str,
    threads: int,
    *,
    threshold: float | None = None,
    max_seconds: float = SPEED_SECONDS,
    confidence: float = CONFIDENCE,
) -> LatencyComparison:
    """Each model's latency at `threads` and its ratio to model 0, from interleaved rounds added until, at one of
    the LOOKS, every ratio's interval lies wholly above or below `threshold`, or LOOKS[-1] rounds or `max_seconds`
    (but at least LOOKS[0] rounds) have passed. Without a threshold there is nothing to decide: SPEED_ROUNDS rounds, one interval at `confidence`."""
    if len(models) < 2 and threshold is not None:
        raise ValueError(f"a comparison against threshold {threshold} needs at least 2 models, got {len(models)}")
    looks = LOOKS if threshold is not None else (SPEED_ROUNDS,)
    per_look = 1.0 - (1.0 - confidence) / (len(looks) + 1) if threshold is not None else confidence
    feed = {name: np.require(value, requirements="C") for name, value in feed.items()}
    sessions = _sessions(models, feed, hardware, threads)
    rounds: list[list[float]] = []
    deadline = time.perf_counter() + max_seconds
    with progress.bar(desc=f"latency at {threads} threads", unit="round") as bar:
        while True:
            rounds.append(_timed_round(sessions, feed, len(rounds) % len(sessions), RUNS_PER_ROUND))
            bar.update()
            # the time cap counts only after the first look: fewer rounds give no interval, so a large model
            # (0.2 s an inference: 1.6 s a round) would stay undecided however clear its speedup
            at_cap = len(rounds) >= looks[-1] or (time.perf_counter() > deadline and len(rounds) >= looks[0])
            if at_cap or len(rounds) in looks:
                ratios = _ratios(rounds, threshold, per_look)
                if at_cap or all(r.decided for r in ratios):
                    break
    measured = tuple(model_latency(series) for series in zip(*rounds))
    return LatencyComparison(measured, tuple(ratios), threads, threshold, confidence)


def interleaved_latency(
    models: Sequence[onnx.ModelProto], feed: Mapping[str, np.ndarray], hardware: HardwareTarget, threads: int
) -> list[float]:
    """Median ms per inference of each model at `threads` (compare_latency with nothing to decide), the models
    taking turns round after round, so a machine that speeds up or slows down skews no model's ratio to another."""
    return [m.median_ms for m in compare_latency(models, feed, hardware, threads).models]
