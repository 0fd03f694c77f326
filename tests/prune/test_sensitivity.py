import logging

import numpy as np
import pytest
import torch

from autocompress.errors import DataError
from autocompress.prune.channel import prune_channels, select_channels
from autocompress.prune.compensate import consumer_moments
from autocompress.prune.groups import find_channel_groups
from autocompress.prune.sensitivity import (
    GroupSensitivity,
    PruneOption,
    _pruned_alone,
    allocate_ratios,
    group_sensitivities,
    sensitivity_ratios,
)
from autocompress.prune.stats import count_params_and_macs
from tests.prune.prune_models import ConcatNet, export, run

SHAPE = (4, 3, 16, 16)


def concat_net_with_a_quiet_branch():
    """ConcatNet whose head reads branch b (48 channels) through weights 100x smaller than branch a's (32):
    pruning b barely moves the output, pruning a does."""
    torch.manual_seed(0)
    net = ConcatNet()
    with torch.no_grad():
        net.head.weight[:, 32:] *= 0.01
    return export(net, SHAPE)


def feeds(n=2):
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(n)]


def test_a_group_pruned_alone_computes_what_the_physically_pruned_model_computes():
    model = concat_net_with_a_quiet_branch()
    analysis = find_channel_groups(model, {"x": list(SHAPE)})
    moments = consumer_moments(analysis, list(model.graph.input), feeds())
    gid = next(g.id for g in analysis.groups if "a.0.weight" in g.weights)
    keep = select_channels(analysis, {"a.0.weight": 0.5}, round_to=8)
    simulated = _pruned_alone(analysis, gid, keep[gid], moments)
    pruned, _ = prune_channels(
        model, {"a.0.weight": 0.5}, round_to=8, input_shapes={"x": list(SHAPE)}, calibration=feeds()
    )
    x = feeds()[0]["x"]
    np.testing.assert_allclose(run(simulated, x), run(pruned, x), rtol=1e-4, atol=1e-4)


def test_sensitivities_grow_with_the_ratio_and_price_the_macs_removed():
    model = concat_net_with_a_quiet_branch()
    analysis = find_channel_groups(model, {"x": list(SHAPE)})
    inputs = list(model.graph.input)
    moments = consumer_moments(analysis, inputs, feeds())
    found = {s.weights[0]: s for s in group_sensitivities(analysis, inputs, feeds(), moments, round_to=8)}
    loud, quiet = found["a.0.weight"], found["b.0.weight"]
    assert [o.kept for o in quiet.options] == sorted({o.kept for o in quiet.options}, reverse=True)
    assert quiet.options[-1].error < loud.options[0].error
    # the MACs estimate of one group pruned alone is exact: compare with counting the pruned model
    option = loud.options[1]
    pruned, report = prune_channels(model, {"a.0.weight": option.ratio}, round_to=8, input_shapes={"x": list(SHAPE)})
    assert option.macs_saved == report.macs_before - report.macs_after


def test_allocation_takes_macs_where_the_error_grows_least():
    cheap = GroupSensitivity(["cheap"], 64, [PruneOption(0.25, 48, 0.01, 100), PruneOption(0.5, 32, 0.02, 200)])
    dear = GroupSensitivity(["dear"], 64, [PruneOption(0.25, 48, 0.5, 100), PruneOption(0.5, 32, 0.9, 200)])
    assert allocate_ratios([cheap, dear], 150) == {"cheap": 0.5}
    assert allocate_ratios([cheap, dear], 250) == {"cheap": 0.5, "dear": 0.25}
    assert allocate_ratios([cheap, dear], 0) == {}


def test_allocation_stops_at_the_largest_measured_ratio_with_a_warning(caplog):
    only = GroupSensitivity(["w"], 64, [PruneOption(0.25, 48, 0.1, 100)])
    with caplog.at_level(logging.WARNING):
        assert allocate_ratios([only], 1000) == {"w": 0.25}
    assert "removed 100 of the 1000 MACs" in caplog.text


def test_sensitivity_ratios_beat_uniform_pruning_at_the_same_macs():
    model = concat_net_with_a_quiet_branch()
    shapes = {"x": list(SHAPE)}
    ratios = sensitivity_ratios(model, 0.25, feeds(), round_to=8, input_shapes=shapes)
    assert ratios.get("b.0.weight", 0) > ratios.get("a.0.weight", 0)
    allocated, report = prune_channels(model, ratios, round_to=8, input_shapes=shapes, calibration=feeds())
    uniform, uniform_report = prune_channels(model, 0.25, round_to=8, input_shapes=shapes, calibration=feeds())
    assert report.macs_after <= uniform_report.macs_after
    x = feeds()[1]["x"]
    reference = run(model, x)

    def error(m):
        return np.linalg.norm(run(m, x) - reference) / np.linalg.norm(reference)

    assert error(allocated) < 0.5 * error(uniform)
    assert count_params_and_macs(allocated, shapes).macs == report.macs_after


def test_sensitivity_needs_calibration_batches():
    with pytest.raises(DataError, match="calibration batch"):
        sensitivity_ratios(concat_net_with_a_quiet_branch(), 0.25, [], input_shapes={"x": list(SHAPE)})
