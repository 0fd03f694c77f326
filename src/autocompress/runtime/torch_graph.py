"""Differentiable PyTorch executor of an ONNX graph.

Training happens on the graph itself: ``TorchGraph`` runs the ONNX nodes with torch ops, keeps the
trainable constants as ``nn.Parameter``s and writes what was learned back into the ONNX model. Tensor
names stay the ONNX names, so any tensor can be captured by the name a user writes in a config.

Constant roles (decided once, from how each initializer or Constant-node output is consumed):

* running statistics of BatchNormalization (inputs 3, 4): buffers that BN updates in train mode;
* static constants — used only where an op expects shapes, axes, indices or bounds (e.g. Reshape's
  shape, Clip's min/max), integer tensors, and one-element float tensors that only feed pointwise ops
  (the 3 and 6 of a hard-swish): buffers whose values kernels may bake in at build time;
* every other float constant (weights, biases, BN scale/shift, per-channel tensors): ``nn.Parameter``.

Nodes whose inputs are all static are evaluated once at construction ("folded"): e.g. the pad
arithmetic that torch exports around every 'same'-padded convolution never runs per step.

Node names: the stable names of graph/naming.py (a node's ``name`` if it is non-empty and unique, else
``f"{op_type}_{first output}"``), which ``node_names`` lists in graph order; a node's original or folded-in
names find it as well.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from autocompress.errors import ConfigError, DataError, ModelLoadError, UnsupportedOpError
from autocompress.graph.index import GraphIndex
from autocompress.graph.naming import name_table, stable_names
from autocompress.graph.op_facts import TRAINABLE_OP_TYPES, op_facts

from .ops import NodeContext, op_spec

_ONNX_DOMAINS = ("", "ai.onnx")


class _Step(NamedTuple):
    kernel: object
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    free: tuple[str, ...]  # runtime tensors whose last reader is this step
    transforms: tuple[tuple[int, str], ...]  # (input index, key in input_transforms)
    needs_training: bool


def _sanitize(name: str, prefix: str, taken: set[str]) -> str:
    base = prefix + re.sub(r"\W", "_", name)
    attr, n = base, 1
    while attr in taken:
        attr, n = f"{base}_{n}", n + 1
    taken.add(attr)
    return attr


def _topological_order(graph: onnx.GraphProto, known: set[str]) -> list[int]:
    """Node indices in an executable order (ONNX requires it, but not every producer obeys)."""
    available = set(known)
    pending = list(range(len(graph.node)))
    order: list[int] = []
    while pending:
        rest = []
        for i in pending:
            if all(not name or name in available for name in graph.node[i].input):
                order.append(i)
                available.update(graph.node[i].output)
            else:
                rest.append(i)
        if len(rest) == len(pending):
            node = graph.node[rest[0]]
            missing = [n for n in node.input if n and n not in available]
            raise ModelLoadError(f"node {node.name or node.op_type!r} reads undefined or cyclic tensors {missing}")
        pending = rest
    return order


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in _ONNX_DOMAINS:
            return entry.version
    raise ModelLoadError("the model imports no default ONNX opset")


class TorchGraph(torch.nn.Module):
    """Runs an ONNX model with torch ops; trainable constants are parameters (see module docstring)."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        self._opset = _default_opset(model)
        self._nodes = list(graph.node)
        self.node_names: list[str] = stable_names(self._nodes)
        self._node_by_name = {name: i for i, name in enumerate(self.node_names)}
        for alias, names in name_table(model).items():  # a name the user knew a node by finds it too
            if len(names) == 1:
                self._node_by_name.setdefault(alias, self._node_by_name[names[0]])
        self._check_supported()

        index = GraphIndex(model)
        constants = self._constant_arrays(graph, index)
        self.input_names: list[str] = [i.name for i in graph.input if i.name not in constants]
        self.output_names: list[str] = [o.name for o in graph.output]
        self._order = _topological_order(graph, set(self.input_names) | set(constants))
        self._read_names = {n for node in self._nodes for n in node.input} | set(self.output_names)
        self._register_constants(constants)

        self.input_transforms = torch.nn.ModuleDict()
        self._transform_keys: dict[tuple[str, int], str] = {}
        self._plan()
        # Tensors that may be baked into a kernel when nothing transforms them; a transform on any
        # other input never changes the plan, only the step that reads it.
        self._static_candidates = set(self._static_names())

    # ----------------------------------------------------------------------------------- setup

    def _check_supported(self) -> None:
        missing = [
            f"{node.op_type} (node {name!r}{'' if node.domain in _ONNX_DOMAINS else ', domain ' + node.domain})"
            for node, name in zip(self._nodes, self.node_names)
            if node.op_type != "Constant" and (node.domain not in _ONNX_DOMAINS or op_spec(node.op_type) is None)
        ]
        if missing:
            raise UnsupportedOpError("the torch executor does not support: " + ", ".join(missing))

    def _constant_arrays(self, graph: onnx.GraphProto, index: GraphIndex) -> dict[str, np.ndarray]:
        """Initializers, Constant-node outputs, and Identity copies of constants.

        torch.onnx deduplicates equal initializers and re-creates the duplicates with Identity
        nodes (an untrained BatchNorm's running mean is the Identity of a zero bias); each such
        output gets its own tensor here so that training one never changes the other.
        """
        arrays = {t.name: index.constant_value(t.name) for t in graph.initializer}
        self._constant_nodes: set[int] = set()
        self._identity_constants: set[str] = set()
        for i, node in enumerate(self._nodes):
            if node.op_type == "Constant":
                value = index.constant_value(node.output[0])
                if value is None:
                    raise UnsupportedOpError(f"Constant node {self.node_names[i]!r}: only numeric values are supported")
                arrays[node.output[0]] = value
            elif node.op_type == "Identity" and node.input[0] in arrays:
                arrays[node.output[0]] = arrays[node.input[0]].copy()
                self._identity_constants.add(node.output[0])
            else:
                continue
            self._constant_nodes.add(i)
        return arrays

    def _constant_roles(self, constants: dict[str, np.ndarray]) -> tuple[set[str], set[str]]:
        """(trainable names, BatchNorm running-statistics names)."""
        uses: dict[str, list[tuple[str, bool]]] = defaultdict(list)  # name -> (op_type, is data input)
        running: set[str] = set()
        for i, node in enumerate(self._nodes):
            if i in self._constant_nodes:
                continue
            spec = op_spec(node.op_type)
            for position, name in enumerate(node.input):
                if name in constants:
                    uses[name].append((node.op_type, position not in spec.static_inputs))
                    if position in op_facts(node.op_type).running_stat_inputs:
                        running.add(name)
        trainable = set()
        for name, array in constants.items():
            data_ops = {op for op, is_data in uses[name] if is_data}
            if name in running or not data_ops or not np.issubdtype(array.dtype, np.floating):
                continue
            if array.size > 1 or data_ops & TRAINABLE_OP_TYPES:  # a 1-channel conv bias is a weight too
                trainable.add(name)
        return trainable, running

    def _register_constants(self, constants: dict[str, np.ndarray]) -> None:
        trainable, running = self._constant_roles(constants)
        taken: set[str] = set()
        self._param_attr: dict[str, str] = {}
        self._buffer_attr: dict[str, str] = {}
        self._running_stats = running
        for name, array in constants.items():
            tensor = torch.from_numpy(np.array(array, copy=True))
            if name in trainable:
                attr = self._param_attr[name] = _sanitize(name, "p_", taken)
                self.register_parameter(attr, torch.nn.Parameter(tensor))
            else:
                attr = self._buffer_attr[name] = _sanitize(name, "b_", taken)
                self.register_buffer(attr, tensor)
        self._attr_names = taken

    # ------------------------------------------------------------------------------------ plan

    def _static_names(self) -> list[str]:
        constant = [n for n in self._buffer_attr if n not in self._running_stats]
        return constant + list(self._folded_attr)

    def _plan(self) -> None:
        """Build kernels, fold all-static nodes, and the refcount plan that frees intermediates."""
        for attr in getattr(self, "_folded_attr", {}).values():
            delattr(self, attr)
            self._attr_names.discard(attr)
        self._folded_attr: dict[str, str] = {}
        static = {n: self._buffers[self._buffer_attr[n]] for n in self._buffer_attr if n not in self._running_stats}
        transformed: dict[int, set[int]] = defaultdict(set)
        for node_name, position in self._transform_keys:
            transformed[self._node_by_name[node_name]].add(position)

        steps: list[_Step] = []
        self._step_of_node: dict[str, int] = {}
        for i in self._order:
            node = self._nodes[i]
            if i in self._constant_nodes:
                continue
            spec = op_spec(node.op_type)
            name = self.node_names[i]
            ctx = NodeContext(
                node,
                name,
                self._opset,
                lambda n: static[n].detach().cpu().numpy() if n in static else None,
                self._constant_shape,
                frozenset(transformed.get(i, ())),
            )
            kernel = spec.builder(ctx)
            self._check_outputs(node, name, spec.num_outputs)
            if not spec.needs_training and i not in transformed and all(not n or n in static for n in node.input):
                self._fold(node, kernel, static)
                continue
            transforms = tuple((p, self._transform_keys[(name, p)]) for p in sorted(transformed.get(i, ())))
            self._step_of_node[name] = len(steps)
            steps.append(_Step(kernel, tuple(node.input), tuple(node.output), (), transforms, spec.needs_training))
        self._steps = self._with_free_lists(steps)
        self._param_sources = list(self._param_attr.items())
        self._buffer_sources = [(n, a) for n, a in {**self._buffer_attr, **self._folded_attr}.items()]

    def _fold(self, node: onnx.NodeProto, kernel, static: dict[str, torch.Tensor]) -> None:
        """Run a node whose inputs are all static buffers once, at plan time, with its own torch kernel.

        This is not graph/fold_constants.py's job: which inputs are static is decided here (trainable weights are
        parameters and must stay differentiable, BN running statistics change in training), the plan is rebuilt
        whenever an input transform is attached (a transformed input is no longer static), and the results are
        non-persistent buffers that follow the module's device and dtype. The ONNX graph is never changed.
        """
        with torch.no_grad():
            result = kernel(*[static[n] if n else None for n in node.input])
        results = (result,) if isinstance(result, torch.Tensor) else tuple(result)
        for out, value in zip(node.output, results):
            if out:
                attr = self._folded_attr[out] = _sanitize(out, "f_", self._attr_names)
                self.register_buffer(attr, value, persistent=False)
                static[out] = value

    def _check_outputs(self, node: onnx.NodeProto, name: str, produced: int | None) -> None:
        if produced is None:
            return
        extra = [out for out in node.output[produced:] if out and out in self._read_names]
        if extra:
            raise UnsupportedOpError(f"{node.op_type} node {name!r}: outputs {extra} are not supported")

    def _with_free_lists(self, steps: list[_Step]) -> list[_Step]:
        constants = set(self._param_attr) | set(self._buffer_attr) | set(self._folded_attr)
        last_reader: dict[str, int] = {}
        for position, step in enumerate(steps):
            for name in (*step.inputs, *step.outputs):
                if name and name not in constants:
                    last_reader[name] = position
        keep = set(self.output_names)
        free: dict[int, list[str]] = defaultdict(list)
        for name, position in last_reader.items():
            if name not in keep:
                free[position].append(name)
        return [step._replace(free=tuple(free[p])) for p, step in enumerate(steps)]

    def _constant_shape(self, name: str) -> tuple[int, ...] | None:
        tensor = self._constant_tensor(name)
        return None if tensor is None else tuple(tensor.shape)

    def _constant_tensor(self, name: str) -> torch.Tensor | None:
        if name in self._param_attr:
            return self._parameters[self._param_attr[name]]
        if name in self._buffer_attr:
            return self._buffers[self._buffer_attr[name]]
        if name in self._folded_attr:
            return self._buffers[self._folded_attr[name]]
        return None

    # --------------------------------------------------------------------------------- forward

    def forward(self, feeds: dict[str, torch.Tensor], capture: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        """Returns every graph output plus each captured intermediate tensor, keyed by ONNX tensor name."""
        env: dict[str, torch.Tensor] = {}
        parameters, buffers = self._parameters, self._buffers
        for name, attr in self._param_sources:
            env[name] = parameters[attr]
        for name, attr in self._buffer_sources:
            env[name] = buffers[attr]
        for name in self.input_names:
            if name not in feeds:
                raise DataError(f"missing model input {name!r}; the model's inputs are {self.input_names}")
            env[name] = feeds[name]
        keep = set(capture)
        captured: dict[str, torch.Tensor] = {n: env[n] for n in keep if n in env}
        training = self.training
        transforms = self.input_transforms

        for kernel, inputs, outputs, free, step_transforms, needs_training in self._steps:
            args = [env[n] if n else None for n in inputs]
            for position, key in step_transforms:
                args[position] = transforms[key](args[position])
            result = kernel(training, *args) if needs_training else kernel(*args)
            if isinstance(result, torch.Tensor):
                env[outputs[0]] = result
            else:
                for name, value in zip(outputs, result):
                    if name:
                        env[name] = value
            if keep:
                captured.update((n, env[n]) for n in outputs if n in keep)
            for name in free:
                env.pop(name, None)

        missing = keep - captured.keys()
        if missing:
            raise ConfigError(f"cannot capture {sorted(missing)}: no such tensor in the graph")
        result = {name: env[name] for name in self.output_names}
        result.update(captured)
        return result

    # ------------------------------------------------------------------------------ parameters

    def parameter(self, onnx_name: str) -> torch.Tensor:
        """The nn.Parameter (trainable float constant) or buffer that holds constant ``onnx_name``."""
        tensor = self._constant_tensor(onnx_name) if onnx_name not in self._folded_attr else None
        if tensor is None:
            raise ConfigError(f"{onnx_name!r} is not an initializer or Constant output of the model")
        return tensor

    def parameter_names(self) -> list[str]:
        """ONNX names of the constants that are trainable nn.Parameters, in graph order."""
        return list(self._param_attr)

    # ------------------------------------------------------------------------------ transforms

    def set_input_transform(self, node_name: str, input_index: int, module: torch.nn.Module | None) -> None:
        """Apply `module` to the value feeding input `input_index` of node `node_name` on every forward
        (fake-quant of weights/activations, pruning masks). None removes it. Transforms are submodules."""
        if node_name not in self._node_by_name:
            raise ConfigError(f"no node named {node_name!r} (see TorchGraph.node_names)")
        node_name = self.node_names[self._node_by_name[node_name]]
        node = self._nodes[self._node_by_name[node_name]]
        if self._node_by_name[node_name] in self._constant_nodes:
            raise ConfigError(f"node {node_name!r} only copies a constant; transform the input of its readers instead")
        if not (0 <= input_index < len(node.input)) or not node.input[input_index]:
            raise ConfigError(f"node {node_name!r} ({node.op_type}) has no input {input_index}")
        slot = (node_name, input_index)
        if module is None:
            if slot not in self._transform_keys:
                return
            del self.input_transforms[self._transform_keys.pop(slot)]
        else:
            if slot not in self._transform_keys:
                self._transform_keys[slot] = _sanitize(f"{node_name}__in{input_index}", "t_", self._attr_names)
            self.input_transforms[self._transform_keys[slot]] = module
        if node.input[input_index] in self._static_candidates:
            self._plan()  # the value was baked into kernels or folded: rebuild around the transform
            return
        position = self._step_of_node[node_name]
        transforms = tuple(
            (p, self._transform_keys[(node_name, p)])
            for p in range(len(node.input))
            if (node_name, p) in self._transform_keys
        )
        self._steps[position] = self._steps[position]._replace(transforms=transforms)

    # ------------------------------------------------------------------------------ write back

    def write_back(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of `model` whose initializers hold the current parameter and buffer values (BN running stats too)."""
        out = onnx.ModelProto()
        out.CopyFrom(model)
        values = {**self._param_attr, **self._buffer_attr}
        store = {**self._buffers, **self._parameters}
        for tensor in out.graph.initializer:
            if tensor.name in values:
                tensor.CopyFrom(numpy_helper.from_array(self._to_numpy(store[values[tensor.name]]), tensor.name))
        for node in out.graph.node:
            if node.op_type == "Constant" and node.output[0] in values:
                value = self._to_numpy(store[values[node.output[0]]])
                del node.attribute[:]
                node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(value)))
        # Identity copies of constants become initializers of the same name: they may now differ.
        copies = [n for n in out.graph.node if n.op_type == "Identity" and n.output[0] in self._identity_constants]
        for node in copies:
            name = node.output[0]
            out.graph.node.remove(node)
            out.graph.initializer.append(numpy_helper.from_array(self._to_numpy(store[values[name]]), name))
        return out

    @staticmethod
    def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy()
