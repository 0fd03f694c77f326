"""What channel pruning could not do as asked is a warning in the log and in the report, naming the layers."""

from __future__ import annotations

import logging

import numpy as np
from torch import nn

from autocompress.prune.channel import prune_channels
from tests.prune.prune_models import conv_bn, export, run


def _plain_net() -> nn.Module:
    """Two Convs of 8 and 16 channels with no normalisation, then a classifier."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


def _bn_net() -> nn.Module:
    return nn.Sequential(conv_bn(3, 8), conv_bn(8, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def test_round_to_that_keeps_every_channel_is_a_warning_naming_the_layers(caplog):
    model = export(_plain_net(), (1, 3, 8, 8))
    with caplog.at_level(logging.WARNING, logger="autocompress.prune"):
        pruned, report = prune_channels(model, 0.5, round_to=16)
    assert report.params_after == report.params_before and not report.pruned
    assert len(report.warnings) == 1
    warning = report.warnings[0]
    assert "round_to=16 keeps every channel of 2 of 2 groups" in warning and "nothing was pruned" in warning
    assert "['0.weight'] (8 channels)" in warning and "['2.weight'] (16 channels)" in warning
    assert caplog.records[0].levelno == logging.WARNING and caplog.records[0].getMessage() == warning

    _, report = prune_channels(model, 0.5, round_to=4)
    assert report.params_after < report.params_before and not report.warnings


def test_bn_scale_without_normalisation_warns_and_ranks_by_l1_norm(caplog):
    model = export(_plain_net(), (1, 3, 8, 8))
    with caplog.at_level(logging.WARNING, logger="autocompress.prune"):
        by_bn, report = prune_channels(model, 0.5, criterion="bn_scale", round_to=4, compensate=False)
    by_l1, _ = prune_channels(model, 0.5, criterion="l1_norm", round_to=4, compensate=False)
    assert report.warnings == [r.getMessage() for r in caplog.records]
    assert len(report.warnings) == 1
    assert "criterion 'bn_scale' found no normalisation scale after 2 pruned groups" in report.warnings[0]
    assert "['0.weight']" in report.warnings[0] and "ranked their channels by l1_norm" in report.warnings[0]
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(run(by_bn, x), run(by_l1, x))

    _, report = prune_channels(export(_bn_net(), (1, 3, 8, 8)), 0.5, criterion="bn_scale", round_to=4)
    assert not report.warnings
