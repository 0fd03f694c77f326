import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from autocompress.prune.channel import prune_channels
from autocompress.prune.compensate import channel_moments
from autocompress.prune.groups import find_channel_groups
from tests.prune.prune_models import run


def constant_channel_model() -> onnx.ModelProto:
    """x -> Conv(w, b) -> Relu -> Conv(w_next, b_next) -> y, where channel 2 has no weights and bias 5: it carries
    a constant 5 that its small L1 norm does not show."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)
    w[2] = 0.0
    b = np.array([0.1, -0.2, 5.0], np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w_next"),
        numpy_helper.from_array(np.array([0.5, -0.5], np.float32), "b_next"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w_next", "b_next"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 2, 6, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 2, 6, 6])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_mean_compensation_keeps_the_output_of_a_removed_constant_channel():
    model = constant_channel_model()
    x = np.random.default_rng(1).standard_normal((4, 2, 6, 6)).astype(np.float32)
    feeds = [{"x": x}]
    compensated, report = prune_channels(model, 0.34, round_to=1, input_shapes={"x": [4, 2, 6, 6]}, calibration=feeds)
    plain, _ = prune_channels(model, 0.34, round_to=1, input_shapes={"x": [4, 2, 6, 6]})
    weights = {t.name: numpy_helper.to_array(t) for t in compensated.graph.initializer}
    assert weights["w"].shape[0] == 2 and report.compensated == 1
    expected = run(model, x)
    # inside the padded border the constant channel is exactly its mean; at the border the zero padding it no longer
    # sees differs, which is the documented approximation for k x k consumers
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(run(compensated, x)[inner], expected[inner], rtol=1e-4, atol=1e-4)
    assert np.abs(run(plain, x)[inner] - expected[inner]).max() > 1.0


def test_channel_moments_are_the_mean_and_variance_over_batches_and_pixels():
    model = constant_channel_model()
    analysis = find_channel_groups(model, {"x": [4, 2, 6, 6]})
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((4, 2, 6, 6)).astype(np.float32) for _ in range(3)]
    moments = channel_moments(analysis, list(model.graph.input), ["r"], [{"x": b} for b in batches])["r"]
    session_model = onnx.ModelProto()
    session_model.CopyFrom(model)
    session_model.graph.output.extend([helper.make_empty_tensor_value_info("r")])
    session = ort.InferenceSession(session_model.SerializeToString(), providers=["CPUExecutionProvider"])
    r = np.concatenate([session.run(["r"], {"x": b})[0] for b in batches]).astype(np.float64)
    np.testing.assert_allclose(moments.mean, r.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(moments.var, r.var(axis=(0, 2, 3)), rtol=1e-5, atol=1e-9)
    assert moments.var[2] < 1e-9 and abs(moments.mean[2] - 5.0) < 1e-5
