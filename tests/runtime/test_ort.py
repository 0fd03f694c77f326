import numpy as np
import onnx
import pytest

from autocompress.errors import ConfigError, ModelLoadError
from autocompress.graph import large
from autocompress.graph.large import WeightsLayout
from autocompress.runtime.ort import Predictor, SharedWeightsSession, create_session, measure_latency, resolve_hardware


def test_hardware_targets():
    assert resolve_hardware("cpu").providers == ("CPUExecutionProvider",)
    edge = resolve_hardware("SD710")
    assert not edge.measured and "proxy" in edge.note
    with pytest.raises(ConfigError, match="unknown deploy_hardware"):
        resolve_hardware("toaster")


def test_gpu_without_gpu_runtime_is_a_clear_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a GPU runtime is installed")
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        resolve_hardware("gpu")


def test_predictor_and_latency(tiny_cnn):
    model = onnx.load(str(tiny_cnn))
    x = np.zeros((2, 3, 16, 16), np.float32)
    out = Predictor(model)({"x": x})
    assert out[0].shape == (2, 10)
    assert Predictor(model)([x])[0].shape == (2, 10)
    lat = measure_latency(model, {"x": x[:1]}, "cpu", threads=1, warmup=1, runs=5)
    assert lat.runs == 5 and 0 < lat.median_ms <= lat.p90_ms


@pytest.fixture()
def size_bounds(monkeypatch) -> list[int]:
    """One entry per size_bound call: the walk over every initializer that decides a model's weights layout."""
    calls: list[int] = []
    real = large.size_bound

    def counting(model: onnx.ModelProto) -> int:
        calls.append(1)
        return real(model)

    monkeypatch.setattr(large, "size_bound", counting)
    return calls


def test_a_session_decides_the_weights_layout_once_or_takes_it_as_given(tiny_cnn, size_bounds):
    model = onnx.load(str(tiny_cnn))
    feed = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    measure_latency(model, feed, threads=1, warmup=1, runs=5)
    assert len(size_bounds) == 1
    Predictor(model)(feed)
    assert len(size_bounds) == 2
    measure_latency(model, feed, threads=1, warmup=1, runs=5, layout=WeightsLayout.INLINE)
    Predictor(model, layout=WeightsLayout.INLINE)(feed)
    create_session(model, outputs=[model.graph.node[0].output[0]], layout=WeightsLayout.INLINE)
    assert len(size_bounds) == 2  # a layout given is taken as it is


def test_a_given_external_layout_runs_the_model_from_a_stub_copy(tiny_cnn, size_bounds):
    model = onnx.load(str(tiny_cnn))
    feed = {"x": np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)}
    external = Predictor(model, layout=WeightsLayout.EXTERNAL)
    assert isinstance(external.session, SharedWeightsSession) and size_bounds == []
    np.testing.assert_allclose(external(feed)[0], Predictor(model)(feed)[0], rtol=1e-5, atol=1e-6)


def _one_op_model(op: str, dtype: int, domain: str = "", opset: int = 14) -> onnx.ModelProto:
    h = onnx.helper
    graph = h.make_graph(
        [h.make_node(op, ["x"], ["y"], domain=domain)],
        "g",
        [h.make_tensor_value_info("x", dtype, [1, 3])],
        [h.make_tensor_value_info("y", dtype, [1, 3])],
    )
    imports = [h.make_opsetid("", opset)] + ([h.make_opsetid(domain, 1)] if domain else [])
    return h.make_model(graph, opset_imports=imports, ir_version=8)


def test_custom_domain_op_is_a_model_load_error_naming_op_domain_and_type(tmp_path):
    model = _one_op_model("Foo", onnx.TensorProto.FLOAT, domain="my.ops")
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    for source in (model, path):
        with pytest.raises(
            ModelLoadError, match=r"node writing 'y' \(op Foo, domain my.ops, input type tensor\(float\)\)"
        ):
            create_session(source)
    with pytest.raises(ModelLoadError, match="op Foo"):
        Predictor(model)


def test_op_without_a_kernel_for_its_type_is_a_model_load_error():
    model = _one_op_model("Relu", onnx.TensorProto.INT16)  # opset 14 allows int16; ONNX Runtime has no such kernel
    model.graph.node[0].name = "act"
    with pytest.raises(
        ModelLoadError,
        match=r"node 'act' \(op Relu, domain ai.onnx, input type tensor\(int16\)\) has "
        "no ONNX Runtime kernel",
    ):
        measure_latency(model, {"x": np.zeros((1, 3), np.int16)}, runs=1, warmup=0)


def test_type_the_op_does_not_accept_is_a_model_load_error():
    model = _one_op_model("Relu", onnx.TensorProto.UINT16)
    with pytest.raises(
        ModelLoadError, match=r"\(op Relu, domain ai.onnx, input type tensor\(uint16\)\) does not accept"
    ):
        create_session(model)
