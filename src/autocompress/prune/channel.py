"""Structured channel pruning that physically removes channels from an ONNX graph.

Channels are chosen per dependency group (groups.py) by an importance criterion (criteria.py); then
every constant that follows a group is sliced and every node whose attributes encode channel counts
(depthwise group, Split sizes, Slice bounds, Reshape targets, Resize sizes) is rewritten, so the result
is a smaller dense model that any runtime executes faster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.compensate import Feed, Moments, apply_compensation, consumer_moments
from autocompress.prune.constants import set_constant, set_node_input
from autocompress.prune.criteria import channel_scores, scored_by_l1
from autocompress.prune.groups import ChannelAnalysis, ChannelGroup, Segment, find_channel_groups, removed_indices
from autocompress.prune.stats import count_params_and_macs

logger = logging.getLogger(__name__)


@dataclass
class PrunedGroup:
    weights: list[str]
    original: int
    kept: int


@dataclass
class UnprunableGroup:
    weights: list[str]
    channels: int
    reason: str


@dataclass
class ChannelPruneReport:
    pruned: list[PrunedGroup] = field(default_factory=list)
    unprunable: list[UnprunableGroup] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    prunable_groups: int = 0
    #: layers whose bias took the mean of the channels they no longer read (0 without calibration data)
    compensated: int = 0
    #: what the user should know: groups round_to kept whole, groups the criterion could not score
    warnings: list[str] = field(default_factory=list)


def _check_ratio(key: str, ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"ChannelPrune.pruned_ratio{key}={ratio} must be in [0, 1)")


def kept_count(channels: int, ratio: float, round_to: int, min_channels: int) -> int:
    """Channels left after pruning `ratio`: the multiple of round_to (vector kernels run fastest on whole
    blocks) or the full width nearest to channels * (1 - ratio), never below one block or min_channels.
    The full width is a candidate so that a small ratio on a group that is not a whole number of blocks
    (EfficientNet's 24- and 40-channel bottlenecks) keeps it whole instead of losing a third of it."""
    if ratio == 0.0 or channels <= round_to:
        return channels
    target = channels * (1.0 - ratio)
    candidates = [b * round_to for b in range(1, channels // round_to + 1)] + [channels]
    kept = min(candidates, key=lambda c: (abs(c - target), -c))  # a tie keeps more: prune less than asked, not more
    return min(channels, max(kept, min_channels))


def _group_ratios(
    groups: list[ChannelGroup], pruned_ratio: float | dict[str, float], prune_params_name: list[str] | None
) -> dict[int, float]:
    """Ratio per prunable group id, validating every weight name the user gave."""
    prunable = {w: g for g in groups if g.prunable for w in g.weights}
    blocked = {w: g for g in groups if not g.prunable for w in g.weights}

    def lookup(name: str, key: str) -> ChannelGroup:
        if name in prunable:
            return prunable[name]
        why = f" (its group is not prunable: {blocked[name].reason})" if name in blocked else ""
        raise ConfigError(
            f"ChannelPrune.{key} names {name!r}, which is not a prunable weight{why}; candidates: {sorted(prunable)}"
        )

    if isinstance(pruned_ratio, dict):
        ratios: dict[int, float] = {}
        for name, ratio in pruned_ratio.items():
            _check_ratio(f"[{name!r}]", ratio)
            gid = lookup(name, "pruned_ratio").id
            ratios[gid] = min(ratio, ratios.get(gid, ratio))  # a group shared by several names: least pruning
    else:
        _check_ratio("", pruned_ratio)
        ratios = {g.id: pruned_ratio for g in groups if g.prunable}
    if prune_params_name is not None:
        chosen = {lookup(name, "prune_params_name").id for name in prune_params_name}
        ratios = {gid: r for gid, r in ratios.items() if gid in chosen}
    return ratios


def select_channels(
    analysis: ChannelAnalysis,
    pruned_ratio: float | dict[str, float],
    criterion: str = "l1_norm",
    prune_params_name: list[str] | None = None,
    round_to: int = 16,
    min_channels: int = 1,
    moments: dict[str, Moments] | None = None,
) -> dict[int, np.ndarray]:
    """Sorted channel indices to keep, per group id that loses channels. `moments` (consumer_moments) are the
    activation statistics the data criteria read."""
    if round_to < 1 or min_channels < 1:
        raise ConfigError(f"round_to={round_to} and min_channels={min_channels} must be >= 1")
    index = GraphIndex(analysis.model)
    keep: dict[int, np.ndarray] = {}
    for gid, ratio in _group_ratios(analysis.groups, pruned_ratio, prune_params_name).items():
        group = analysis.group(gid)
        kept = kept_count(group.channels, ratio, round_to, min_channels)
        if kept < group.channels:
            scores = channel_scores(group, index, criterion, moments)
            keep[gid] = np.sort(np.argsort(-scores, kind="stable")[:kept])
    return keep


class _Rewriter:
    def __init__(self, analysis: ChannelAnalysis, keep: dict[int, np.ndarray]):
        self.analysis = analysis
        self.model = analysis.model
        self.index = GraphIndex(self.model)
        self.keep = keep

    def new_size(self, tensor: str) -> int:
        layout = self.analysis.layouts[tensor]
        return layout.size - len(removed_indices(layout.segments, self.keep))

    def set_constant(self, name: str, value: np.ndarray) -> None:
        set_constant(self.index, name, value)

    def set_node_input(self, node: onnx.NodeProto, idx: int, value: np.ndarray) -> None:
        self.index = set_node_input(self.index, node, idx, value)

    def slice_constants(self) -> None:
        views: dict[tuple[str, int], set[Segment]] = {}
        for member in self.analysis.constant_members:
            if member.segment.group in self.keep:
                views.setdefault((member.tensor, member.axis), set()).add(member.segment)
        for (name, axis), segments in views.items():
            value = self.index.constant_value(name)
            value = np.delete(value, removed_indices(sorted(segments, key=lambda s: s.offset), self.keep), axis=axis)
            self.set_constant(name, value)

    def rewrite_nodes(self) -> None:
        opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 13)
        for rw in self.analysis.rewrites:
            node, data = rw.node, rw.data
            if rw.kind == "depthwise_group":
                self._set_attribute(node, "group", self.new_size(data["tensor"]))
            elif rw.kind == "split_sizes":
                sizes = np.asarray([self.new_size(out) for out in node.output], dtype=np.int64)
                if opset < 13:
                    self._set_attribute(node, "split", sizes.tolist())
                else:
                    self.set_node_input(node, 1, sizes)
                    _drop_attribute(node, "num_outputs")
            elif rw.kind == "slice_bounds":
                layout = self.analysis.layouts[node.input[0]]
                removed = removed_indices(layout.segments, self.keep)
                begin = data["begin"] - int((removed < data["begin"]).sum())
                starts = self.index.constant_value(node.input[1]).copy()
                ends = self.index.constant_value(node.input[2]).copy()
                starts[data["pos"]], ends[data["pos"]] = begin, begin + self.new_size(node.output[0])
                self.set_node_input(node, 1, starts)
                self.set_node_input(node, 2, ends)
            elif rw.kind == "reshape_target":
                target = self.index.constant_value(node.input[1]).copy()
                if target[data["axis"]] > 0:
                    target[data["axis"]] = self.new_size(node.output[0])
                    self.set_node_input(node, 1, target)
            elif rw.kind == "resize_sizes":
                sizes = self.index.constant_value(node.input[3]).copy()
                sizes[data["axis"]] = self.new_size(node.output[0])
                self.set_node_input(node, 3, sizes)

    @staticmethod
    def _set_attribute(node: onnx.NodeProto, name: str, value) -> None:
        _drop_attribute(node, name)
        node.attribute.append(onnx.helper.make_attribute(name, value))


def _drop_attribute(node: onnx.NodeProto, name: str) -> None:
    for i, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[i]
            return


def _restore_interface(pruned: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Puts back the user's input/output declarations (analysis may have fixed dynamic dims) and drops
    intermediate shapes, which no longer hold after channels are removed."""
    graph = pruned.graph
    del graph.value_info[:]
    del graph.input[:]
    graph.input.extend(original.graph.input)
    initializers = {t.name: t for t in graph.initializer}
    for inp in graph.input:
        if inp.name in initializers:  # IR < 4 lists weights as inputs; their shapes changed
            dims = inp.type.tensor_type.shape.dim
            del dims[:]
            for d in initializers[inp.name].dims:
                dims.add().dim_value = d
    del graph.output[:]
    graph.output.extend(original.graph.output)


def prune_channels(
    model: onnx.ModelProto,
    pruned_ratio: float | dict[str, float],
    criterion: str = "l1_norm",
    prune_params_name: list[str] | None = None,
    round_to: int = 16,
    min_channels: int = 1,
    input_shapes: dict[str, list[int]] | None = None,
    calibration: Iterable[Feed] | None = None,
    compensate: bool = True,
) -> tuple[onnx.ModelProto, ChannelPruneReport]:
    """Removes the least important channels of every prunable group (or of the groups whose producing
    weights are named in prune_params_name / the keys of a pruned_ratio dict). The input model is not
    modified. input_shapes fixes dynamic input dims for the analysis and the MAC counts. Calibration batches
    feed the data criteria and, with `compensate`, move the removed channels' mean activations into the next
    layers' biases (compensate.py)."""
    analysis = find_channel_groups(model, input_shapes)
    moments = consumer_moments(analysis, list(model.graph.input), calibration) if calibration is not None else None
    keep = select_channels(analysis, pruned_ratio, criterion, prune_params_name, round_to, min_channels, moments)
    compensated = apply_compensation(analysis, keep, moments) if moments and compensate else 0
    rewriter = _Rewriter(analysis, keep)
    rewriter.slice_constants()
    rewriter.rewrite_nodes()
    pruned = analysis.model
    _restore_interface(pruned, model)
    onnx.checker.check_model(pruned)

    before, after = count_params_and_macs(model, input_shapes), count_params_and_macs(pruned, input_shapes)
    report = ChannelPruneReport(
        pruned=[PrunedGroup(analysis.group(g).weights, analysis.group(g).channels, len(k)) for g, k in keep.items()],
        unprunable=[UnprunableGroup(g.weights, g.channels, g.reason) for g in analysis.groups if not g.prunable],
        prunable_groups=sum(g.prunable for g in analysis.groups),
        params_before=before.params,
        params_after=after.params,
        macs_before=before.macs,
        macs_after=after.macs,
        compensated=compensated,
    )
    report.warnings = _warnings(analysis, keep, pruned_ratio, prune_params_name, round_to, criterion)
    for warning in report.warnings:
        logger.warning(warning)
    logger.info(
        "channel pruning: %d groups pruned, %d unprunable, params %d -> %d",
        len(report.pruned),
        len(report.unprunable),
        report.params_before,
        report.params_after,
    )
    return pruned, report


def _warnings(
    analysis: ChannelAnalysis,
    keep: dict[int, np.ndarray],
    pruned_ratio: float | dict[str, float],
    prune_params_name: list[str] | None,
    round_to: int,
    criterion: str,
) -> list[str]:
    """Groups asked to lose channels that round_to kept whole, and pruned groups the criterion scored by l1_norm."""
    ratios = _group_ratios(analysis.groups, pruned_ratio, prune_params_name)
    whole = [analysis.group(g) for g, r in ratios.items() if r > 0 and g not in keep]
    fallback = [analysis.group(g) for g in keep if scored_by_l1(analysis.group(g), criterion)]
    warnings = []
    if whole:
        layers = ", ".join(f"{g.weights} ({g.channels} channels)" for g in whole)
        warnings.append(
            f"ChannelPrune: round_to={round_to} keeps every channel of {len(whole)} of {len(ratios)} groups asked to "
            f"lose channels ({'nothing was pruned' if not keep else 'the others were pruned'}), since the nearest "
            f"multiple of {round_to} is their full width: {layers}; lower round_to to prune them"
        )
    if fallback:
        layers = ", ".join(str(g.weights) for g in fallback)
        warnings.append(
            f"ChannelPrune: criterion {criterion!r} found no normalisation scale after {len(fallback)} "
            f"pruned groups and ranked their channels by l1_norm instead: {layers}"
        )
    return warnings
