"""Pruning and sparsity on ONNX graphs: channel groups and physical channel removal (groups, criteria,
channel), unstructured and GMP sparsity (unstructured), 2:4 sparsity (asp), attention heads and FFN
neurons (transformer), and the masks that training applies (masks)."""
