"""Targeted checks of the untrusted-file rules: external data stays in the model folder wherever the tensor sits,
tensors and window attributes that crash native code are refused, and a run writes nothing outside save_dir."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autocompress import AutoCompression
from autocompress.errors import ConfigError, ModelLoadError
from autocompress.graph.load import load_model, model_tensors
from autocompress.graph.prepare import prepare_model
from autocompress.savedir import check_save_dir

VALUE = np.arange(4, dtype=np.float32).reshape(1, 4)


def _value_tensor(name: str) -> TensorProto:
    return numpy_helper.from_array(VALUE, name)


def _value_info(name: str, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, [1, 4] if dtype == TensorProto.FLOAT else [])


def _model(nodes, initializers=(), sparse=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [_value_info("x")], [_value_info("y")], list(initializers), sparse_initializer=list(sparse)
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _if_model(constant_node: bool) -> onnx.ModelProto:
    body_nodes = [helper.make_node("Add", ["x", "c"], ["out"])]
    body_inits = []
    if constant_node:
        body_nodes.insert(0, helper.make_node("Constant", [], ["c"], value=_value_tensor("c")))
    else:
        body_inits.append(_value_tensor("c"))
    body = helper.make_graph(body_nodes, "b", [], [_value_info("out")], body_inits)
    flag = numpy_helper.from_array(np.array(True), "flag")
    return _model([helper.make_node("If", ["flag"], ["y"], then_branch=body, else_branch=body)], [flag])


def _loop_model() -> onnx.ModelProto:
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=_value_tensor("c")),
            helper.make_node("Add", ["v_in", "c"], ["v_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "loop_body",
        [_value_info("i", TensorProto.INT64), _value_info("cond_in", TensorProto.BOOL), _value_info("v_in")],
        [_value_info("cond_out", TensorProto.BOOL), _value_info("v_out")],
    )
    trips = numpy_helper.from_array(np.array(1, np.int64), "trips")
    cond = numpy_helper.from_array(np.array(True), "cond")
    return _model([helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)], [trips, cond])


def _sparse_model() -> onnx.ModelProto:
    values = numpy_helper.from_array(VALUE.ravel(), "c")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.arange(4, dtype=np.int64), "c_idx"), [1, 4])
    return _model([helper.make_node("Add", ["x", "c"], ["y"])], sparse=[sparse])


PLACEMENTS = {
    "Constant node": lambda: _model(
        [helper.make_node("Constant", [], ["c"], value=_value_tensor("c")), helper.make_node("Add", ["x", "c"], ["y"])]
    ),
    "If branch initializer": lambda: _if_model(constant_node=False),
    "If branch Constant": lambda: _if_model(constant_node=True),
    "Loop body Constant": _loop_model,
    "sparse initializer": _sparse_model,
}


def _point_to(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """Move the float tensor named 'c' (wherever it sits) to external data at `location`."""
    tensor = next(t for t in model_tensors(model) if t.data_type == TensorProto.FLOAT)
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return model


@pytest.fixture
def folders(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "secret.bin").write_bytes(VALUE.tobytes())
    (model_dir / "weights.bin").write_bytes(VALUE.tobytes())
    os.symlink(tmp_path / "secret.bin", model_dir / "link.bin")
    return model_dir


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("location", ["../secret.bin", "ABSOLUTE", "link.bin"])
def test_external_data_outside_the_folder_is_refused_wherever_the_tensor_sits(folders, placement, location):
    location = str(folders.parent / "secret.bin") if location == "ABSOLUTE" else location
    onnx.save(_point_to(PLACEMENTS[placement](), location), str(folders / "m.onnx"))
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        load_model(folders / "m.onnx")


@pytest.mark.parametrize("placement", [p for p in PLACEMENTS if p != "sparse initializer"])
def test_external_data_inside_the_folder_loads_wherever_the_tensor_sits(folders, placement):
    onnx.save(_point_to(PLACEMENTS[placement](), "weights.bin"), str(folders / "m.onnx"))
    model = prepare_model(load_model(folders / "m.onnx"))
    values = [numpy_helper.to_array(t) for t in model_tensors(model) if t.data_type == TensorProto.FLOAT]
    assert any(np.array_equal(v.reshape(VALUE.shape), VALUE) for v in values if v.size == VALUE.size)


def test_sparse_tensor_external_data_that_onnx_would_not_load_is_refused(folders):
    """onnx's loader skips sparse tensors; left external, a runtime would resolve them from its working directory."""
    onnx.save(_point_to(_sparse_model(), "weights.bin"), str(folders / "m.onnx"))
    with pytest.raises(ModelLoadError, match="onnx does not load"):
        load_model(folders / "m.onnx")


@pytest.mark.parametrize("location", ["w\x00.bin", "", "a" * 5000])
def test_unusable_locations_are_load_errors(folders, location):
    onnx.save(_point_to(PLACEMENTS["Constant node"](), location), str(folders / "m.onnx"))
    with pytest.raises(ModelLoadError, match="tensor 'c'"):
        load_model(folders / "m.onnx")


def test_symlink_loop_and_fifo_are_refused_without_hanging(folders):
    os.symlink("loop.bin", folders / "loop.bin")
    os.mkfifo(folders / "fifo.bin")
    for location in ("loop.bin", "fifo.bin"):
        onnx.save(_point_to(PLACEMENTS["Constant node"](), location), str(folders / "m.onnx"))
        with pytest.raises(ModelLoadError, match="tensor 'c'"):
            load_model(folders / "m.onnx")


def test_tensor_whose_dims_disagree_with_its_data_is_refused():
    model = PLACEMENTS["Constant node"]()
    tensor = next(model_tensors(model))
    tensor.dims[:] = [7, -(2**62)]
    with pytest.raises(ModelLoadError, match="negative dims"):
        prepare_model(model)
    tensor.dims[:] = [3, 3]
    with pytest.raises(ModelLoadError, match="does not match"):
        prepare_model(model)


def test_zero_conv_stride_is_refused_before_shape_inference():
    """onnx's Conv shape inference divides by the stride: 0 would kill the process with SIGFPE."""
    weight = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", strides=[0, 0])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(ModelLoadError, match=r"node 'conv': strides = \[0, 0\]"):
        prepare_model(model)


def test_save_dir_may_not_reach_the_model_folder_by_any_path(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model = model_dir / "m.onnx"
    model.write_bytes(b"")
    os.symlink(model_dir, tmp_path / "alias")
    for save_dir in (model_dir, tmp_path / "alias" / ".." / "model", tmp_path / "elsewhere" / ".." / "model"):
        with pytest.raises(ConfigError, match="is the folder holding the model's file"):
            check_save_dir(save_dir, [model])
    assert check_save_dir(tmp_path / "model_out", [model]) == (tmp_path / "model_out").resolve()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_run_writes_only_save_dir_and_the_statistics_cache(tiny_cnn, tiny_batches, tmp_path, monkeypatch):
    """Working directory, home and model folder stay as they were; temp folders beside save_dir are gone."""
    for name in ("cwd", "home", "cache"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOCOMPRESS_CACHE_DIR", str(tmp_path / "cache"))
    before = _tree(tmp_path)
    AutoCompression(
        tiny_cnn.parent,
        tiny_batches,
        save_dir=tmp_path / "out",
        eval_dataloader=tiny_batches,
        config={"QuantPost": {"batch_nums": 2, "algo": "abs_max"}},
    ).compress()
    after = _tree(tmp_path)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert changed and all(p.split(os.sep)[0] in ("out", "cache") for p in changed), sorted(changed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "cwd", "home", "model", "out"]
