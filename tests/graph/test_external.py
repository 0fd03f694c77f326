"""Weights left in the user's external-data files when a large model is loaded, checked on small models."""

import mmap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from autocompress.errors import ModelLoadError
from autocompress.graph import large, load
from autocompress.graph.external import is_on_disk, tensor_array
from autocompress.graph.index import GraphIndex
from autocompress.runtime.ort import SHARED_WEIGHTS, Predictor

from .test_large import _two_weight_model


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _maps_a_file(array: np.ndarray) -> bool:
    while array is not None and not isinstance(array, (np.memmap, mmap.mmap)):
        array = getattr(array, "base", None)
    return array is not None


@pytest.fixture
def saved(tmp_path) -> tuple[onnx.ModelProto, Path]:
    model = _two_weight_model()
    folder = tmp_path / "user"
    folder.mkdir()
    large.save_external(model, folder / "model.onnx")
    return model, folder / "model.onnx"


def test_a_large_model_keeps_its_weights_on_disk_and_runs_as_the_inline_one(saved, tmp_path, monkeypatch):
    model, path = saved
    before = _files(path.parent)
    monkeypatch.chdir(tmp_path)  # locations must not depend on the working directory
    lazy = load.load_onnx(path, lazy_bytes=0)

    on_disk = {t.name for t in lazy.graph.initializer if is_on_disk(t)}
    assert on_disk == {"w0", "w1"} and not any(
        t.HasField("raw_data") for t in lazy.graph.initializer if t.name in on_disk
    )
    assert lazy.ByteSize() < 1024  # the weights' 10 KB are not in the proto
    index = GraphIndex(lazy)
    for tensor in model.graph.initializer:
        value = index.constant_value(tensor.name)
        np.testing.assert_array_equal(value, numpy_helper.to_array(tensor))
        if tensor.name in on_disk:
            assert _maps_a_file(value) and not value.flags.writeable
    # so it is never serialized whole with references to the user's files
    assert large.weights_layout(lazy) is large.WeightsLayout.EXTERNAL
    assert abs(large.serialized_size(lazy) - model.ByteSize()) < 64  # the weights count as if inline

    x = {"x": np.random.default_rng(1).standard_normal((3, 32), dtype=np.float32)}
    np.testing.assert_array_equal(Predictor(lazy)(x)[0], Predictor(model)(x)[0])
    shared = SHARED_WEIGHTS.array(lazy.graph.initializer[0])
    assert shared is SHARED_WEIGHTS.array(lazy.graph.initializer[0]) and _maps_a_file(shared)

    out = tmp_path / "out"
    out.mkdir()
    large.save_external(lazy, out / "model.onnx")
    header = onnx.load(str(out / "model.onnx"), load_external_data=False)
    locations = {e.value for t in header.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"model.onnx.data"}  # its own data, no reference to the user's files
    assert _files(path.parent) == before
    path.with_name("model.onnx.data").unlink()  # the result stands alone
    reloaded = onnx.load(str(out / "model.onnx"))
    for original, saved_tensor in zip(model.graph.initializer, reloaded.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(saved_tensor), numpy_helper.to_array(original))


def test_small_external_data_is_read_inline_as_before(saved):
    model, path = saved
    loaded = load.load_onnx(path)
    assert not any(is_on_disk(t) or t.external_data for t in loaded.graph.initializer)
    assert large.weights_layout(loaded) is large.WeightsLayout.INLINE
    for original, tensor in zip(model.graph.initializer, loaded.graph.initializer):
        np.testing.assert_array_equal(tensor_array(tensor), numpy_helper.to_array(original))


def test_missing_or_short_external_data_is_a_load_error_naming_it(saved):
    _, path = saved
    data = path.with_name("model.onnx.data")
    content = data.read_bytes()
    data.write_bytes(content[: len(content) - 100])
    with pytest.raises(ModelLoadError, match="w1.*beyond.*model.onnx.data"):
        load.load_onnx(path, lazy_bytes=0)
    data.unlink()
    with pytest.raises(ModelLoadError, match="model.onnx.data.*missing"):
        load.load_onnx(path, lazy_bytes=0)


def test_a_length_that_disagrees_with_the_dims_is_refused(saved):
    _, path = saved
    header = onnx.load(str(path), load_external_data=False)
    for entry in header.graph.initializer[0].external_data:
        if entry.key == "length":
            entry.value = str(int(entry.value) - 4)
    path.write_bytes(header.SerializeToString())
    with pytest.raises(ModelLoadError, match="w0.*length.*does not match dims"):
        load.load_onnx(path, lazy_bytes=0)
