"""Execution of ONNX graphs: ONNX Runtime sessions and a differentiable PyTorch executor."""

from autocompress.runtime.torch_graph import TorchGraph

__all__ = ["TorchGraph"]
