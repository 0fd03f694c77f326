import logging
from dataclasses import fields

import numpy as np
import onnxruntime as ort
import pytest

from autocompress.errors import ConfigError, DataError
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


@pytest.fixture()
def sessions(monkeypatch) -> list[int]:
    """One entry per ORT session the statistics pass creates (a cache hit creates none)."""
    created: list[int] = []
    real_session = ort.InferenceSession

    def counting_session(*args, **kwargs):
        created.append(1)
        return real_session(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", counting_session)
    return created


def test_one_pass_collects_every_tensor(cnn_model, tensors):
    statistics = collect_statistics(cnn_model, make_batches(3), tensors)
    assert statistics.tensor_names == tensors
    assert statistics.abs_max.shape == (len(tensors), 3)
    assert statistics.hist.shape == (len(tensors), 1, FINE_BINS)  # one merged histogram, not one per batch
    x = statistics.index("x")
    assert statistics.abs_max[x, 1] == pytest.approx(np.abs(make_batches(3)[1]["x"]).max())


def test_prefix_equals_a_fresh_run_on_fewer_batches(cnn_model, tensors):
    batches = make_batches(6)
    full = collect_statistics(cnn_model, batches, tensors, prefixes=[3])
    fresh = collect_statistics(cnn_model, batches, tensors, batch_nums=3)
    prefix = full.prefix(3)
    assert prefix.num_batches == fresh.num_batches == 3
    for algo in ALGORITHMS:
        assert activation_thresholds(prefix, algo) == activation_thresholds(fresh, algo), algo
    # and the longer run really differs somewhere, so the check above is not vacuous
    assert any(activation_thresholds(full, a) != activation_thresholds(prefix, a) for a in ALGORITHMS)


def test_histograms_are_kept_only_at_the_requested_prefixes():
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(100).astype(np.float32) * (i + 1) for i in range(40)]
    assert statistics_from_arrays({"t": batches}).hist.shape == (1, 1, FINE_BINS)
    statistics = statistics_from_arrays({"t": batches}, prefixes=[5, 20, 99])
    assert statistics.hist_batches.tolist() == [5, 20, 40]
    assert statistics.hist.shape == (1, 3, FINE_BINS)
    for n in (5, 20):
        fresh = statistics_from_arrays({"t": batches[:n]})
        np.testing.assert_array_equal(statistics.prefix(n).merged_histogram("t")[0], fresh.merged_histogram("t")[0])


def test_a_prefix_without_a_histogram_still_has_its_scalars():
    batches = [np.full(8, v, np.float32) for v in (1.0, 4.0, 2.0)]
    prefix = statistics_from_arrays({"t": batches}).prefix(2)
    assert activation_thresholds(prefix, "abs_max")["t"] == 4.0
    with pytest.raises(DataError, match="prefixes"):
        activation_thresholds(prefix, "hist")


def test_merged_histogram_equals_a_direct_histogram():
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(5000).astype(np.float32) * scale for scale in (0.1, 3.0, 0.7)]
    statistics = statistics_from_arrays({"t": batches})
    merged, exponent = statistics.merged_histogram("t")
    magnitude = np.abs(np.concatenate(batches))
    direct = np.bincount(
        np.minimum(np.ldexp(magnitude, 12 - exponent).astype(np.int64), FINE_BINS - 1), minlength=FINE_BINS
    )
    np.testing.assert_array_equal(merged, direct)


def test_rebin_sums_adjacent_bins():
    counts = np.arange(8)
    np.testing.assert_array_equal(rebin_power_of_two(counts, 0, 1), [1, 5, 9, 13, 0, 0, 0, 0])
    np.testing.assert_array_equal(rebin_power_of_two(counts, 0, 5), [28, 0, 0, 0, 0, 0, 0, 0])


def test_cache_hit_skips_the_model_run(cnn_model, tensors, tmp_path, sessions):
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


def _cache_file(tmp_path):
    (path,) = tmp_path.glob("statistics_*.npz")
    return path


