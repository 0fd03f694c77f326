import numpy as np
import onnx
import pytest

from autocompress.errors import ConfigError
from autocompress.prune.channel import kept_count, prune_channels, select_channels
from autocompress.prune.groups import find_channel_groups
from autocompress.prune.masks import apply_masks, channel_masks
from autocompress.prune.stats import count_params_and_macs
from tests.prune.prune_models import (
    ChannelShuffle,
    ConcatNet,
    DepthwiseNet,
    FlattenFC,
    NormMLP,
    ReshapeFC,
    Residual,
    SplitNet,
    SqueezeExcite,
    export,
    run,
    zero_channels,
)

CASES = [
    (Residual, (1, 3, 16, 16)),
    (ConcatNet, (1, 3, 16, 16)),
    (DepthwiseNet, (1, 3, 16, 16)),
    (SqueezeExcite, (1, 3, 16, 16)),
    (FlattenFC, (1, 3, 8, 8)),
    (ReshapeFC, (1, 3, 8, 8)),
    (SplitNet, (1, 3, 16, 16)),
]


@pytest.mark.parametrize("net, shape", CASES, ids=[c[0].__name__ for c in CASES])
def test_pruned_model_matches_original_with_dropped_channels_silenced(net, shape):
    """Removing channels must equal zeroing every read of them in the original: this fails if any
    sliced axis, offset, depthwise group or flatten expansion is wrong."""
    model = export(net(), shape)
    pruned, report = prune_channels(model, 0.5, round_to=8)
    onnx.checker.check_model(pruned, full_check=True)

    analysis = find_channel_groups(model)
    keep = select_channels(analysis, 0.5, round_to=8)
    silenced = apply_masks(analysis.model, channel_masks(analysis, keep, roles=("consumer",)))

    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    expected, got = run(silenced, x), run(pruned, x)
    assert got.shape == run(model, x).shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert report.pruned and all(p.kept < p.original for p in report.pruned)
    assert report.params_after < report.params_before and report.macs_after < report.macs_before
    assert count_params_and_macs(pruned).params == report.params_after


