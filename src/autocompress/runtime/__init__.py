"""Execution of ONNX graphs: ONNX Runtime sessions and a differentiable PyTorch executor."""
