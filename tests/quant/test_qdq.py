import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from autocompress.config import QuantAware, QuantPost, load_config
from autocompress.errors import ConfigError, DataError
from autocompress.graph import large
from autocompress.quant.qdq import QDQOptions, plan_quantization, write_qdq_model
from autocompress.quant.ranges import activation_thresholds
from autocompress.quant.statistics import collect_statistics
from autocompress.runtime.ort import HardwareTarget

from .conftest import ResidualCNN, cosine, export, make_batches, run


def _ranges(model, options=QDQOptions()):
    tensors = plan_quantization(model, options).activation_tensors
    statistics = collect_statistics(model, make_batches(2), tensors)
    return {
        name: (float(statistics.min[i].min()), float(statistics.max[i].max()))
        for i, name in enumerate(statistics.tensor_names)
    } | {name: t for name, t in activation_thresholds(statistics, "abs_max").items() if name not in tensors}


def _optimized_op_types(model, tmp_path, level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [(n.domain, n.op_type) for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]


def test_model_checks_runs_and_keeps_tensor_names(cnn_model):
    quantized, plan = write_qdq_model(cnn_model, _ranges(cnn_model))
    onnx.checker.check_model(quantized, full_check=True)
    assert [i.name for i in quantized.graph.input] == ["x"] and [o.name for o in quantized.graph.output] == ["y"]
    produced = {o for n in quantized.graph.node for o in n.output}
    assert {o for n in cnn_model.graph.node for o in n.output} <= produced
    feed = make_batches(1, seed=7)[0]
    assert cosine(run(quantized, feed), run(cnn_model, feed)) > 0.99
    consumers_inputs = [i for n in quantized.graph.node if n.op_type == "Conv" for i in n.input[:2]]
    assert all(name.endswith("_dequantized") for name in consumers_inputs)


def test_weights_are_int8_initializers_and_the_file_shrinks(cnn_model):
    quantized, _ = write_qdq_model(cnn_model, _ranges(cnn_model))
    initializers = {t.name: t for t in quantized.graph.initializer}
    for name in ("stem.weight", "conv1.weight", "down.weight", "head.weight"):
        assert name not in initializers
        assert initializers[f"{name}_quantized"].data_type == onnx.TensorProto.INT8
    assert quantized.ByteSize() < 0.5 * cnn_model.ByteSize()


def test_biases_are_int32_with_the_accumulator_scale(cnn_model):
    ranges = _ranges(cnn_model)
    quantized, _ = write_qdq_model(cnn_model, ranges)
    values = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
    floats = {t.name: numpy_helper.to_array(t) for t in cnn_model.graph.initializer}
    for layer in ("stem", "conv1", "head"):
        bias, weight = f"{layer}.bias", f"{layer}.weight"
        assert bias not in values and values[f"{bias}_quantized"].dtype == np.int32
        gemm_or_conv = next(n for n in quantized.graph.node if f"{weight}_dequantized" in n.input)
        input_scale = values[gemm_or_conv.input[0].replace("_dequantized", "_scale")]
        np.testing.assert_allclose(values[f"{bias}_scale"], input_scale * values[f"{weight}_scale"], rtol=1e-6)
        assert not values[f"{bias}_zero_point"].any()
        restored = values[f"{bias}_quantized"] * values[f"{bias}_scale"]
        assert np.abs(restored - floats[bias]).max() <= values[f"{bias}_scale"].max() / 2 + 1e-9


def test_symmetric_exports_keep_float_biases(cnn_model):
    options = QDQOptions(symmetric_activations=True)
    quantized, _ = write_qdq_model(cnn_model, _ranges(cnn_model, options), options)
    initializers = {t.name: t for t in quantized.graph.initializer}
    assert initializers["stem.bias"].data_type == onnx.TensorProto.FLOAT


def test_skip_names_and_patterns_leave_nodes_float(cnn_model):
    conv1 = next(n.name for n in cnn_model.graph.node if "conv1.weight" in n.input)
    options = QDQOptions(skip_names=[conv1], not_quant_pattern=["down"])
    quantized, plan = write_qdq_model(cnn_model, _ranges(cnn_model, options), options)
    initializers = {t.name for t in quantized.graph.initializer}
    assert {"conv1.weight", "down.weight"} <= initializers
    assert "stem.weight_quantized" in initializers and "conv1.weight_quantized" not in initializers
    assert set(plan.skipped_nodes) == {conv1, "/down/Conv"}


def test_symmetric_activations_use_int8_zero_points(cnn_model):
    options = QDQOptions(symmetric_activations=True)
    quantized, _ = write_qdq_model(cnn_model, _ranges(cnn_model, options), options)
    zero_points = [numpy_helper.to_array(t) for t in quantized.graph.initializer if t.name.endswith("_zero_point")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    feed = make_batches(1, seed=7)[0]
    assert cosine(run(quantized, feed), run(cnn_model, feed)) > 0.99


@pytest.mark.parametrize(
    "field, value",
    [
        ("activation_bits", 4),
        ("activation_bits", 16),
        ("weight_bits", 16),
        ("weight_bits", 1),
        ("weight_quantize_type", "range_abs_max"),
    ],
)
def test_unsupported_settings_are_config_errors(cnn_model, field, value):
    with pytest.raises(ConfigError, match="allowed"):
        write_qdq_model(cnn_model, {}, QDQOptions(**{field: value}))


@pytest.mark.parametrize("field", ["activation_bits", "weight_bits"])
def test_config_accepts_exactly_the_bits_the_writer_stores(field):
    for bits in range(0, 18):
        try:
            load_config({"QuantPost": {field: bits}})
        except ConfigError as exc:
            assert f"QuantPost.{field}" in str(exc) and "allowed" in str(exc)
            with pytest.raises(ConfigError):
                QDQOptions(**{field: bits}).validate()
        else:
            QDQOptions(**{field: bits}).validate()


@pytest.mark.parametrize(
    "hardware, for_tensorrt, symmetric, float_stem",
    [
        ("cpu", False, False, True),
        ("cpu", True, True, False),
        ("gpu", False, True, False),
    ],
)
def test_from_section_maps_a_section_for_its_hardware(hardware, for_tensorrt, symmetric, float_stem):
    target = HardwareTarget(hardware, ("CPUExecutionProvider",), True)
    section = QuantPost(
        quantize_op_types="conv2d",
        skip_tensor_list=["w"],
        weight_bits=4,
        bias_correct=True,
        for_tensorrt=for_tensorrt,
        weight_quantize_type="abs_max",
    )
    assert QDQOptions.from_section(section, target) == QDQOptions(
        quantize_op_types=("conv2d",),
        skip_names=("w",),
        weight_bits=4,
        weight_quantize_type="abs_max",
        symmetric_activations=symmetric,
        bias_correct=True,
        float_stem=float_stem,
    )
    aware = QDQOptions.from_section(QuantAware(for_tensorrt=for_tensorrt), target)
    assert (aware.skip_names, aware.bias_correct, aware.symmetric_activations) == ((), False, symmetric)


def test_low_bit_weights_stay_on_a_narrow_grid(cnn_model):
    options = QDQOptions(weight_bits=4)
    quantized, _ = write_qdq_model(cnn_model, _ranges(cnn_model), options)
    weights = [
        numpy_helper.to_array(t)
        for t in quantized.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and t.name.endswith("weight_quantized")
    ]
    assert weights and all(np.abs(w).max() == 7 for w in weights)


def test_missing_range_is_a_data_error(cnn_model):
    with pytest.raises(DataError, match="no calibration range"):
        write_qdq_model(cnn_model, {"x": (0.0, 1.0)})


def test_learned_weight_scales_are_written_as_given(cnn_model):
    scales = np.full(16, 0.01, np.float32)
    quantized, _ = write_qdq_model(cnn_model, _ranges(cnn_model), weight_scales={"conv1.weight": scales})
    written = next(t for t in quantized.graph.initializer if t.name == "conv1.weight_scale")
    np.testing.assert_array_equal(numpy_helper.to_array(written), scales)
    with pytest.raises(DataError, match="expected"):
        write_qdq_model(cnn_model, _ranges(cnn_model), weight_scales={"conv1.weight": scales[:3]})


def test_full_quantize_runs_the_residual_add_in_int8(cnn_model, tmp_path):
    options = QDQOptions(is_full_quantize=True)
    quantized, _ = write_qdq_model(cnn_model, _ranges(cnn_model, options), options)
    onnx.checker.check_model(quantized)
    assert ("com.microsoft", "QLinearAdd") in _optimized_op_types(quantized, tmp_path)


def test_old_opset_is_upgraded_for_per_channel_weights(tmp_path):
    torch.manual_seed(0)
    model = export(ResidualCNN(), torch.randn(1, 3, 24, 24), tmp_path / "opset11.onnx", opset=11)
    quantized, _ = write_qdq_model(model, _ranges(model))
    assert next(o.version for o in quantized.opset_import if o.domain in ("", "ai.onnx")) >= 13
    feed = make_batches(1)[0]
    assert cosine(run(quantized, feed), run(model, feed)) > 0.99


def test_integer_shape_arithmetic_is_never_quantized():
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32), "W")
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("Shape", ["c"], ["shape"], name="shape"),
        helper.make_node("Concat", ["shape", "extra"], ["dims"], name="concat_shape", axis=0),
        helper.make_node("Add", ["c", "c"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "shapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4]),
            helper.make_tensor_value_info("dims", TensorProto.INT64, [5]),
        ],
        [weight, numpy_helper.from_array(np.array([1], np.int64), "extra")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    plan = plan_quantization(model, QDQOptions(is_full_quantize=True))
    assert sorted(p.node.name for p in plan.nodes) == ["add", "conv"]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_with_either_weight_layout_runs_as_qgemm(trans_b, tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 5) if trans_b else (5, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"], name="fc", transB=trans_b)],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    quantized, _ = write_qdq_model(model, {"x": (-3.0, 3.0)})
    values = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
    assert values["W_scale"].shape == values["B_scale"].shape == (8,)  # per output channel, whichever axis W has
    assert ("com.microsoft", "QGemm") in _optimized_op_types(quantized, tmp_path)
    x = rng.uniform(-3, 3, (2, 5)).astype(np.float32)
    assert cosine(run(quantized, {"x": x}), run(model, {"x": x})) > 0.999


def test_a_large_model_gets_the_same_qdq_model_without_the_float_weights_it_dropped(cnn_model, monkeypatch):
    ranges = _ranges(cnn_model)
    expected, _ = write_qdq_model(cnn_model, ranges)
    monkeypatch.setattr(large, "PROTOBUF_LIMIT", 1000)  # counts as over 2 GB: the result is a compacted copy
    compacted = []
    real = large.compacted

    def recording(model):
        compacted.append(model)
        return real(model)

    monkeypatch.setattr("autocompress.quant.qdq.compacted", recording)
    quantized, _ = write_qdq_model(cnn_model, ranges)
    assert len(compacted) == 1 and quantized is not compacted[0]
    assert quantized == expected


@pytest.mark.parametrize(
    ("in_channels", "kernel", "stays_float"), [(3, 3, True), (4, 3, True), (3, 7, False), (8, 3, False)]
)
def test_float_stem_keeps_only_a_thin_small_kernel_conv_in_float(in_channels, kernel, stays_float):
    """3x3 over RGB is float on CPU; a 7x7 RGB stem (ResNet) has work enough for the integer GEMM, so int8."""
    weight = np.random.default_rng(0).standard_normal((8, in_channels, kernel, kernel)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["y"], name="stem")],
        "stem",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_channels, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16 - kernel + 1, 16 - kernel + 1])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    planned = [p.node.name for p in plan_quantization(model, QDQOptions(float_stem=True)).nodes]
    assert planned == ([] if stays_float else ["stem"])
