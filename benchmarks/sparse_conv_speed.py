"""Can unstructured sparsity make a 1x1 convolution faster on CPU with ONNX Runtime? Measured per layer.

ORT's CPU Conv/MatMul kernels are dense: zeros cost as much as any weight. The one sparse kernel the CPU build
has is com.microsoft SparseToDenseMatMul (sparse A times dense B). A 1x1 conv at batch 1 is exactly
W[Cout, Cin] @ X[Cin, H*W], so it maps onto that op without transposes. ORT densifies `sparse_initializer`s at
load time, so the weight has to be a graph input of type sparse_tensor, fed as an OrtValue (COO or CSR).
SciPy's CSR product is timed too, as a plain sparse kernel outside ORT.

    PYTHONPATH=src .venv/bin/python benchmarks/sparse_conv_speed.py [--ratios 0.75,0.9] [--layers 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "src")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import scipy.sparse  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from autocompress.graph.index import GraphIndex, attribute  # noqa: E402
from autocompress.graph.prepare import prepare_model  # noqa: E402
from autocompress.prune.unstructured import unstructured_masks  # noqa: E402

OPSETS = [helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]
KERNELS = ("dense Conv", "ORT COO", "ORT CSR", "scipy CSR")


@dataclass(frozen=True)
class Conv1x1Layer:
    weight_name: str
    weight: np.ndarray  # [Cout, Cin]
    height: int
    width: int

    @property
    def macs(self) -> int:
        return self.weight.size * self.height * self.width


@dataclass(frozen=True)
class LayerTiming:
    layer: Conv1x1Layer
    sparsity: float
    ms: dict[str, float]  # kernel -> median ms

    def row(self) -> list[object]:
        cout, cin = self.layer.weight.shape
        return [
            self.layer.weight_name,
            f"{cout}x{cin}",
            self.layer.height * self.layer.width,
            f"{self.sparsity:.2f}",
            *(f"{self.ms[k]:.3f}" for k in KERNELS),
        ]


def heaviest_conv1x1(model: onnx.ModelProto, input_shapes: Mapping[str, list[int]], count: int) -> list[Conv1x1Layer]:
    """The `count` 1x1 convs (group 1, stride 1, constant weight) with the most MACs at `input_shapes`."""
    model = prepare_model(model, dict(input_shapes))
    index = GraphIndex(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    shapes.update({v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input})
    layers = []
    for node in model.graph.node:
        if node.op_type != "Conv" or not index.is_constant(node.input[1]):
            continue
        weight = index.constant_value(node.input[1])
        strides = attribute(node, "strides", [1, 1])
        if weight.shape[2:] != (1, 1) or attribute(node, "group", 1) != 1 or any(s != 1 for s in strides):
            continue
        shape = shapes.get(node.input[0])
        if shape and len(shape) == 4 and all(shape):
            layers.append(Conv1x1Layer(node.input[1], weight[:, :, 0, 0].copy(), shape[2], shape[3]))
    return sorted(layers, key=lambda layer: -layer.macs)[:count]


def dense_conv_model(weight: np.ndarray, height: int, width: int) -> onnx.ModelProto:
    cout, cin = weight.shape
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "conv1x1",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, height, width])],
        initializer=[numpy_helper.from_array(weight[:, :, None, None], "w")],
    )
    return helper.make_model(graph, opset_imports=OPSETS[:1], ir_version=8)


def sparse_matmul_model(cout: int, cin: int, columns: int) -> onnx.ModelProto:
    """Y[Cout, HW] = SparseToDenseMatMul(W sparse [Cout, Cin], X [Cin, HW]); W is a sparse graph input."""
    weight = onnx.ValueInfoProto(name="w")
    sparse_type = weight.type.sparse_tensor_type
    sparse_type.elem_type = TensorProto.FLOAT
    for dim in (cout, cin):
        sparse_type.shape.dim.add().dim_value = dim
    graph = helper.make_graph(
        [helper.make_node("SparseToDenseMatMul", ["w", "x"], ["y"], domain="com.microsoft")],
        "sparse1x1",
        [weight, helper.make_tensor_value_info("x", TensorProto.FLOAT, [cin, columns])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [cout, columns])],
    )
    return helper.make_model(graph, opset_imports=OPSETS, ir_version=8)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _sparse_ortvalue(weight: np.ndarray, layout: str) -> ort.OrtValue:
    device = ort.OrtDevice.make("cpu", 0)
    shape = np.array(weight.shape, np.int64)
    if layout == "coo":
        rows, cols = np.nonzero(weight)
        indices = np.stack([rows, cols], axis=1).astype(np.int64).reshape(-1)  # [nnz, 2] flattened
        tensor = ort.SparseTensor.sparse_coo_from_numpy(shape, weight[rows, cols], indices, device)
    else:
        csr = scipy.sparse.csr_matrix(weight)
        tensor = ort.SparseTensor.sparse_csr_from_numpy(
            shape, csr.data.astype(np.float32), csr.indices.astype(np.int64), csr.indptr.astype(np.int64), device
        )
    return ort.OrtValue.ort_value_from_sparse_tensor(tensor)


def layer_kernels(weight: np.ndarray, height: int, width: int, x: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
    """Every way of computing the 1x1 conv of `x` [1, Cin, H, W]; each returns [Cout, H*W]."""
    cout, cin = weight.shape
    dense = _session(dense_conv_model(weight, height, width))
    sparse = _session(sparse_matmul_model(cout, cin, height * width))
    columns = np.ascontiguousarray(x.reshape(cin, height * width))
    x_value = ort.OrtValue.ortvalue_from_numpy(columns)
    run_options = ort.RunOptions()

    def ort_sparse(layout: str) -> Callable[[], np.ndarray]:
        # The private binding is the only Python entry that accepts sparse OrtValues as inputs.
        feeds = {"w": _sparse_ortvalue(weight, layout)._ortvalue, "x": x_value._ortvalue}
        return lambda: sparse._sess.run_with_ort_values(feeds, ["y"], run_options)[0].numpy()

    csr = scipy.sparse.csr_matrix(weight)
    return {
        "dense Conv": lambda: dense.run(None, {"x": x})[0].reshape(cout, -1),
        "ORT COO": ort_sparse("coo"),
        "ORT CSR": ort_sparse("csr"),
        "scipy CSR": lambda: csr @ columns,
    }


def interleaved_median_ms(
    kernels: Mapping[str, Callable[[], object]], seconds: float, rounds: int = 10
) -> dict[str, float]:
    """Median ms per kernel, kernels run in rotating order each round so machine load hits all alike."""
    names = list(kernels)
    estimate = {}
    for name in names:
        kernels[name]()
        start = time.perf_counter()
        kernels[name]()
        estimate[name] = time.perf_counter() - start
    block = max(1, int(seconds / max(sum(estimate.values()), 1e-6) / rounds))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for _ in range(block):
                start = time.perf_counter()
                kernels[name]()
                times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in times.items()}


def magnitude_pruned(weight: np.ndarray, ratio: float) -> np.ndarray:
    """`weight` with its `ratio` smallest magnitudes zeroed (already-zero entries count toward the ratio)."""
    model = dense_conv_model(weight, 1, 1)
    mask = unstructured_masks(model, ratio=ratio, local_sparsity=True)["w"]
    return weight * mask[:, :, 0, 0]


def time_layer(layer: Conv1x1Layer, weight: np.ndarray, seconds: float, seed: int = 0) -> LayerTiming:
    cin = weight.shape[1]
    x = np.random.default_rng(seed).standard_normal((1, cin, layer.height, layer.width)).astype(np.float32)
    kernels = layer_kernels(weight, layer.height, layer.width, x)
    reference = kernels["dense Conv"]()
    for name, kernel in kernels.items():  # every path computes the same conv, or its timing means nothing
        np.testing.assert_allclose(np.asarray(kernel()), reference, rtol=1e-3, atol=1e-3, err_msg=name)
    sparsity = float(np.mean(weight == 0))
    return LayerTiming(layer, sparsity, interleaved_median_ms(kernels, seconds))


def time_sparse_layers(
    layers: list[Conv1x1Layer], extra_ratios: tuple[float, ...], seconds: float = 2.0
) -> list[LayerTiming]:
    """Each layer at its own sparsity and magnitude-pruned further to each of `extra_ratios`."""
    timings = []
    for layer in layers:
        timings.append(time_layer(layer, layer.weight, seconds))
        timings += [time_layer(layer, magnitude_pruned(layer.weight, r), seconds) for r in extra_ratios]
    return timings


def main(argv: list[str] | None = None) -> None:
    from benchmarks.common import markdown_table
    from examples.common.models import DET_MODEL_FILENAME, rapidocr_model_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(rapidocr_model_dir() / DET_MODEL_FILENAME))
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--ratios", default="0.75,0.9")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    layers = heaviest_conv1x1(onnx.load(args.model), {"x": [1, 3, args.size, args.size]}, args.layers)
    ratios = tuple(float(r) for r in args.ratios.split(","))
    timings = [time_layer(layer, magnitude_pruned(layer.weight, r), args.seconds) for layer in layers for r in ratios]
    print(f"onnxruntime {ort.__version__}, 1 thread, median ms")
    print(markdown_table(["weight", "shape", "H*W", "sparsity", *KERNELS], [t.row() for t in timings]))


if __name__ == "__main__":
    main()
