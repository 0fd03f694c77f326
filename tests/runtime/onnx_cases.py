"""Tiny single-node ONNX models and a comparison of TorchGraph against ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper

from autocompress.runtime.torch_graph import TorchGraph


@dataclass
class Case:
    """One node: `feeds` become graph inputs, `consts` initializers; `inputs` fixes the node's input order."""

    op: str
    feeds: dict[str, np.ndarray]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    opset: int = 17
    inputs: list[str] | None = None
    outputs: int = 1

    def model(self) -> onnx.ModelProto:
        names = self.inputs if self.inputs is not None else [*self.feeds, *self.consts]
        outs = [f"y{i}" for i in range(self.outputs)]
        node = helper.make_node(self.op, names, outs, name="node", **self.attrs)
        graph = helper.make_graph(
            [node],
            "case",
            [
                helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                for n, v in self.feeds.items()
            ],
            [onnx.ValueInfoProto(name=o) for o in outs],
            [numpy_helper.from_array(v, n) for n, v in self.consts.items()],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def run_torch(graph: TorchGraph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = graph({k: torch.from_numpy(v) for k, v in feeds.items()})
    return [out[n].numpy() for n in graph.output_names]


def assert_matches_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], atol: float = 1e-5) -> None:
    expected = run_ort(model, feeds)
    actual = run_torch(TorchGraph(model).eval(), feeds)
    for want, got in zip(expected, actual):
        assert got.shape == want.shape, (got.shape, want.shape)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5)


def rand(*shape: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)