def test_depthwise_group_attribute_follows_kept_channels():
    pruned, _ = prune_channels(export(DepthwiseNet(), (1, 3, 16, 16)), 0.5, round_to=8)
    groups = [a.i for n in pruned.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    assert max(groups) == 16


def test_ratio_zero_changes_nothing():
    model = export(Residual(), (1, 3, 16, 16))
    pruned, report = prune_channels(model, 0.0)
    assert report.pruned == [] and report.params_after == report.params_before


def test_prune_params_name_restricts_pruning_to_named_groups():
    model = export(ConcatNet(), (1, 3, 16, 16))
    _, report = prune_channels(model, 0.5, prune_params_name=["b.0.weight"], round_to=8)
    assert [(p.weights, p.original, p.kept) for p in report.pruned] == [(["b.0.weight"], 48, 24)]


def test_ratio_per_weight_dict():
    model = export(ConcatNet(), (1, 3, 16, 16))
    _, report = prune_channels(model, {"a.0.weight": 0.25, "b.0.weight": 0.5}, round_to=8)
    assert sorted((p.original, p.kept) for p in report.pruned) == [(32, 24), (48, 24)]


def test_unprunable_groups_are_reported_and_left_intact():
    model = export(ChannelShuffle(), (1, 3, 16, 16))
    pruned, report = prune_channels(model, 0.5, round_to=8)
    assert report.pruned == [] and report.prunable_groups == 0
    reasons = {tuple(u.weights): u.reason for u in report.unprunable}
    assert "Reshape" in reasons[("stem.0.weight",)] and "graph output" in reasons[("head.weight",)]
    x = np.ones((1, 3, 16, 16), np.float32)
    np.testing.assert_allclose(run(pruned, x), run(model, x), rtol=1e-5)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_ratio_outside_unit_interval_is_a_config_error(ratio):
    with pytest.raises(ConfigError, match="pruned_ratio"):
        prune_channels(export(ConcatNet(), (1, 3, 16, 16)), ratio)


def test_unknown_weight_name_lists_candidates():
    with pytest.raises(ConfigError, match=r"candidates: \['a.0.weight', 'b.0.weight'\]"):
        prune_channels(export(ConcatNet(), (1, 3, 16, 16)), 0.3, prune_params_name=["nope.weight"])


def test_weight_of_unprunable_group_names_the_reason():
    with pytest.raises(ConfigError, match="graph output"):
        prune_channels(export(ConcatNet(), (1, 3, 16, 16)), 0.3, prune_params_name=["head.weight"])


def test_unknown_criterion_is_a_config_error():
    with pytest.raises(ConfigError, match="criterion"):
        prune_channels(export(ConcatNet(), (1, 3, 16, 16)), 0.3, criterion="random")


@pytest.mark.parametrize(
    "channels, ratio, round_to, expected",
    [
        (64, 0.3, 16, 48),
        (64, 0.5, 16, 32),
        (32, 0.9, 16, 16),
        (16, 0.5, 16, 16),
        (100, 0.3, 1, 70),
        (24, 0.99, 8, 8),
        (24, 0.05, 16, 24),
        (40, 0.05, 16, 40),
        (24, 0.3, 16, 16),
        (96, 0.3, 16, 64),
        (80, 0.3, 16, 64),
    ],  # a small ratio keeps a 24-wide group whole
)
def test_kept_count_rounds_to_blocks_and_never_empties(channels, ratio, round_to, expected):
    assert kept_count(channels, ratio, round_to, 1) == expected


def test_params_and_macs_of_a_known_model():
    stats = count_params_and_macs(export(FlattenFC(), (1, 3, 8, 8)))
    conv_params = 32 * 3 * 9 + 32 + 4 * 32  # conv weight, bias, BN gamma/beta/mean/var
    fc_params = 512 * 48 + 48 + 48 * 10 + 10
    assert stats.params == conv_params + fc_params
    assert stats.macs == 8 * 8 * 32 * 27 + 512 * 48 + 48 * 10


@pytest.mark.parametrize("opset", [14, 17], ids=["reduce_mean_ops", "LayerNormalization"])
def test_channels_normalised_together_are_never_removed(opset):
    """Zero channels still count in a LayerNorm's mean and variance: removing fc1's zeroed channels would
    move the output, so only fc0's group (read through ReLU by a layer) loses its zeroed channels."""
    model = export(zero_channels(NormMLP(), {"fc0": 16, "fc1": 8}), (2, 8), opset)
    assert any(n.op_type == ("ReduceMean" if opset == 14 else "LayerNormalization") for n in model.graph.node)
    pruned, report = prune_channels(model, 0.5, round_to=1)
    assert [(p.weights, p.original, p.kept) for p in report.pruned] == [([_matmul_weight(model, 0)], 32, 16)]
    reasons = " ".join(u.reason for u in report.unprunable if _matmul_weight(model, 1) in u.weights)
    assert "across channels" in reasons
    x = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(run(pruned, x), run(model, x), rtol=1e-5, atol=1e-5)
    assert report.params_after < report.params_before
    with pytest.raises(ConfigError, match="not a prunable weight.*across channels"):
        prune_channels(model, 0.5, prune_params_name=[_matmul_weight(model, 1)], round_to=1)


def test_zeroed_channels_read_only_by_layers_are_removed_exactly():
    model = export(zero_channels(NormMLP(norm=False), {"fc0": 16, "fc1": 8}), (2, 8), 17)
    pruned, report = prune_channels(model, 0.5, round_to=1)
    assert sorted((p.original, p.kept) for p in report.pruned) == [(16, 8), (32, 16)]
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(run(pruned, x), run(model, x), rtol=1e-5, atol=1e-5)
    assert report.params_after < 0.6 * report.params_before


def _matmul_weight(model: onnx.ModelProto, position: int) -> str:
    """Name of the weight of the position-th Gemm/MatMul (the exporter names MatMul weights itself)."""
    return [n.input[1] for n in model.graph.node if n.op_type in ("Gemm", "MatMul")][position]
