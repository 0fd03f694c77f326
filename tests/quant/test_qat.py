"""QAT on the graph: fake-quant placement follows the QDQ plan, and the export computes what training computed."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from autocompress.errors import ConfigError
from autocompress.quant.fake_quant import ObserverFakeQuant, PACTFakeQuant
from autocompress.quant.qat import FakeQuantSettings, calibrated_ranges, export_qat, insert_fake_quant
from autocompress.quant.qdq import QDQOptions, plan_quantization, write_qdq_model
from autocompress.quant.weights import quantize_weight
from autocompress.runtime.torch_graph import TorchGraph

from .conftest import make_batches
from .test_ptq import INT8_CONV


def _session(model: onnx.ModelProto, optimize: bool = True, save_to=None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _trained(model, options, settings=FakeQuantSettings(), steps=6, lr=0.02):
    """A TorchGraph with fake quant, trained a few steps to move weights and ranges off their start."""
    graph = TorchGraph(model)
    handles = insert_fake_quant(graph, model, options, calibrated_ranges(model, options, make_batches(3)), settings)
    optimizer = torch.optim.Adam(graph.parameters(), lr=lr)
    graph.train()
    for batch in make_batches(steps, seed=5):
        x = torch.from_numpy(batch["x"])
        loss = (graph({"x": x})["y"] - torch.linspace(-1, 1, 10)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return graph.eval(), handles


def _fake_quant_outputs(graph, x):
    with torch.no_grad():
        return graph({"x": torch.from_numpy(x)})["y"].numpy()


def test_quantizers_sit_exactly_where_the_qdq_writer_quantizes(cnn_model):
    options = QDQOptions(is_full_quantize=True)
    graph = TorchGraph(cnn_model)
    handles = insert_fake_quant(graph, cnn_model, options)
    plan = plan_quantization(cnn_model, options)
    assert list(handles.activations) == plan.activation_tensors
    assert set(handles.weights) == {p.weight[1] for p in plan.nodes if p.weight}
    # every reader of a quantized tensor, planned or not, gets it quantized (the writer rewires them all)
    readers = sum(list(n.input).count(t) for n in cnn_model.graph.node for t in plan.activation_tensors)
    assert len(graph.input_transforms) == readers + len(handles.weights)


def test_a_shared_tensor_is_observed_once_per_forward(cnn_model):
    graph = TorchGraph(cnn_model).train()
    options = QDQOptions(is_full_quantize=True)
    settings = FakeQuantSettings(activation_quantize_type="range_abs_max", window_size=4)
    handles = insert_fake_quant(graph, cnn_model, options, settings=settings)
    for batch in make_batches(2):
        graph({"x": torch.from_numpy(batch["x"])})
    shared = handles.activations["/Relu_output_0"]  # read by conv1 and by the residual Add
    assert isinstance(shared, ObserverFakeQuant) and int(shared.filled) == 2


def test_export_before_training_is_the_ptq_model(cnn_model):
    options = QDQOptions()
    ranges = calibrated_ranges(cnn_model, options, make_batches(3))
    graph = TorchGraph(cnn_model)
    handles = insert_fake_quant(graph, cnn_model, options, ranges)
    exported = export_qat(cnn_model, graph, handles, options)
    expected, _ = write_qdq_model(cnn_model, ranges, options)
    assert exported.SerializeToString() == expected.SerializeToString()


@pytest.mark.parametrize(
    "options, settings",
    [
        (QDQOptions(), FakeQuantSettings()),
        (QDQOptions(symmetric_activations=True, weight_quantize_type="abs_max"), FakeQuantSettings()),
        (QDQOptions(is_full_quantize=True), FakeQuantSettings(use_pact=True)),
        (QDQOptions(symmetric_activations=True), FakeQuantSettings(use_pact=True, activation_quantize_type="abs_max")),
    ],
    ids=["u8-moving-average", "s8-per-tensor-weights", "u8-pact-full", "s8-pact"],
)
def test_exported_model_computes_what_the_fake_quant_graph_computed(cnn_model, options, settings):
    graph, handles = _trained(cnn_model, options, settings)
    exported = export_qat(cnn_model, graph, handles, options)
    x = np.random.default_rng(11).standard_normal((400, 3, 24, 24)).astype(np.float32)
    expected = _fake_quant_outputs(graph, x)
    # Q/DQ executed as written: the same arithmetic, up to float summation order
    reference = _session(exported, optimize=False).run(None, {"x": x})[0]
    np.testing.assert_allclose(reference, expected, atol=2e-5)
    # ORT's int8 kernels requantize internally: top-1 agrees and logits stay within about one output step
    optimized = _session(exported).run(None, {"x": x})[0]
    assert np.mean(optimized.argmax(1) == expected.argmax(1)) >= 0.995
    step = (expected.max() - expected.min()) / 255
    assert np.abs(optimized - expected).max() <= 1.5 * step
    trained_weight = graph.parameter("head.weight").detach().numpy()
    assert not np.allclose(
        trained_weight,
        onnx.numpy_helper.to_array(next(t for t in cnn_model.graph.initializer if t.name == "head.weight")),
    ), "training changed nothing"


def test_pact_bounds_are_the_exported_ranges(cnn_model):
    options = QDQOptions()
    graph, handles = _trained(cnn_model, options, FakeQuantSettings(use_pact=True), lr=0.05)
    exported = export_qat(cnn_model, graph, handles, options)
    values = {t.name: onnx.numpy_helper.to_array(t) for t in exported.graph.initializer}
    for name, quantizer in handles.activations.items():
        assert isinstance(quantizer, PACTFakeQuant)
        low, high = quantizer.exported_range()
        assert values[f"{name}_scale"] == np.float32((high - min(low, 0.0)) / 255)


def test_every_conv_runs_as_an_int8_kernel(cnn_model, tmp_path):
    options = QDQOptions()
    graph, handles = _trained(cnn_model, options)
    _session(export_qat(cnn_model, graph, handles, options), save_to=tmp_path / "optimized.onnx")
    ops = [(n.domain, n.op_type) for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ("", "Conv") not in ops
    assert sum(op in INT8_CONV for op in ops) == sum(n.op_type == "Conv" for n in cnn_model.graph.node)


def _sparse_cnn(cnn_model) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(cnn_model.SerializeToString())
    rng = np.random.default_rng(3)
    for tensor in model.graph.initializer:
        value = onnx.numpy_helper.to_array(tensor)
        if value.ndim == 4:
            tensor.CopyFrom(onnx.numpy_helper.from_array(value * (rng.random(value.shape) > 0.5), tensor.name))
    return model


@pytest.mark.parametrize("sparse_model", [True, False])
def test_sparse_model_keeps_its_zeros(cnn_model, sparse_model):
    model = _sparse_cnn(cnn_model)
    options = QDQOptions()
    graph, handles = _trained(model, options, FakeQuantSettings(sparse_model=sparse_model), lr=0.05)
    exported = export_qat(model, graph, handles, options)
    values = {t.name: onnx.numpy_helper.to_array(t) for t in exported.graph.initializer}
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.dims and len(t.dims) == 4}
    kept = [np.array_equal(values[f"{name}_quantized"] == 0, w == 0) for name, w in weights.items()]
    assert all(kept) if sparse_model else not any(kept)
    for name in weights:  # what was exported is the trained weight on the trained scales
        trained = graph.parameter(name).detach().numpy()
        expected = quantize_weight(trained, values[f"{name}_scale"], 0, 8)
        np.testing.assert_array_equal(values[f"{name}_quantized"], expected)


def test_quantize_op_types_matching_nothing_is_a_config_error(cnn_model):
    with pytest.raises(ConfigError, match="match no quantizable node"):
        insert_fake_quant(TorchGraph(cnn_model), cnn_model, QDQOptions(quantize_op_types=("ConvTranspose",)))
