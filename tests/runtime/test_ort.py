import numpy as np
import onnx
import pytest

from autocompress.errors import ConfigError
from autocompress.runtime.ort import Predictor, measure_latency, resolve_hardware


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