def test_a_planted_pickle_in_the_cache_is_never_unpickled(cnn_model, tensors, tmp_path, caplog):
    batches = make_batches(2)
    expected = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path))
    path = _cache_file(tmp_path)
    marker = tmp_path / "unpickled"
    arrays = {f.name: getattr(expected, f.name) for f in fields(expected) if f.name != "tensor_names"}
    # the names as an object array: loading it with pickle would call Marker.__reduce__ and create the file
    np.savez(
        path,
        tensor_names=np.array([_Marker(str(marker))] * len(tensors), dtype=object),
        format_version=np.array(statistics_module.CACHE_FORMAT_VERSION),
        **arrays,
    )
    with caplog.at_level(logging.WARNING):
        statistics = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path))
    assert not marker.exists()
    assert "recomputing" in caplog.text
    assert statistics.tensor_names == tensors
    np.testing.assert_array_equal(statistics.abs_max, expected.abs_max)
    assert ActivationStatistics.load(str(path)).tensor_names == tensors  # the file was replaced by a clean one


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape"])
def test_a_damaged_cache_file_is_recomputed(cnn_model, tensors, tmp_path, caplog, damage):
    batches = make_batches(2)
    expected = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path))
    path = _cache_file(tmp_path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file at all")
    else:
        arrays = {f.name: getattr(expected, f.name) for f in fields(expected) if f.name != "tensor_names"}
        arrays["hist"] = arrays["hist"][:, :, :10]
        np.savez(
            path,
            tensor_names=np.array(tensors),
            format_version=np.array(statistics_module.CACHE_FORMAT_VERSION),
            **arrays,
        )
    with caplog.at_level(logging.WARNING):
        statistics = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path))
    assert "recomputing" in caplog.text
    for algo in ALGORITHMS:
        assert activation_thresholds(statistics, algo) == activation_thresholds(expected, algo)


def test_a_cache_without_a_requested_prefix_is_extended(cnn_model, tensors, tmp_path, sessions):
    batches = make_batches(4)
    collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), prefixes=[2])
    extended = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), prefixes=[3])
    assert len(sessions) == 2
    assert extended.hist_batches.tolist() == [2, 3, 4]
    collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), prefixes=[2, 3])
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


@pytest.mark.parametrize("algorithms", [["avg"], ["abs_max"], ["mse"], ["emd"], ["hist"], ["KL"], ["avg", "mse"]])
def test_collecting_only_what_an_algorithm_reads_gives_the_same_ranges(cnn_model, tensors, algorithms):
    batches = make_batches(4)
    everything = collect_statistics(cnn_model, batches, tensors, prefixes=[2])
    only = collect_statistics(cnn_model, batches, tensors, prefixes=[2], algorithms=algorithms)
    for algo in algorithms + ["abs_max", "avg"]:  # the scalars are always there
        for n in (2, 4):
            assert activation_thresholds(only.prefix(n), algo) == activation_thresholds(everything.prefix(n), algo)
    np.testing.assert_array_equal(only.min, everything.min)
    np.testing.assert_array_equal(only.max, everything.max)


def test_parts_not_asked_for_are_not_collected_and_cannot_be_read(cnn_model, tensors):
    scalars = collect_statistics(cnn_model, make_batches(3), tensors, prefixes=[2], algorithms=["avg"])
    assert scalars.parts == frozenset()
    assert scalars.hist.shape == (len(tensors), 0, FINE_BINS) and scalars.mse_loss.shape == (len(tensors), 0)
    for algo in ("hist", "KL", "mse", "emd"):
        with pytest.raises(DataError, match=f"{algo!r} needs"):
            activation_thresholds(scalars, algo)
        with pytest.raises(DataError, match="not collected"):
            activation_thresholds(scalars.prefix(2), algo)
    grid = collect_statistics(cnn_model, make_batches(3), tensors, algorithms=["mse"])
    assert grid.parts == {statistics_module.GRID}
    with pytest.raises(DataError, match="histogram"):
        grid.merged_histogram(tensors[0])


