"""Execution of ONNX graphs: ONNX Runtime sessions and a differentiable PyTorch executor.

`TorchGraph` is the public name of the executor; it is resolved on first use (PEP 562) because the executor's
modules import the op registry, which imports this package first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TorchGraph"]


def __getattr__(name: str) -> Any:
    if name == "TorchGraph":
        from autocompress.runtime.torch_graph import TorchGraph  # noqa: PLC0415

        return TorchGraph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
