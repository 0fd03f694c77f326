"""Activation thresholds as Paddle's PostTrainingQuantization defines them, from ActivationStatistics.

Each algorithm yields a threshold T (the clipping magnitude of |x|):
  abs_max  max over batches of the batch abs max
  avg      mean over batches of (mean over samples of the per-sample abs max)
  hist     the hist_percent quantile of the 2048-bin |x| histogram, as (index - 0.5) * bin_width
  KL       TensorRT-style entropy calibration on the same histogram (search starts at half the range)
  mse/emd  the candidate s * batch_abs_max (s = 0.3..1.0) with the smallest loss over all batches (each
           batch keeps its best candidate; the best of those, later ties winning, is Paddle's overall best)

Paddle builds its histogram on [abs_min, abs_max] in a second pass; here it is resampled from the exact
power-of-two histograms of the statistics onto [0, abs_max] (activations almost always reach 0, where
the two coincide; Paddle's threshold formula assumes bins start at 0 anyway).
"""

from __future__ import annotations

import numpy as np

from autocompress.errors import ConfigError
from autocompress.quant.statistics import ALGORITHM_PARTS, FINE_BINS, ActivationStatistics, last_argmin

ALGORITHMS = tuple(ALGORITHM_PARTS)
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
    All candidates at once from prefix sums (a per-candidate loop cost seconds per model in HPO trials):
    with p summing to `total` and q to sum(hist[:i]),
        total * KL_i = sum p log p - sum_groups (group mass + folded tail if last) * log(mass / nonzero bins)
                       + total * log(sum(hist[:i]) / total).
    """
    hist = np.maximum(np.asarray(hist, dtype=np.float64), 0.0)
    bins = hist.shape[0]
    levels = 2 ** (bits - 1) - 1
    start = int((bins - 1) * 0.5)
    candidates = np.arange(max(start, 1), bins)
    candidates = candidates[hist[candidates - 1] > 0]
    if candidates.size == 0:
        while start > 0 and hist[start] == 0:
            start -= 1
        return (start + 0.5) * bin_width
    total = hist.sum()
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[k] = sum(hist[k:])
    mass_below = np.concatenate([[0.0], np.cumsum(hist)])  # mass_below[k] = sum(hist[:k])
    nonzero_below = np.concatenate([[0], np.cumsum(hist > 0)])
    plogp = np.zeros(bins)
    np.multiply(hist, np.log(hist, out=plogp, where=hist > 0), out=plogp, where=hist > 0)
    plogp_below = np.concatenate([[0.0], np.cumsum(plogp)])
    groups = levels if levels <= bins else 1  # with more levels than bins every candidate has one group
    kl = np.empty(candidates.size)
    for chunk in np.array_split(np.arange(candidates.size), max(1, candidates.size * groups // (1 << 18))):
        i = candidates[chunk][:, None]
        if groups == 1:
            lo, hi = np.zeros_like(i), i
        else:  # group g is [g * width, (g + 1) * width), the last one ends at i; width 0 puts all in the last
            width, g = i // levels, np.arange(groups)[None, :]
            lo, hi = g * width, np.where(g == groups - 1, i, (g + 1) * width)
        mass = mass_below[hi] - mass_below[lo]
        nonzero = nonzero_below[hi] - nonzero_below[lo]
        log_q = np.log(np.divide(mass, nonzero, out=np.ones_like(mass), where=nonzero > 0))
        i = i[:, 0]
        mass[:, -1] += tail[i]  # the folded tail sits in bin i-1, in the last group
        p_log_p = plogp_below[i - 1] + tail[i - 1] * np.log(tail[i - 1])
        kl[chunk] = (p_log_p - (mass * log_q).sum(axis=1) + total * np.log(mass_below[i] / total)) / total
    return (int(candidates[int(np.argmin(kl))]) + 0.5) * bin_width


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
    statistics.require(algo)
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
            losses, candidates = (
                (statistics.mse_loss, statistics.mse_threshold)
                if algo == "mse"
                else (statistics.emd_loss, statistics.emd_threshold)
            )
            threshold = float(candidates[i, last_argmin(losses[i])])
        thresholds[name] = safe_threshold(threshold, abs_max)
    return thresholds


def safe_threshold(threshold: float, abs_max: float) -> float:
    """Fall back to abs_max, then MIN_THRESHOLD, so a degenerate tensor (all zero, denormal, or with statistics that
    overflowed) never yields a 0/denormal/inf/NaN scale."""
    if np.isfinite(threshold) and threshold >= MIN_THRESHOLD:
        return float(threshold)
    if np.isfinite(abs_max) and abs_max >= MIN_THRESHOLD:
        return float(abs_max)
    return MIN_THRESHOLD


def threshold_to_range(threshold: float, observed_min: float, observed_max: float) -> tuple[float, float]:
    """(min, max) for asymmetric quantization: the observed range clipped to [-T, T], always containing 0.

    A non-negative tensor (after ReLU) gets [0, T] and so all 256 uint8 levels.
    """
    low = min(0.0, max(-threshold, observed_min))
    high = max(0.0, min(threshold, observed_max))
    if high - low < MIN_THRESHOLD:  # all zero or denormal: so narrow a range would give a denormal scale
        high = max(threshold, MIN_THRESHOLD)
    return low, high


def activation_ranges(
    statistics: ActivationStatistics, tensors: list[str], thresholds: dict[str, float], symmetric: bool
) -> dict[str, tuple[float, float]]:
    """(min, max) per tensor from its threshold: (-T, T) when symmetric, else threshold_to_range of what was seen."""
    ranges = {}
    for name in tensors:
        threshold = thresholds[name]
        if symmetric:
            ranges[name] = (-threshold, threshold)
        else:
            i = statistics.index(name)
            ranges[name] = threshold_to_range(threshold, float(statistics.min[i].min()), float(statistics.max[i].max()))
    return ranges
