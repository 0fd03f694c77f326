import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from autocompress.errors import ConfigError
from autocompress.quant.ranges import (
    ALGORITHMS,
    HISTOGRAM_BINS,
    activation_thresholds,
    hist_threshold,
    kl_threshold,
    paddle_histogram,
    threshold_to_range,
)
from autocompress.quant.statistics import SEARCH_GRID, grid_losses, statistics_from_arrays


def _reference_kl(hist: list[float], bin_width: float, bits: int) -> float:
    """Entropy calibration written out literally from its definition, loop by loop."""
    levels = 2 ** (bits - 1) - 1
    n = len(hist)
    total = sum(hist)
    best, best_i = None, 0
    for i in range(int((n - 1) * 0.5), n):
        if hist[i - 1] == 0:
            continue
        p = list(hist[:i])
        p[i - 1] += sum(hist[i:])
        width = i // levels
        groups = [list(range(g * width, (g + 1) * width)) for g in range(levels - 1)]
        groups.append(list(range((levels - 1) * width, i)))
        q = [0.0] * i
        for members in groups:
            mass = sum(hist[j] for j in members)
            nonzero = [j for j in members if p[j] != 0]
            for j in nonzero:
                q[j] = mass / len(nonzero)
        q_total = sum(q)
        kl = sum(p[j] * (math.log(q_total * p[j]) - math.log(total * q[j])) for j in range(i) if p[j] != 0) / total
        if best is None or kl < best:
            best, best_i = kl, i
    return (best_i + 0.5) * bin_width


@pytest.mark.parametrize("bits", [4, 8, 10])
@pytest.mark.parametrize("sparse", [False, True])
def test_kl_matches_literal_reference(bits, sparse):
    rng = np.random.default_rng(1)
    hist, _ = np.histogram(np.abs(rng.laplace(size=20000)), bins=512)
    if sparse:  # empty bins: skipped candidates and groups without mass
        hist[rng.integers(0, 512, 200)] = 0
    assert kl_threshold(hist, 0.01, bits) == pytest.approx(_reference_kl(hist.tolist(), 0.01, bits))


def test_kl_clips_heavy_tails_below_abs_max():
    rng = np.random.default_rng(2)
    batches = [rng.laplace(size=50000).astype(np.float32) for _ in range(3)]
    statistics = statistics_from_arrays({"t": batches})
    abs_max = max(float(np.abs(b).max()) for b in batches)
    threshold = activation_thresholds(statistics, "KL")["t"]
    assert 0.5 * abs_max <= threshold < 0.95 * abs_max


def test_abs_max_is_exact_and_avg_is_mean_of_per_sample_maxima():
    first = np.array([[1.0, -2.0], [0.5, 0.25], [-4.0, 0.0]], dtype=np.float32)  # sample maxima 2, 0.5, 4
    second = np.array([[3.0, 1.0], [-1.0, 0.0], [0.0, 0.5]], dtype=np.float32)  # sample maxima 3, 1, 0.5
    statistics = statistics_from_arrays({"t": [first, second]})
    assert activation_thresholds(statistics, "abs_max")["t"] == 4.0
    assert activation_thresholds(statistics, "avg")["t"] == pytest.approx(
        np.mean([(2 + 0.5 + 4) / 3, (3 + 1 + 0.5) / 3])
    )


@pytest.mark.parametrize("percent", [0.9, 0.99, 0.999])
def test_hist_is_the_percentile_of_abs_values(percent):
    rng = np.random.default_rng(3)
    batches = [rng.uniform(-1.0, 1.0, size=400000).astype(np.float32) for _ in range(2)]
    threshold = activation_thresholds(statistics_from_arrays({"t": batches}), "hist", percent)["t"]
    assert threshold == pytest.approx(percent, abs=2.0 / HISTOGRAM_BINS)


def test_hist_threshold_formula():
    hist = np.array([5, 3, 2, 0], dtype=np.float64)  # cumulative 0.5, 0.8, 1.0
    assert hist_threshold(hist, 0.25, 0.8) == pytest.approx((2 - 0.5) * 0.25)
    assert hist_threshold(hist, 0.25, 0.81) == pytest.approx((3 - 0.5) * 0.25)


def _gaussian_mse(alpha: float, bits: int = 8) -> float:
    """Analytic MSE of symmetric uniform quantization of N(0,1) clipped at alpha."""
    step = alpha / (2 ** (bits - 1) - 1)
    rounding = step**2 / 12 * (2 * stats.norm.cdf(alpha) - 1)
    clipping = 2 * integrate.quad(lambda x: (x - alpha) ** 2 * stats.norm.pdf(x), alpha, np.inf)[0]
    return rounding + clipping


def test_mse_threshold_near_analytic_gaussian_optimum():
    optimum = optimize.minimize_scalar(_gaussian_mse, bounds=(1.0, 8.0), method="bounded").x
    rng = np.random.default_rng(4)
    batches = [rng.standard_normal(400000).astype(np.float32) for _ in range(2)]
    threshold = activation_thresholds(statistics_from_arrays({"t": batches}), "mse")["t"]
    assert threshold == pytest.approx(optimum, abs=0.35)


