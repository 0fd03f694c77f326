"""Sessions of models over 2 GB run on one shared copy of the weights, checked on small models that count as large."""

import gc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autocompress.graph import large
from autocompress.quant import statistics as statistics_module
from autocompress.quant.statistics import collect_statistics
from autocompress.runtime import ort as ort_runtime
from autocompress.runtime.ort import SHARED_WEIGHTS, Predictor, create_session, measure_latency

WIDTH = 48


def _fusable_model() -> onnx.ModelProto:
    """Conv -> BatchNormalization -> Mul/Add by constants -> MatMul + Add: ORT's optimizers fold the BN and the
    affine constants into the Conv's weights and fuse MatMul + Add, reading the weights they rewrite."""
    rng = np.random.default_rng(0)

    def weight(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        weight("conv_w", 16, 3, 3, 3),
        weight("conv_b", 16),
        weight("bn_scale", 16),
        weight("bn_bias", 16),
        weight("bn_mean", 16),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), "bn_var"),
        weight("mul", 16, 1, 1),
        weight("add", 16, 1, 1),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
        weight("fc_w", 16 * 8 * 8, 10, scale=0.05),
        weight("fc_b", 10),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"]),
        helper.make_node("Mul", ["bn", "mul"], ["m"]),
        helper.make_node("Add", ["m", "add"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Reshape", ["r", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["mm"]),
        helper.make_node("Add", ["mm", "fc_b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fusable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _chain(width: int = WIDTH, layers: int = 3, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), f"w{i}")
        for i in range(layers)
    ]
    nodes, current = [], "x"
    for i in range(layers):
        nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"]),
            helper.make_node("Relu", [f"mm{i}"], [f"relu{i}"]),
        ]
        current = f"relu{i}"
    x, y = (helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", width]) for name in ("x", current))
    graph = helper.make_graph(nodes, "chain", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.fixture()
def counts_as_large(monkeypatch):
    monkeypatch.setattr(large, "PROTOBUF_LIMIT", 1000)


def _feed(width: int = WIDTH) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((2, width), dtype=np.float32)}


def test_sessions_of_a_large_model_share_one_array_per_weight(counts_as_large):
    model = _chain()
    expected = _feed()["x"]
    for weight in model.graph.initializer:
        expected = np.maximum(expected @ numpy_helper.to_array(weight), 0)
    first, second = Predictor(model), Predictor(model)
    pointers = [[value.data_ptr() for value in p.session.shared_weights] for p in (first, second)]
    assert len(pointers[0]) == 3 and pointers[0] == pointers[1]  # the same buffers, not copies
    assert len(SHARED_WEIGHTS) == 3
    np.testing.assert_allclose(first(_feed())[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second(_feed())[0], expected, rtol=1e-5, atol=1e-6)

    changed = _chain(seed=0)  # the same names, types and shapes; one weight's bytes differ
    w1 = changed.graph.initializer[1]
    w1.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w1) * np.float32(2), "w1"))
    third = Predictor(changed)
    assert [v.data_ptr() for v in third.session.shared_weights] != pointers[0]
    assert third.session.shared_weights[0].data_ptr() == pointers[0][0]
    np.testing.assert_allclose(third(_feed())[0], 2 * expected, rtol=1e-5, atol=1e-6)  # Relu is homogeneous

    del first, second, third
    gc.collect()
    assert len(SHARED_WEIGHTS) == 0  # the arrays go with the last session using them


def test_weights_that_ort_rewrites_give_the_same_outputs(monkeypatch):
    model = _fusable_model()
    x = {"x": np.random.default_rng(2).standard_normal((2, 3, 8, 8), dtype=np.float32)}
    expected = Predictor(model)(x)[0]
    monkeypatch.setattr(large, "PROTOBUF_LIMIT", 1000)
    shared = Predictor(model)
    assert len(shared.session.shared_weights) == 2  # conv_w, fc_w; the small BN vectors stay inline
    np.testing.assert_allclose(shared(x)[0], expected, rtol=1e-5, atol=1e-5)


def test_calibration_and_evaluation_of_a_large_model_use_the_same_arrays(counts_as_large, monkeypatch):
    model = _chain()
    predictor = Predictor(model)
    calibration_sessions = []

    def recording(*args, **kwargs):
        calibration_sessions.append(create_session(*args, **kwargs))
        return calibration_sessions[-1]

    monkeypatch.setattr(statistics_module, "create_session", recording)
    stats = collect_statistics(model, [_feed()], ["relu0", "relu2"])
    calibration = calibration_sessions[0]
    assert [o.name for o in calibration.get_outputs()] == ["relu2", "relu0"]  # relu0 added, relu2 kept once
    shared = [v.data_ptr() for v in predictor.session.shared_weights]
    assert [v.data_ptr() for v in calibration.shared_weights] == shared
    assert stats.abs_max[stats.index("relu2"), 0] == pytest.approx(float(np.abs(predictor(_feed())[0]).max()), rel=1e-5)
    assert [o.name for o in model.graph.output] == ["relu2"]  # the caller's model did not gain the outputs


def test_latency_of_a_large_model_is_measured_with_prepacking_on_its_own_weights(counts_as_large, monkeypatch):
    configs = []
    real = ort_runtime.ort.SessionOptions.add_session_config_entry

    def recording(options, key, value):
        configs.append((key, value))
        return real(options, key, value)

    monkeypatch.setattr(ort_runtime.ort.SessionOptions, "add_session_config_entry", recording)
    model = _chain()
    measure_latency(model, _feed(), threads=1, warmup=1, runs=5)
    assert configs == [] and len(SHARED_WEIGHTS) == 0  # ORT's defaults, from the temporary file
    predictor = Predictor(model)
    assert configs == [("session.disable_prepacking", "1")] and len(predictor.session.shared_weights) == 3


def test_small_models_keep_ort_defaults_and_get_outputs_in_appended_bytes():
    model = _chain()
    session = create_session(model, outputs=["relu0", "relu2"])
    assert not isinstance(session, ort_runtime.SharedWeightsSession)
    assert [o.name for o in session.get_outputs()] == ["relu2", "relu0"]
    with ort_runtime.model_source(model, ["relu1"]) as source:
        parsed = onnx.load_from_string(source)  # the model's bytes with a second message appended: parsed as one
    assert [o.name for o in parsed.graph.output] == ["relu2", "relu1"]
    assert parsed.graph.initializer == model.graph.initializer and parsed.graph.node == model.graph.node


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident set size from /proc")
def test_two_sessions_and_calibration_of_a_large_model_hold_its_weights_once(counts_as_large):
    model = _chain(width=2048, layers=4)  # 64 MiB of weights
    weights = 4 * 2048 * 2048 * 4
    gc.collect()
    before = _rss_bytes()
    first, second = Predictor(model), Predictor(model)
    first(_feed(2048)), second(_feed(2048))
    collect_statistics(model, [_feed(2048)] * 2, ["relu0", "relu3"])
    grown = _rss_bytes() - before
    assert grown < 1.25 * weights, f"{grown / 2**20:.0f} MiB for {weights / 2**20:.0f} MiB of weights"
