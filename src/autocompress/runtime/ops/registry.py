"""Registry of ONNX op implementations for the torch executor.

Each op type maps to a *builder*: it reads the node's attributes (and the values of its static
inputs) once, when the graph is built, and returns a *kernel* — a plain function of the runtime
input tensors. Forward then only calls kernels, so attribute parsing never costs step time.

Kernels must capture only python values (never tensors) so that ``module.to(device)`` and
``copy.deepcopy`` of the executor stay correct.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import torch

from autocompress.errors import UnsupportedOpError

Kernel = Callable[..., "torch.Tensor | tuple[torch.Tensor, ...]"]


class NodeContext:
    """What a builder may know about a node: attributes, opset, and values of static inputs."""

    def __init__(
        self,
        node: onnx.NodeProto,
        name: str,
        opset: int,
        static_value: Callable[[str], np.ndarray | None],
        constant_shape: Callable[[str], tuple[int, ...] | None],
        transformed_inputs: frozenset[int] = frozenset(),
    ):
        self.node = node
        self.name = name
        self.opset = opset
        self._static_value = static_value
        self._constant_shape = constant_shape
        self._transformed = transformed_inputs
        self._attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def attr(self, name: str, default=None):
        value = self._attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def has_input(self, index: int) -> bool:
        return index < len(self.node.input) and bool(self.node.input[index])

    @property
    def num_inputs(self) -> int:
        return len(self.node.input)

    def static(self, index: int) -> np.ndarray | None:
        """Value of input ``index`` if it never changes (constant, not trainable), else None.

        Inputs that pass through an input transform are never static: the transform may change them.
        """
        if not self.has_input(index) or index in self._transformed:
            return None
        return self._static_value(self.node.input[index])

    def constant_shape(self, index: int) -> tuple[int, ...] | None:
        """Shape of input ``index`` if it is a constant or a parameter (e.g. a weight), else None."""
        return self._constant_shape(self.node.input[index]) if self.has_input(index) else None

    def static_ints(self, index: int) -> list[int] | None:
        value = self.static(index)
        return None if value is None else [int(v) for v in value.reshape(-1)]

    def unsupported(self, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"{self.node.op_type} node {self.name!r}: {what} is not supported by the torch executor"
        )


Builder = Callable[[NodeContext], Kernel]


@dataclass(frozen=True)
class OpSpec:
    builder: Builder
    # Input positions that carry shapes, axes, indices or bounds rather than data: constants there
    # are never trainable and their values may be baked into the kernel.
    static_inputs: frozenset[int]
    # Kernel needs the module's training flag as its first argument (BatchNorm, Dropout).
    needs_training: bool
    # How many leading node outputs the kernel produces; later outputs must be unused.
    num_outputs: int | None


_REGISTRY: dict[str, OpSpec] = {}


def register(
    *op_types: str,
    static_inputs: Sequence[int] = (),
    needs_training: bool = False,
    num_outputs: int | None = 1,
) -> Callable[[Builder], Builder]:
    """Register ``builder`` for ``op_types``; ``num_outputs=None`` means one per node output."""

    def wrap(builder: Builder) -> Builder:
        for op_type in op_types:
            _REGISTRY[op_type] = OpSpec(builder, frozenset(static_inputs), needs_training, num_outputs)
        return builder

    return wrap


def op_spec(op_type: str) -> OpSpec | None:
    return _REGISTRY.get(op_type)


def supported_op_types() -> list[str]:
    return sorted(_REGISTRY)


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis
