"""Quantization-aware training on the graph: fake-quant transforms in a TorchGraph, export through the QDQ writer.

insert_fake_quant puts a fake-quant on exactly what the QDQ writer will quantize for the same options
(plan_quantization): the weight input of each planned node, every reader of each planned activation tensor
(the writer points *all* readers at the dequantized tensor) and every reader of each quantized float
constant. export_qat writes the trained weights back and hands the learned ranges and weight scales to
the writer, so the exported model computes what the fake-quant graph computed (up to ORT's integer
requantization of the outputs of fused kernels).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from torch.utils.hooks import RemovableHandle

from autocompress.errors import ConfigError
from autocompress.quant.fake_quant import (
    ForwardCounter,
    MinMaxFakeQuant,
    ObserverFakeQuant,
    PACTFakeQuant,
    RangeFakeQuant,
    WeightFakeQuant,
)
from autocompress.quant.qdq import QDQOptions, QuantPlan, checked_plan, write_qdq_model
from autocompress.quant.ranges import activation_ranges, activation_thresholds
from autocompress.quant.statistics import collect_statistics
from autocompress.runtime.torch_graph import TorchGraph

Range = tuple[float, float]


@dataclass(frozen=True)
class FakeQuantSettings:
    """How activations are observed during training (QuantAware's fields) and whether zeros are kept."""

    activation_quantize_type: str = "moving_average_abs_max"
    moving_rate: float = 0.9
    window_size: int = 10000
    use_pact: bool = False
    sparse_model: bool = False


@dataclass
class QATHandles:
    """The fake-quant modules inserted into one TorchGraph, keyed like the QDQ writer's inputs."""

    plan: QuantPlan
    activations: dict[str, RangeFakeQuant]  # activation tensor -> its quantizer
    weights: dict[str, WeightFakeQuant]  # weight initializer -> its quantizer
    constants: dict[str, MinMaxFakeQuant] = field(default_factory=dict)
    counter: ForwardCounter = field(default_factory=ForwardCounter)
    hook: RemovableHandle | None = None

    def activation_ranges(self) -> dict[str, Range]:
        return {name: quantizer.exported_range() for name, quantizer in self.activations.items()}

    def weight_scales(self, graph: TorchGraph) -> dict[str, np.ndarray]:
        return {name: quantizer.scales(graph.parameter(name)).cpu().numpy() for name, quantizer in self.weights.items()}


def calibrated_ranges(
    model: onnx.ModelProto,
    options: QDQOptions,
    batches: Iterable[Mapping[str, np.ndarray]],
    algo: str = "hist",
    hist_percent: float = 0.999,
    batch_nums: int | None = None,
    cache_dir: str | None = None,
) -> dict[str, Range]:
    """PTQ ranges of the tensors insert_fake_quant observes, so that training starts where PTQ ends."""
    return candidate_ranges(model, options, batches, [(algo, hist_percent)], batch_nums, cache_dir)[0]


def candidate_ranges(
    model: onnx.ModelProto,
    options: QDQOptions,
    batches: Iterable[Mapping[str, np.ndarray]],
    candidates: Sequence[tuple[str, float]],
    batch_nums: int | None = None,
    cache_dir: str | None = None,
    deadline: float | None = None,
) -> list[dict[str, Range]]:
    """calibrated_ranges for each (algo, hist_percent) candidate, from one pass over the batches (cut short at
    `deadline`, a perf_counter() instant, once a couple of batches are in)."""
    tensors = checked_plan(model, options).activation_tensors
    statistics = collect_statistics(
        model,
        batches,
        tensors,
        batch_nums,
        options.activation_bits,
        cache_dir,
        algorithms=[algo for algo, _ in candidates],
        deadline=deadline,
    )
    return [
        activation_ranges(
            statistics, tensors, activation_thresholds(statistics, algo, hist_percent), options.symmetric_activations
        )
        for algo, hist_percent in candidates
    ]


def _planned_positions(model: onnx.ModelProto, plan: QuantPlan) -> list[int]:
    """Index in model.graph.node of each planned node (the plan keeps graph order)."""
    positions, planned = [], iter(plan.nodes)
    pending = next(planned, None)
    for i, node in enumerate(model.graph.node):
        if pending is not None and node == pending.node:
            positions.append(i)
            pending = next(planned, None)
    if pending is not None:
        raise ConfigError("the quantization plan does not match the model's nodes; build both from the same model")
    return positions


def _activation_quantizer(
    options: QDQOptions, settings: FakeQuantSettings, initial: Range | None, counter: ForwardCounter
) -> RangeFakeQuant:
    if settings.use_pact:
        return PACTFakeQuant(options.symmetric_activations, initial, options.activation_bits)
    return ObserverFakeQuant(
        settings.activation_quantize_type,
        options.symmetric_activations,
        initial,
        settings.moving_rate,
        settings.window_size,
        options.activation_bits,
        counter,
    )


def insert_fake_quant(
    graph: TorchGraph,
    model: onnx.ModelProto,
    options: QDQOptions,
    ranges_init: Mapping[str, Range | float] | None = None,
    settings: FakeQuantSettings = FakeQuantSettings(),
) -> QATHandles:
    """Fake-quantize in `graph` (built from `model`) what write_qdq_model(model, ..., options) quantizes.

    ranges_init maps activation tensors to (min, max) or an abs max to start from (calibrated_ranges);
    a tensor without one starts empty (its first training batch sets it). Raises ConfigError when
    nothing in the model matches the options.
    """
    if len(graph.node_names) != len(model.graph.node):
        raise ConfigError("the TorchGraph was not built from this model (node counts differ)")
    plan = checked_plan(model, options)
    ranges_init = ranges_init or {}
    handles = QATHandles(plan, {}, {})
    for name in plan.activation_tensors:
        initial = ranges_init.get(name)
        if initial is not None and np.ndim(initial) == 0:
            initial = (-float(initial), float(initial))
        handles.activations[name] = _activation_quantizer(options, settings, initial, handles.counter)
    for node_plan in plan.nodes:
        for name in node_plan.constant_inputs:
            handles.constants.setdefault(name, MinMaxFakeQuant(options.symmetric_activations, options.activation_bits))

    readers: dict[str, torch.nn.Module] = {**handles.activations, **handles.constants}
    for i, node in enumerate(model.graph.node):
        for position, name in enumerate(node.input):
            if name in readers:
                graph.set_input_transform(graph.node_names[i], position, readers[name])
    for i, node_plan in zip(_planned_positions(model, plan), plan.nodes):
        if node_plan.weight is None:
            continue
        position, name, axis = node_plan.weight
        if name not in handles.weights:
            handles.weights[name] = WeightFakeQuant(axis, options.weight_bits, _sparsity_mask(graph, name, settings))
        graph.set_input_transform(graph.node_names[i], position, handles.weights[name])
    handles.hook = graph.register_forward_pre_hook(handles.counter.bump)
    return handles


def _sparsity_mask(graph: TorchGraph, name: str, settings: FakeQuantSettings) -> torch.Tensor | None:
    """1 where the weight is non-zero, when sparse_model asks to keep the zeros and there are any."""
    if not settings.sparse_model:
        return None
    weight = graph.parameter(name).detach()
    mask = (weight != 0).to(weight.dtype)
    return None if bool(mask.all()) else mask


def export_qat(model: onnx.ModelProto, graph: TorchGraph, handles: QATHandles, options: QDQOptions) -> onnx.ModelProto:
    """The QDQ model of the trained graph: learned weights, activation ranges and weight scales."""
    trained = graph.write_back(model)
    quantized, _ = write_qdq_model(trained, handles.activation_ranges(), options, handles.weight_scales(graph))
    return quantized
