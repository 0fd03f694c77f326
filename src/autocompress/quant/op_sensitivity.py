"""Per-op sensitivity: how far the model's outputs move when one op alone runs in int8.

For each quantizable op, the float model with only that op's Q/DQ inserted (its inputs, weight and output, as
the QDQ writer quantizes them with the calibrated ranges) is run on a few calibration batches and compared with
the float model: the error is the relative squared error of the float outputs, ||y_q - y||^2 / ||y||^2,
averaged over outputs and batches. This is the ranking NNCF's accuracy control builds before it returns ops to
float, with the outputs instead of the metric so that it costs one session per op and no evaluation; HAWQ's
Hessian traces rank the same way for trained models. Being relative, it reads as an estimate of the relative
metric drop that op costs, and sums over ops to first order.

Scores are cached beside the calibration statistics (an .npz of a str and a float array, read without pickle
and checked); the key covers the model, the batches, the ops and the quantization settings.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx

from autocompress.quant.statistics import CACHE_READ_ERRORS, statistics_fingerprint
from autocompress.runtime.ort import Predictor

log = logging.getLogger(__name__)

#: Calibration batches the sensitivity is measured on: the ranking settles within a couple of batches.
SENSITIVITY_BATCHES = 2


def relative_error(reference: Sequence[Sequence[np.ndarray]], outputs: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean over batches and float outputs of ||out - ref||^2 / ||ref||^2 (0 when no output is float)."""
    errors = []
    for ref_batch, out_batch in zip(reference, outputs):
        for ref, out in zip(ref_batch, out_batch):
            if np.issubdtype(ref.dtype, np.floating):
                ref64 = ref.astype(np.float64)
                energy = max(float(np.sum(ref64**2)), np.finfo(np.float64).tiny)
                errors.append(float(np.sum((out.astype(np.float64) - ref64) ** 2)) / energy)
    return float(np.mean(errors)) if errors else 0.0


def op_sensitivity(
    model: onnx.ModelProto,
    ops: Sequence[str],
    quantize_all_but: Callable[[list[str]], onnx.ModelProto],
    feeds: Sequence[Mapping[str, np.ndarray]],
    cache_dir: str | None = None,
    settings: str = "",
    deadline: float | None = None,
) -> dict[str, float]:
    """Relative output error of each op of `ops` quantized alone, most sensitive first.

    `quantize_all_but(float_ops)` returns `model` quantized with float_ops left in float; `settings` names the
    quantization settings the scores depend on (algorithm, weight type), for the cache key. Past `deadline` (a
    time.perf_counter() instant) no further op is scored: the rest get an infinite score, so that any plan keeps
    them in float, and the incomplete scores are not cached.
    """
    path = _cache_path(model, ops, feeds, cache_dir, settings)
    cached = _read(path, ops) if path else None
    if cached is not None:
        return cached
    reference_predictor = Predictor(model)
    reference = [reference_predictor(dict(feed)) for feed in feeds]
    scores = {}
    for op in ops:
        if deadline is not None and time.perf_counter() >= deadline:
            break
        predictor = Predictor(quantize_all_but([other for other in ops if other != op]))
        scores[op] = relative_error(reference, [predictor(dict(feed)) for feed in feeds])
    complete = len(scores) == len(ops)
    if not complete:
        log.warning(
            "op sensitivity stopped at the time budget after %d of %d ops; the others stay in float",
            len(scores),
            len(ops),
        )
        scores.update(dict.fromkeys([op for op in ops if op not in scores], math.inf))
    ranked = dict(sorted(scores.items(), key=lambda item: -item[1]))
    if path and complete:
        _write(path, ranked)
    return ranked


def _cache_path(
    model: onnx.ModelProto,
    ops: Sequence[str],
    feeds: Sequence[Mapping[str, np.ndarray]],
    cache_dir: str | None,
    settings: str,
) -> str | None:
    if cache_dir is None:
        return None
    key = statistics_fingerprint(model, feeds, [*ops, f"settings={settings}"], activation_bits=8)
    return os.path.join(cache_dir, f"sensitivity_{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz")


def _write(path: str, scores: Mapping[str, float]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.npz"
    np.savez_compressed(tmp, ops=np.array(list(scores), dtype=np.str_), scores=np.array(list(scores.values())))
    os.replace(tmp, path)


def _read(path: str, ops: Sequence[str]) -> dict[str, float] | None:
    """The cached scores of exactly `ops`, or None when absent or not a valid file for them (with a warning)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            names, scores = data["ops"], data["scores"]
        if names.dtype.kind != "U" or scores.dtype.kind != "f" or names.shape != scores.shape or names.ndim != 1:
            raise ValueError(f"ops {names.dtype}{list(names.shape)} and scores {scores.dtype}{list(scores.shape)}")
        if sorted(names.tolist()) != sorted(ops) or not np.all(np.isfinite(scores)):
            raise ValueError("the file is for other ops or holds non-finite scores")
    except CACHE_READ_ERRORS as error:
        log.warning("ignoring unreadable op sensitivity cache %s (%s); recomputing", path, error)
        return None
    log.info("loading op sensitivity from %s", path)
    return {str(name): float(score) for name, score in zip(names, scores)}
