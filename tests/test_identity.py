"""A run's identity changes with the model's bytes (external data included), the config and the inputs, and with
nothing else."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autocompress.config.loader import load_config
from autocompress.data.batches import input_specs
from autocompress.identity import content_hash, input_files, run_identity


def _model(weight: float, height: int = 4) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.full((64, 64), weight, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [height, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [height, 64])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _external(folder, weight: float):
    folder.mkdir()
    onnx.save_model(
        _model(weight), str(folder / "m.onnx"), save_as_external_data=True, location="m.bin", size_threshold=0
    )
    return folder / "m.onnx"


def test_external_data_is_part_of_the_model_content(tmp_path):
    a, b = _external(tmp_path / "a", 1.0), _external(tmp_path / "b", 2.0)
    assert a.read_bytes() == b.read_bytes()  # the .onnx files alike, only the weights differ
    files_a, files_b = input_files(a, None, external=True), input_files(b, None, external=True)
    assert files_a == [a, tmp_path / "a" / "m.bin"]
    assert content_hash(files_a) != content_hash(files_b)
    assert content_hash(input_files(a, None, external=False)) == content_hash(input_files(b, None, external=False))


def test_identity_names_model_config_and_inputs(tmp_path):
    onnx.save_model(_model(1.0), str(tmp_path / "m.onnx"))
    files, specs = [tmp_path / "m.onnx"], input_specs(_model(1.0))
    config = load_config({"QuantPost": {"algo": "KL"}, "Global": {"save_dir": "one", "cache_dir": "c1"}})
    same = load_config({"QuantPost": {"algo": "KL"}, "Global": {"save_dir": "two", "latency_threads": 4}})
    identity = run_identity(files, config, specs)
    assert identity == run_identity(files, same, specs)  # paths and thread counts do not change the result
    assert identity["inputs"] == [{"name": "x", "dtype": "float32", "shape": [4, 64]}]
    assert run_identity(files, load_config({"QuantPost": {"algo": "mse"}}), specs)["config"] != identity["config"]
    assert run_identity(files, config, input_specs(_model(1.0, height=8)))["inputs"] != identity["inputs"]
    onnx.save_model(_model(3.0), str(tmp_path / "m.onnx"))
    assert run_identity(files, config, specs)["model_sha256"] != identity["model_sha256"]
