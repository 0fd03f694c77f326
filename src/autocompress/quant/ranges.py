"""Activation thresholds as Paddle's PostTrainingQuantization defines them, from ActivationStatistics.

Each algorithm yields a threshold T (the clipping magnitude of |x|):
  abs_max  max over batches of the batch abs max
  avg      mean over batches of (mean over samples of the per-sample abs max)
  hist     the hist_percent quantile of the 2048-bin |x| histogram, as (index - 0.5) * bin_width
  KL       TensorRT-style entropy calibration on the same histogram (search starts at half the range)
  mse/emd  the candidate s * batch_abs_max (s = 0.3..1.0) with the smallest loss over all batches

Paddle builds its histogram on [abs_min, abs_max] in a second pass; here it is resampled from the exact
power-of-two histograms of the statistics onto [0, abs_max] (activations almost always reach 0, where
the two coincide; Paddle's threshold formula assumes bins start at 0 anyway).
"""

from __future__ import annotations

import numpy as np

from autocompress.errors import ConfigError
from autocompress.quant.statistics import FINE_BINS, SEARCH_GRID, ActivationStatistics

ALGORITHMS = ("abs_max", "avg", "hist", "KL", "mse", "emd")
HISTOGRAM_BINS = 2048
# Smallest threshold handed out: keeps scales finite and non-zero for all-zero tensors.
MIN_THRESHOLD = 1e-8


def hist_threshold(hist: np.ndarray, bin_width: float, percent: float) -> float:
    """Upper edge (minus half a bin) of the first bin where the normalised cumulative count reaches percent."""
    total = float(hist.sum())
    if total == 0:
        return 0.0
    cumulative = np.cumsum(hist / total)
    reached = np.nonzero(cumulative >= percent)[0]
    index = int(reached[0]) + 1 if reached.size else 0
    return (index - 0.5) * bin_width


def kl_threshold(hist: np.ndarray, bin_width: float, bits: int) -> float:
    """Entropy calibration: the clipping bin i (>= half the bins) minimising KL(P_i || Q_i).

    P_i folds the counts above i into bin i-1; Q_i merges hist[:i] into 2**(bits-1)-1 groups (the last
    group takes the remainder) and spreads each group's mass evenly over its non-empty bins.
    Vectorised per candidate; Paddle's reference loops over Python lists.
    """
    hist = np.asarray(hist, dtype=np.float64)
    bins = hist.shape[0]
    levels = 2 ** (bits - 1) - 1
    start = int((bins - 1) * 0.5)
    total = hist.sum()
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    best_index, best_kl = 0, None
    for i in range(start, bins):
        if hist[i - 1] == 0:
            continue
        reference = hist[:i].copy()
        reference[i - 1] += tail[i]
        width = i // levels
        group = np.minimum(np.arange(i) // width, levels - 1) if width else np.zeros(i, dtype=np.int64)
        mass = np.bincount(group, weights=hist[:i], minlength=levels)
        nonzero = np.bincount(group, weights=(reference != 0).astype(np.float64), minlength=levels)
        per_bin = np.divide(mass, nonzero, out=np.zeros_like(mass), where=nonzero > 0)
        candidate = np.where(reference != 0, per_bin[group], 0.0)
        q_total = candidate.sum()
        p = reference[reference != 0]
        q = candidate[reference != 0]
        kl = float(np.sum(p * (np.log(q_total * p) - np.log(total * q))) / total)
        if best_kl is None or kl < best_kl:
            best_kl, best_index = kl, i
    if best_index == 0:
        while start > 0 and hist[start] == 0:
            start -= 1
        best_index = start
    return (best_index + 0.5) * bin_width


def best_grid_threshold(losses: np.ndarray, batch_abs_max: np.ndarray) -> float:
    """s * abs_max of the (batch, candidate) pair with the smallest loss; ties go to the later pair (Paddle's <=)."""
    flat = losses.reshape(-1)
    last_min = flat.shape[0] - 1 - int(np.argmin(flat[::-1]))
    batch, candidate = divmod(last_min, losses.shape[1])
    abs_max = float(batch_abs_max[batch]) or 1e-8
    return float(SEARCH_GRID[candidate] * abs_max)


def paddle_histogram(fine_counts: np.ndarray, exponent: int, abs_max: float) -> tuple[np.ndarray, float]:
    """Resample a histogram on [0, 2**exponent] to HISTOGRAM_BINS bins on [0, abs_max] (linear within fine bins)."""
    if abs_max <= 0:
        return np.zeros(HISTOGRAM_BINS), 0.0
    fine_edges = np.arange(FINE_BINS + 1) * (2.0**exponent / FINE_BINS)
    cdf = np.concatenate([[0.0], np.cumsum(fine_counts, dtype=np.float64)])
    edges = np.linspace(0.0, abs_max, HISTOGRAM_BINS + 1)
    counts = np.diff(np.interp(edges, fine_edges, cdf))
    counts[-1] += cdf[-1] - counts.sum()  # values equal to abs_max land in the last bin
    return counts, abs_max / HISTOGRAM_BINS


def activation_thresholds(
    statistics: ActivationStatistics, algo: str, hist_percent: float = 0.99999
) -> dict[str, float]:
    """Threshold per tensor for one algorithm; always finite and > 0."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"ptq algo: unknown algorithm {algo!r}; allowed: {list(ALGORITHMS)}")
    if algo == "hist" and not 0.0 < hist_percent <= 1.0:
        raise ConfigError(f"hist_percent must be in (0, 1], got {hist_percent}")
    thresholds = {}
    for i, name in enumerate(statistics.tensor_names):
        abs_max = float(statistics.abs_max[i].max())
        if algo == "abs_max":
            threshold = abs_max
        elif algo == "avg":
            threshold = float(statistics.sample_abs_max_mean[i].mean())
        elif algo in ("hist", "KL"):
            hist, bin_width = paddle_histogram(*statistics.merged_histogram(name), abs_max)
            if algo == "hist":
                threshold = hist_threshold(hist, bin_width, hist_percent)
            else:
                threshold = kl_threshold(hist, bin_width, statistics.activation_bits)
        else:
            losses = statistics.mse_loss[i] if algo == "mse" else statistics.emd_loss[i]
            threshold = best_grid_threshold(losses, statistics.abs_max[i])
        thresholds[name] = safe_threshold(threshold, abs_max)
    return thresholds


def safe_threshold(threshold: float, abs_max: float) -> float:
    """Fall back to abs_max, then MIN_THRESHOLD, so a degenerate tensor never yields a 0/inf/NaN scale."""
    if np.isfinite(threshold) and threshold > 0:
        return float(threshold)
    if np.isfinite(abs_max) and abs_max > 0:
        return float(abs_max)
    return MIN_THRESHOLD


def threshold_to_range(threshold: float, observed_min: float, observed_max: float) -> tuple[float, float]:
    """(min, max) for asymmetric quantization: the observed range clipped to [-T, T], always containing 0.

    A non-negative tensor (after ReLU) gets [0, T] and so all 256 uint8 levels.
    """
    low = min(0.0, max(-threshold, observed_min))
    high = max(0.0, min(threshold, observed_max))
    if high - low <= 0:
        high = threshold
    return low, high