def test_a_cache_without_a_requested_part_is_extended_with_the_union(cnn_model, tensors, tmp_path, sessions):
    batches = make_batches(4)
    collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), algorithms=["avg"])
    grid = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), algorithms=["mse"])
    assert len(sessions) == 2 and grid.parts == {statistics_module.GRID}
    collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), algorithms=["avg", "emd"])
    assert len(sessions) == 2  # a hit: avg needs no part, emd the grid already held
    union = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), prefixes=[2], algorithms=["KL"])
    assert len(sessions) == 3
    assert union.parts == statistics_module.ALL_PARTS and union.hist_batches.tolist() == [2, 4]
    assert ActivationStatistics.load(str(_cache_file(tmp_path))).parts == statistics_module.ALL_PARTS
    collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), prefixes=[2], algorithms=["mse", "hist"])
    assert len(sessions) == 3


def test_a_cache_file_claiming_a_part_it_lacks_is_recomputed(cnn_model, tensors, tmp_path, caplog):
    batches = make_batches(2)
    scalars = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), algorithms=["avg"])
    path = _cache_file(tmp_path)
    arrays = {f.name: getattr(scalars, f.name) for f in fields(scalars) if f.name not in ("tensor_names", "parts")}
    np.savez(
        path,
        tensor_names=np.array(tensors),
        format_version=np.array(statistics_module.CACHE_FORMAT_VERSION),
        parts=np.array(["grid"]),
        **arrays,
    )
    with caplog.at_level(logging.WARNING):
        statistics = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), algorithms=["mse"])
    assert "recomputing" in caplog.text
    assert statistics.mse_loss.shape == (len(tensors), 2)


def test_an_unknown_algorithm_is_a_config_error(cnn_model, tensors):
    with pytest.raises(ConfigError, match="percentile"):
        collect_statistics(cnn_model, make_batches(1), tensors, algorithms=["percentile"])


def test_scalars_from_per_sample_min_and_max_equal_those_of_the_magnitudes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3, 7, 7)).astype(np.float32)
    x[2] = -np.abs(x[2])  # a sample whose abs max is its negated minimum
    stats = statistics_module.batch_statistics(x, 8, frozenset())
    magnitude = np.abs(x).reshape(5, -1)
    assert stats["abs_max"] == float(magnitude.max())
    assert stats["sample_abs_max_mean"] == float(magnitude.max(axis=1).mean())
    assert (stats["min"], stats["max"]) == (float(x.min()), float(x.max()))
    assert set(stats) == set(statistics_module.BASE_FIELDS)


def test_a_past_deadline_stops_calibration_after_two_batches_and_caches_nothing(cnn_model, tensors, tmp_path, caplog):
    batches = make_batches(5)
    with caplog.at_level(logging.WARNING, logger="autocompress.quant.statistics"):
        cut = collect_statistics(cnn_model, batches, tensors, cache_dir=str(tmp_path), deadline=0.0)
    assert cut.num_batches == statistics_module.MIN_BATCHES_AT_DEADLINE == 2
    assert "calibration stopped at the time budget after 2 of 5 batches" in caplog.text
    assert not list(tmp_path.glob("statistics_*.npz"))  # a later run with time calibrates all five
    full = collect_statistics(cnn_model, batches, tensors)
    np.testing.assert_array_equal(cut.abs_max, full.abs_max[:, :2])


def test_a_generous_deadline_changes_no_statistic(cnn_model, tensors):
    batches = make_batches(4)
    unbounded = collect_statistics(cnn_model, batches, tensors, prefixes=[2])
    bounded = collect_statistics(cnn_model, batches, tensors, prefixes=[2], deadline=float("inf"))
    for field in fields(ActivationStatistics):
        value = getattr(unbounded, field.name)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(bounded, field.name), value)
