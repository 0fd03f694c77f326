import numpy as np
import onnx
from onnx import numpy_helper

from autocompress.quant.bias_correction import bias_corrected_weight
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.statistics import collect_statistics
from autocompress.quant.weights import dequantize_weight, quantize_weight, weight_scales

from .conftest import make_batches


def _biased_weight() -> np.ndarray:
    """Channels whose values sit 0.4 of a step above the grid, so plain rounding loses 0.4 step each."""
    rng = np.random.default_rng(0)
    grid = rng.integers(-100, 100, size=(4, 3, 3, 3)).astype(np.float32)
    grid[:, 0, 0, 0] = 127  # pins each channel's abs max, hence its scale, to exactly 1/127 of 127 steps
    weight = (grid + 0.4) * 0.01
    weight[:, 0, 0, 0] = 1.27
    return weight


def test_correction_moves_channel_means_back_and_changes_int8_values():
    weight = _biased_weight()
    scale = weight_scales(weight, 0, 8)
    q = quantize_weight(weight, scale, 0, 8)
    corrected = bias_corrected_weight(weight, q, scale, 0, 8, correct_std=False)
    assert not np.array_equal(corrected, q)

    def mean_error(values):
        return np.abs((weight - dequantize_weight(values, scale, 0)).reshape(4, -1).mean(axis=1))

    assert np.all(mean_error(corrected) < mean_error(q) / 2)


def test_bias_correct_changes_the_exported_weights(cnn_model):
    tensors = calibration_tensors(cnn_model)
    statistics = collect_statistics(cnn_model, make_batches(2), tensors)
    plain, _ = quantize_post_training(cnn_model, statistics, algo="abs_max", bias_correct=False)
    corrected, _ = quantize_post_training(cnn_model, statistics, algo="abs_max", bias_correct=True)
    onnx.checker.check_model(corrected)

    def int8_weights(model):
        return {
            t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
        }

    before, after = int8_weights(plain), int8_weights(corrected)
    assert before.keys() == after.keys() and before
    assert any(not np.array_equal(before[k], after[k]) for k in before)
