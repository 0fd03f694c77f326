"""Channel importance scores: higher means more important, so pruning drops the lowest scores."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
from scipy.spatial.distance import cdist

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.compensate import Moments
from autocompress.prune.groups import ChannelGroup, GroupMember, node_label

logger = logging.getLogger(__name__)


def _per_channel(index: GraphIndex, member: GroupMember) -> np.ndarray:
    """The member's constant as a [group channels, rest] matrix covering the member's segment."""
    value = index.constant_value(member.tensor)
    seg = member.segment
    rows = np.moveaxis(value.astype(np.float64), member.axis, 0)
    rows = rows[seg.offset : seg.offset + seg.length * seg.expand]
    return rows.reshape(seg.length, -1)


def _accumulate(group: ChannelGroup, index: GraphIndex, role: str, score: Callable[[np.ndarray], np.ndarray]):
    """Sums score(matrix) over every member with `role`, each placed at its group channels."""
    total = np.zeros(group.channels)
    found = False
    for member in group.members:
        if member.role == role:
            seg = member.segment
            total[seg.start : seg.start + seg.length] += score(_per_channel(index, member))
            found = True
    return total if found else None


def l1_norm(group: ChannelGroup, index: GraphIndex) -> np.ndarray:
    """Sum of |w| over each output channel of the weights that produce the group."""
    return _accumulate(group, index, "producer", lambda m: np.abs(m).sum(axis=1))


def bn_scale(group: ChannelGroup, index: GraphIndex) -> np.ndarray:
    """|gamma| of the normalisations that follow the producers (network slimming). Groups without a
    normalisation fall back to l1_norm, since they carry no learned channel scale (scored_by_l1 names them)."""
    scores = _accumulate(group, index, "norm_scale", lambda m: np.abs(m).sum(axis=1))
    return l1_norm(group, index) if scores is None else scores


def scored_by_l1(group: ChannelGroup, criterion: str) -> bool:
    """Whether `criterion` reads nothing in this group and scores it by l1_norm instead (bn_scale without a
    normalisation after the group's producers)."""
    return criterion == "bn_scale" and not any(m.role == "norm_scale" for m in group.members)


def geometry_median(group: ChannelGroup, index: GraphIndex) -> np.ndarray:
    """FPGM: a filter close to all others (near their geometric median) is replaceable, so the sum of
    Euclidean distances to the other filters is its importance."""
    return _accumulate(group, index, "producer", lambda m: cdist(m, m).sum(axis=1))


def output_error(group: ChannelGroup, index: GraphIndex, moments: Mapping[str, Moments]) -> np.ndarray:
    """Expected squared change of the next layers' outputs when the channel is removed and its mean is
    compensated (compensate.py): sum over consumers of ||W[:, c]||^2 * Var(x_c). Unlike the weight norms it sees
    what flows through the channel, so a small filter carrying a large varying signal is kept, and a large one
    whose output is nearly constant (a folded BatchNorm shift through ReLU6) goes. Channels are treated as
    uncorrelated and a k x k kernel's taps as reading the same variance."""
    inputs = {node_label(n): n.input[0] for n in index.model.graph.node}
    total = np.zeros(group.channels)
    found = False
    for member in group.members:
        stats = moments.get(inputs.get(member.node, ""))
        if member.role != "consumer" or stats is None:
            continue
        seg = member.segment
        rows = np.moveaxis(index.constant_value(member.tensor).astype(np.float64), member.axis, 0)
        rows = rows[seg.offset : seg.offset + seg.length * seg.expand]
        energy = np.square(rows.reshape(len(rows), -1)).sum(axis=1)
        var = stats.var[seg.offset : seg.offset + seg.length * seg.expand]
        total[seg.start : seg.start + seg.length] += (energy * var).reshape(seg.length, seg.expand).sum(axis=1)
        found = True
    if not found:
        logger.info("group %s has no measured consumer; output_error falls back to l1_norm", group.weights)
        return l1_norm(group, index)
    return total


CRITERIA: dict[str, Callable[[ChannelGroup, GraphIndex], np.ndarray]] = {
    "l1_norm": l1_norm,
    "bn_scale": bn_scale,
    "geometry_median": geometry_median,
}
#: Criteria that read activations: they need calibration batches.
DATA_CRITERIA = ("output_error",)


def channel_scores(
    group: ChannelGroup, index: GraphIndex, criterion: str, moments: Mapping[str, Moments] | None = None
) -> np.ndarray:
    if criterion in DATA_CRITERIA:
        if moments is None:
            raise ConfigError(f"ChannelPrune.criterion={criterion!r} measures activations and needs calibration data")
        return output_error(group, index, moments)
    if criterion not in CRITERIA:
        raise ConfigError(
            f"ChannelPrune.criterion={criterion!r} is not supported; choose one of {sorted(CRITERIA) + list(DATA_CRITERIA)}"
        )
    return CRITERIA[criterion](group, index)
