"""compare_latency: interleaved rounds until the ratio's interval settles the question, or a cap says undecided."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from autocompress.runtime.latency import (
    LOOKS,
    all_cores,
    compare_latency,
    interleaved_latency,
    paired_ratio,
    resolve_threads,
)

CHANNELS, SIDE = 32, 48


def conv_stack(layers: int) -> onnx.ModelProto:
    """`layers` 3x3 convolutions of CHANNELS channels in a row, so the work grows with `layers`."""
    rng = np.random.default_rng(0)
    nodes, initializers, name = [], [], "x"
    for i in range(layers):
        weight = numpy_helper.from_array((rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * 0.05).astype(np.float32))
        weight.name = f"w{i}"
        initializers.append(weight)
        nodes.append(helper.make_node("Conv", [name, weight.name], [f"y{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        name = f"y{i}"
    shape = [1, CHANNELS, SIDE, SIDE]
    graph = helper.make_graph(
        nodes,
        "stack",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feed() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((1, CHANNELS, SIDE, SIDE)).astype(np.float32)}


def test_a_model_doing_four_times_the_work_is_decided_slower_with_ordered_figures():
    result = compare_latency([conv_stack(1), conv_stack(4)], _feed(), "cpu", 1, threshold=1.0, max_seconds=20.0)
    (ratio,) = result.ratios
    assert ratio.decided and ratio.verdict == "below" and result.decided
    low, high = ratio.interval
    assert low <= ratio.ratio <= high < 1.0
    assert result.models[1].median_ms > result.models[0].median_ms
    for model in result.models:
        assert model.p10_ms <= model.median_ms <= model.p90_ms
        assert model.rounds == result.models[0].rounds >= LOOKS[0]


def test_identical_models_are_not_decided_apart_against_a_five_percent_threshold():
    model = conv_stack(1)
    result = compare_latency([model, model], _feed(), "cpu", 1, threshold=1.05, max_seconds=3.0)
    (ratio,) = result.ratios
    # No false decision either way: neither copy is found 5% faster than the other (two sessions of one graph may
    # differ by a few percent, so an interval wholly under 1.05 that misses 1.0 is a right answer).
    assert ratio.verdict != "above"
    assert ratio.interval is None or ratio.interval[1] >= 1 / 1.05


def test_the_interval_needs_enough_rounds_and_follows_the_paired_ratios():
    few = paired_ratio([2.0, 2.1, 1.9, 2.0], [1.0, 1.0, 1.0, 1.0], threshold=1.05)
    assert few.interval is None and few.verdict == "undecided" and not few.decided
    base = [2.0, 2.2, 1.8, 2.1, 9.0, 2.0, 1.9]  # one round hit by a load spike on the baseline only
    settled = paired_ratio(base, [1.0] * len(base), threshold=1.05)
    assert settled.verdict == "above" and settled.ratio == pytest.approx(2.0)
    assert 1.05 < settled.interval[0] <= settled.ratio <= settled.interval[1] <= 9.0
    mixed = paired_ratio([1.0, 1.1, 0.9, 1.0, 1.05, 0.95], [1.0] * 6, threshold=1.05)
    assert mixed.verdict == "undecided" and mixed.interval[0] <= 1.0 <= mixed.interval[1]
    assert paired_ratio(base, [1.0] * len(base), threshold=None).verdict == "undecided"


def test_interleaved_latency_gives_one_median_per_model():
    times = interleaved_latency([conv_stack(1), conv_stack(2)], _feed(), "cpu", 1)
    assert len(times) == 2 and all(ms > 0 for ms in times)


def test_a_threshold_needs_two_models():
    with pytest.raises(ValueError, match="at least 2 models"):
        compare_latency([conv_stack(1)], _feed(), "cpu", 1, threshold=1.05)


def test_thread_settings_resolve_all_to_every_core_and_refuse_other_words():
    assert resolve_threads("all") == all_cores() and resolve_threads(3) == 3
    for bad in ("two", 0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer or 'all'"):
            resolve_threads(bad)


def test_a_time_cap_shorter_than_the_first_look_still_gives_an_interval():
    """A model too slow for the cap to hold the first look's rounds is still measured up to that look: without an
    interval nothing could ever be decided about it."""
    result = compare_latency([conv_stack(1), conv_stack(4)], _feed(), "cpu", 1, threshold=1.0, max_seconds=0.0)
    (ratio,) = result.ratios
    assert result.models[0].rounds == LOOKS[0] and ratio.interval is not None and ratio.verdict == "below"
