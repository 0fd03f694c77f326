"""Small helpers the zoo's model modules share to turn arrays into feeds and predictions into accuracy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from benchmarks.zoo.spec import EvalSet, Feed


def batched(name: str, array: np.ndarray, size: int) -> list[Feed]:
    """Feeds of `size` items of `array` (the last one may be smaller) for the input `name`."""
    return [{name: array[i : i + size]} for i in range(0, len(array), size)]


def accuracy(predicted: Sequence[object], labels: Sequence[object]) -> float:
    """Fraction of predictions equal to their label (one prediction per label)."""
    return float(np.mean([got == want for got, want in zip(predicted, labels, strict=True)]))


def labelled_data(
    make: Callable[[int, int], tuple[np.ndarray, Sequence[object]]], name: str, batch: int
) -> tuple[Callable[[int], list[Feed]], Callable[[int], EvalSet]]:
    """A model's `calibration` and `evaluation` from `make(n, seed) -> (inputs, labels)`: calibration is n feeds
    of one item (seed 0), evaluation n items in feeds of `batch` with their labels (seed 1)."""

    def calibration(n: int) -> list[Feed]:
        return batched(name, make(n, 0)[0], 1)

    def evaluation(n: int) -> EvalSet:
        inputs, labels = make(n, 1)
        return EvalSet(batched(name, inputs, batch), list(labels))

    return calibration, evaluation