def test_emd_picks_a_grid_candidate_preserving_mean_and_std():
    rng = np.random.default_rng(5)
    batch = rng.standard_normal(50000).astype(np.float32)
    statistics = statistics_from_arrays({"t": [batch]})
    threshold = activation_thresholds(statistics, "emd")["t"]
    abs_max = float(np.abs(batch).max())
    ratio = threshold / abs_max
    assert 0.3 <= ratio <= 1.0 and round((ratio - 0.3) / 0.02, 6) == pytest.approx(round((ratio - 0.3) / 0.02))
    # the chosen candidate's loss is the smallest of the grid
    _, emd = grid_losses(batch, abs_max, 8)
    assert emd.min() == pytest.approx(emd[round((ratio - 0.3) / 0.02)])


def test_mse_keeps_the_best_pair_over_all_batches():
    rng = np.random.default_rng(6)
    clean = rng.uniform(-1, 1, 4000).astype(np.float32)
    noisy = rng.standard_normal(4000).astype(np.float32)
    noisy[0] = 40.0  # an outlier: its best candidate clips it, at a higher loss than the clean batch's best
    losses = grid_losses(clean, float(np.abs(clean).max()), 8)[0]
    candidate = len(SEARCH_GRID) - 1 - int(np.argmin(losses[::-1]))
    expected = SEARCH_GRID[candidate] * float(np.abs(clean).max())
    assert activation_thresholds(statistics_from_arrays({"t": [clean, noisy]}), "mse")["t"] == pytest.approx(expected)
    assert activation_thresholds(statistics_from_arrays({"t": [noisy]}), "mse")["t"] > 3.0


@pytest.mark.parametrize("algo", ALGORITHMS)
@pytest.mark.parametrize("value", [0.0, 3.0])
def test_constant_tensors_give_finite_positive_thresholds(algo, value):
    statistics = statistics_from_arrays({"t": [np.full((2, 8), value, np.float32)] * 2})
    threshold = activation_thresholds(statistics, algo)["t"]
    assert np.isfinite(threshold) and threshold > 0
    assert threshold <= max(value, 1e-8) * 1.0001


def test_unknown_algorithm_is_a_config_error():
    with pytest.raises(ConfigError, match="allowed"):
        activation_thresholds(statistics_from_arrays({"t": [np.ones(3, np.float32)]}), "percentile")


def test_resampled_histogram_keeps_every_count():
    counts = np.zeros(4096)
    counts[[0, 100, 2047]] = [7, 3, 5]
    hist, width = paddle_histogram(counts, 1, 1.0)
    assert hist.sum() == pytest.approx(15) and width == pytest.approx(1.0 / HISTOGRAM_BINS)


def test_threshold_to_range_uses_full_uint8_range_for_non_negative_tensors():
    assert threshold_to_range(2.0, 0.0, 5.0) == (0.0, 2.0)
    assert threshold_to_range(2.0, -1.0, 5.0) == (-1.0, 2.0)
    assert threshold_to_range(2.0, -7.0, 1.0) == (-2.0, 1.0)
    assert threshold_to_range(1e-8, 0.0, 0.0) == (0.0, 1e-8)


@pytest.mark.parametrize("magnitude", [1e30, 1e-40])
def test_grid_losses_of_huge_and_denormal_tensors_are_finite_and_scale_free(magnitude):
    rng = np.random.default_rng(3)
    unit = rng.standard_normal(4096).astype(np.float32)
    scaled = (unit.astype(np.float64) * magnitude).astype(np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is harmless
        mse, emd = grid_losses(scaled, float(np.abs(scaled).max()), 8)
    assert np.isfinite(mse).all() and np.isfinite(emd).all()
    if magnitude > 1:  # the best threshold is a property of the shape of the distribution, not of its unit
        reference = grid_losses(unit, float(np.abs(unit).max()), 8)
        assert int(np.argmin(mse)) == int(np.argmin(reference[0]))
        assert int(np.argmin(emd)) == int(np.argmin(reference[1]))


def _reference_grid_losses(flat: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Paddle's mse and emd, one candidate at a time, with float64 sums (flat's abs max is 1)."""
    qmax = 2 ** (bits - 1) - 1
    unit = flat.astype(np.float32)
    mse, emd = [], []
    for threshold in SEARCH_GRID:
        dequant = np.clip(np.rint(unit * np.float32(qmax / threshold)), -qmax - 1, qmax) * np.float32(threshold / qmax)
        mse.append(np.mean((unit.astype(np.float64) - dequant) ** 2))
        emd.append(
            abs(unit.mean(dtype=np.float64) - dequant.mean(dtype=np.float64))
            + abs(unit.std(dtype=np.float64) - dequant.astype(np.float64).std())
        )
    return np.array(mse), np.array(emd)


@pytest.mark.parametrize("size", [7, 3000, 40000])  # all candidates in one block, several blocks, one per block
def test_blocked_grid_losses_match_a_candidate_by_candidate_reference(size):
    rng = np.random.default_rng(size)
    flat = rng.standard_normal(size).astype(np.float32)
    flat /= np.abs(flat).max()
    mse, emd = grid_losses(flat, 1.0, 8)
    reference_mse, reference_emd = _reference_grid_losses(flat, 8)
    np.testing.assert_allclose(mse, reference_mse, rtol=1e-4)
    np.testing.assert_allclose(emd, reference_emd, rtol=1e-2, atol=1e-6)
    assert int(np.argmin(mse)) == int(np.argmin(reference_mse))
