import logging

import numpy as np
import onnxruntime as ort
import pytest

from autocompress.errors import DataError
from autocompress.quant import statistics as statistics_module
from autocompress.quant.ptq import calibration_tensors
from autocompress.quant.ranges import ALGORITHMS, activation_thresholds
from autocompress.quant.statistics import (
    FINE_BINS,
    ActivationStatistics,
    collect_statistics,
    rebin_power_of_two,
    statistics_from_arrays,
)

from .conftest import make_batches


@pytest.fixture()
def tensors(cnn_model):
    return calibration_tensors(cnn_model)


def test_one_pass_collects_every_tensor(cnn_model, tensors):
    statistics = collect_statistics(cnn_model, make_batches(3), tensors)
    assert statistics.tensor_names == tensors
    assert statistics.abs_max.shape == (len(tensors), 3)
    assert statistics.hist.shape == (len(tensors), 3, FINE_BINS)
    x = statistics.index("x")
    assert statistics.abs_max[x, 1] == pytest.approx(np.abs(make_batches(3)[1]["x"]).max())


def test_prefix_equals_a_fresh_run_on_fewer_batches(cnn_model, tensors):
    batches = make_batches(6)
    full = collect_statistics(cnn_model, batches, tensors)
    fresh = collect_statistics(cnn_model, batches, tensors, batch_nums=3)
    prefix = full.prefix(3)
    assert prefix.num_batches == fresh.num_batches == 3
    for algo in ALGORITHMS:
        assert activation_thresholds(prefix, algo) == activation_thresholds(fresh, algo), algo
    # and the longer run really differs somewhere, so the check above is not vacuous
    assert any(activation_thresholds(full, a) != activation_thresholds(prefix, a) for a in ALGORITHMS)


def test_merged_histogram_equals_a_direct_histogram():
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(5000).astype(np.float32) * scale for scale in (0.1, 3.0, 0.7)]
    statistics = statistics_from_arrays({"t": batches})
    merged, exponent = statistics.merged_histogram("t")
    magnitude = np.abs(np.concatenate(batches))
    direct = np.bincount(np.minimum(np.ldexp(magnitude, 12 - exponent).astype(np.int64), FINE_BINS - 1),
                         minlength=FINE_BINS)
    np.testing.assert_array_equal(merged, direct)


def test_rebin_sums_adjacent_bins():
    counts = np.arange(8)
    np.testing.assert_array_equal(rebin_power_of_two(counts, 0, 1), [1, 5, 9, 13, 0, 0, 0, 0])
    np.testing.assert_array_equal(rebin_power_of_two(counts, 0, 5), [28, 0, 0, 0, 0, 0, 0, 0])


def test_cache_hit_skips_the_model_run(cnn_model, tensors, tmp_path, monkeypatch):
    sessions = []
    real_session = ort.InferenceSession

    def counting_session(*args, **kwargs):
        sessions.append(1)
        return real_session(*args, **kwargs)

    monkeypatch.setattr(statistics_module.ort, "InferenceSession", counting_session)
    batches = make_batches(3)
    first = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path))
    second = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path))
    assert len(sessions) == 1
    assert isinstance(second, ActivationStatistics)
    for algo in ALGORITHMS:
        assert activation_thresholds(first, algo) == activation_thresholds(second, algo)
    # different data is a different key
    collect_statistics(cnn_model, make_batches(3, seed=1), tensors, cache_dir=str(tmp_path))
    assert len(sessions) == 2


def test_one_shot_iterator_is_buffered_for_caching(cnn_model, tensors, tmp_path):
    statistics = collect_statistics(cnn_model, iter(make_batches(4)), tensors, batch_nums=2, cache_dir=str(tmp_path))
    assert statistics.num_batches == 2


def test_fewer_batches_than_requested_warns_and_uses_them(cnn_model, tensors, caplog):
    with caplog.at_level(logging.WARNING):
        statistics = collect_statistics(cnn_model, make_batches(2), tensors, batch_nums=5)
    assert statistics.num_batches == 2
    assert "only 2 batches" in caplog.text


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_names_the_input(cnn_model, tensors, bad):
    batches = make_batches(2)
    batches[1]["x"][0, 0, 0, 0] = bad
    with pytest.raises(DataError, match="'x'"):
        collect_statistics(cnn_model, batches, tensors)


def test_missing_input_and_empty_data_are_data_errors(cnn_model, tensors):
    with pytest.raises(DataError, match="lacks model input"):
        collect_statistics(cnn_model, [{"image": np.zeros((1, 3, 24, 24), np.float32)}], tensors)
    with pytest.raises(DataError, match="empty"):
        collect_statistics(cnn_model, [], tensors)
