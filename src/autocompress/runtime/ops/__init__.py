"""ONNX op implementations for the torch executor, one module per op family.

Importing this package fills the registry; ``op_spec(op_type)`` returns the implementation.
"""

from . import activation, conv, elementwise, matmul, norm, pool, reduce, resize, shape, tensor  # noqa: F401
from .registry import Kernel, NodeContext, OpSpec, op_spec, register, supported_op_types
from .tensor import torch_dtype

__all__ = ["Kernel", "NodeContext", "OpSpec", "op_spec", "register", "supported_op_types", "torch_dtype"]
