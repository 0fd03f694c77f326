"""Batched evaluation of a predictor, and the top-1 metric the classification examples share."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from autocompress.errors import DataError

from .models import Predictor

EvalCallback = Callable[[Predictor], float]


def predict_batches(
    predictor: Predictor, inputs: np.ndarray, batch_size: int, input_name: str = "x"
) -> Iterator[tuple[slice, np.ndarray]]:
    """Run ``predictor`` over ``inputs`` in batches; yield (rows of ``inputs``, first output) pairs."""
    if batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size}")
    for start in range(0, len(inputs), batch_size):
        rows = slice(start, min(start + batch_size, len(inputs)))
        yield rows, np.asarray(predictor({input_name: inputs[rows]})[0])


def predicted_classes(predictor: Predictor, inputs: np.ndarray, batch_size: int, input_name: str = "x") -> np.ndarray:
    """Arg-max class of every sample; works on logits and on probabilities alike."""
    return np.concatenate([out.argmax(axis=1) for _, out in predict_batches(predictor, inputs, batch_size, input_name)])


def top1_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    if predicted.shape != labels.shape:
        raise DataError(f"predicted classes have shape {predicted.shape}, labels {labels.shape}; they must match")
    return float(np.mean(predicted == labels))


def make_top1_eval(inputs: np.ndarray, labels: np.ndarray, batch_size: int = 32, input_name: str = "x") -> EvalCallback:
    """``eval_callback(predictor) -> fraction of samples whose arg-max equals the label``."""
    if len(inputs) != len(labels):
        raise DataError(f"{len(inputs)} inputs but {len(labels)} labels; every input needs one label")

    def eval_callback(predictor: Predictor) -> float:
        return top1_accuracy(predicted_classes(predictor, inputs, batch_size, input_name), labels)

    return eval_callback


def make_agreement_eval(
    reference: Predictor, inputs: np.ndarray, batch_size: int = 32, input_name: str = "x"
) -> EvalCallback:
    """Top-1 agreement with ``reference``'s classes, computed once here: the metric when no labels exist offline."""
    return make_top1_eval(inputs, predicted_classes(reference, inputs, batch_size, input_name), batch_size, input_name)
