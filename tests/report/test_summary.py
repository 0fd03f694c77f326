"""The per-model figures: parameters of a quantized model, latencies at 1 thread and at all cores."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autocompress.quant.qdq import write_qdq_model
from autocompress.report.summary import latencies_by_threads, summarize
from autocompress.runtime.ort import all_cores, resolve_hardware, thread_counts


def _conv_model() -> onnx.ModelProto:
    """Conv (8x3x3x3 weight, bias 8) -> Relu -> Gemm (10x128 weight, bias 10): 226 + 1290 parameters."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((8, 3, 3, 3)),
        "b": rng.standard_normal(8),
        "fc_w": rng.standard_normal((10, 128)),
        "fc_b": rng.standard_normal(10),
        "shape": np.array([1, 128]),
    }
    initializers = [
        numpy_helper.from_array(v.astype(np.int64 if k == "shape" else np.float32), k) for k, v in weights.items()
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_a_quantized_model_has_the_float_models_params_scales_not_counted():
    model = _conv_model()
    ranges = {"x": (-3.0, 3.0), "r": (0.0, 6.0), "flat": (0.0, 6.0), "y": (-9.0, 9.0)}
    quantized, _ = write_qdq_model(model, ranges)
    per_channel_scales = [t for t in quantized.graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1]
    assert per_channel_scales  # the int8 model does hold rank-1 scales, which are not parameters
    feed = {"x": np.zeros((1, 3, 8, 8), np.float32)}
    hardware = resolve_hardware("cpu")
    before = summarize(model, 1.0, "m", feed, hardware, threads=1)
    after = summarize(quantized, 1.0, "m", feed, hardware, threads=1)
    assert before.params == 8 * 27 + 8 + 10 * 128 + 10 == after.params


def test_both_models_are_measured_at_1_thread_and_at_all_cores():
    model = _conv_model()
    feed = {"x": np.zeros((1, 3, 8, 8), np.float32)}
    counts = thread_counts()
    assert counts[0] == 1 and counts[-1] == all_cores()
    measured = latencies_by_threads([model, model], feed, resolve_hardware("cpu"), counts)
    assert [sorted(m) for m in measured] == [sorted(str(t) for t in counts)] * 2
    assert all(value > 0 for m in measured for value in m.values())
