"""End to end: the PTQ model really runs its convolutions as int8 kernels in ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from autocompress.errors import ConfigError, DataError
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.ranges import ALGORITHMS
from autocompress.quant.statistics import collect_statistics, statistics_from_arrays

from .conftest import cosine, export, make_batches, run

INT8_CONV = {
    ("", "QLinearConv"),
    ("com.microsoft", "QLinearConv"),
    ("", "ConvInteger"),
    ("com.microsoft", "NhwcQLinearConv"),
}


@pytest.fixture(scope="module")
def statistics(cnn_model):
    return collect_statistics(cnn_model, make_batches(4), calibration_tensors(cnn_model))


def _optimized_nodes(model, path, level):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize(
    "level", [ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL]
)
def test_every_conv_and_the_gemm_run_as_int8_kernels(cnn_model, statistics, tmp_path, level):
    quantized, info = quantize_post_training(cnn_model, statistics, algo="KL")
    assert info.quantized_op_counts == {"Conv": 4, "Add": 1, "Gemm": 1}
    nodes = _optimized_nodes(quantized, tmp_path / "optimized.onnx", level)
    assert not [n for n in nodes if n[1] in ("Conv", "FusedConv", "Gemm", "Add")], nodes
    assert ("com.microsoft", "QLinearAdd") in nodes  # the residual Add between two quantized convs
    assert sum(n in INT8_CONV for n in nodes) == 4, nodes
    assert ("com.microsoft", "QGemm") in nodes  # the classifier too: needs its bias in int32


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_int8_outputs_match_float(cnn_model, statistics, algo):
    quantized, info = quantize_post_training(cnn_model, statistics, algo=algo, hist_percent=0.9999)
    assert info.algo == algo and set(info.thresholds) == set(calibration_tensors(cnn_model))
    feed = make_batches(1, seed=11)[0]
    assert cosine(run(quantized, feed), run(cnn_model, feed)) > 0.99


def test_batch_num_uses_a_prefix_of_the_statistics(cnn_model, statistics):
    _, info = quantize_post_training(cnn_model, statistics, algo="abs_max", batch_num=2)
    assert info.batch_num == 2
    _, full = quantize_post_training(cnn_model, statistics, algo="abs_max")
    assert full.batch_num == 4


def test_paddle_op_names_are_accepted(cnn_model, statistics):
    _, info = quantize_post_training(
        cnn_model, statistics, algo="avg", quantize_op_types=["conv2d", "depthwise_conv2d"]
    )
    assert info.quantized_op_counts == {"Conv": 4}


def test_no_quantizable_node_is_an_error_not_a_float_model(cnn_model, statistics):
    with pytest.raises(ConfigError, match="match no quantizable node"):
        quantize_post_training(cnn_model, statistics, quantize_op_types=["conv2d_transpose"])
    with pytest.raises(ConfigError, match="match no quantizable node"):
        quantize_post_training(cnn_model, statistics, quantize_op_types=["Conv"], not_quant_pattern=["Conv"])


def test_statistics_for_other_tensors_are_rejected(cnn_model):
    with pytest.raises(DataError, match="statistics lack tensors"):
        quantize_post_training(cnn_model, statistics_from_arrays({"x": [np.ones((1, 3), np.float32)]}))


def test_a_shared_weight_cache_gives_the_same_model_and_corrects_each_weight_once(cnn_model, statistics, monkeypatch):
    from autocompress.quant import qdq

    calls = []
    corrected = qdq.bias_corrected_weight
    monkeypatch.setattr(qdq, "bias_corrected_weight", lambda *a: calls.append(1) or corrected(*a))
    alone, _ = quantize_post_training(cnn_model, statistics, algo="abs_max", bias_correct=True)
    per_model = len(calls)
    cache: dict = {}
    first, _ = quantize_post_training(cnn_model, statistics, algo="abs_max", bias_correct=True, weight_cache=cache)
    second, _ = quantize_post_training(cnn_model, statistics, algo="KL", bias_correct=True, weight_cache=cache)
    assert per_model > 0 and len(calls) == 2 * per_model  # the second cached call corrected nothing
    assert first.SerializeToString() == alone.SerializeToString()

    def weights(m):
        return {
            t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8
        }

    assert weights(second).keys() == weights(alone).keys()
    assert all(np.array_equal(weights(second)[k], v) for k, v in weights(alone).items())
    without, _ = quantize_post_training(cnn_model, statistics, algo="abs_max", bias_correct=False, weight_cache=cache)
    assert len(calls) == 2 * per_model and any(
        not np.array_equal(weights(without)[k], v) for k, v in weights(alone).items()
    )  # bias_correct is part of the key


class _SharedConv(torch.nn.Module):
    """One Conv applied twice: both Conv nodes read the same weight initializer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.shared = torch.nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        return self.shared(torch.relu(self.shared(x)))


def test_a_weight_read_by_two_convs_is_stored_once_with_the_weight_cache(tmp_path):
    torch.manual_seed(0)
    model = export(_SharedConv(), torch.randn(1, 3, 16, 16), tmp_path / "shared.onnx")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs[1].input[1] == convs[2].input[1]  # the exporter shares the initializer
    batches = make_batches(2, shape=(1, 3, 16, 16))
    stats = collect_statistics(model, batches, calibration_tensors(model))
    quantized, _ = quantize_post_training(model, stats, algo="abs_max", weight_cache={})
    names = [n.name for n in quantized.graph.node]
    assert len(names) == len(set(names))
    assert cosine(run(quantized, batches[0]), run(model, batches[0])) > 0.99
