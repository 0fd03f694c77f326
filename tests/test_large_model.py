"""Models stored with external data, up to over protobuf's 2 GB limit: load, calibrate, run, train, save."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from autocompress import AutoCompression, evaluation
from autocompress.api import save_model
from autocompress.data.batches import BatchAdapter, input_specs
from autocompress.errors import ModelLoadError
from autocompress.graph import large, load
from autocompress.graph.external import is_on_disk, tensor_array
from autocompress.graph.large import exceeds_protobuf_limit
from autocompress.graph.load import load_model
from autocompress.quant.statistics import collect_statistics
from autocompress.runtime import ort as ort_runtime
from autocompress.runtime.ort import Predictor, resolve_hardware
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.search.emd import emd_distance

from .conftest import export_tiny_cnn


def _save_external(model: onnx.ModelProto, path: Path, location: str) -> None:
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location, size_threshold=0
    )


def test_external_data_model_goes_through_quant_post_end_to_end(tmp_path, tiny_batches):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    source = export_tiny_cnn(tmp_path / "plain.onnx")
    _save_external(onnx.load(str(source)), model_dir / "net.onnx", "net.weights")
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}

    result = AutoCompression(
        model_dir,
        tiny_batches,
        save_dir=tmp_path / "out",
        eval_dataloader=tiny_batches,
        config={"QuantPost": {"batch_nums": 2}},
    ).compress()

    saved = onnx.load(str(result.model_path))
    assert any(n.op_type == "QuantizeLinear" for n in saved.graph.node)
    # the user's model kept its weights apart, so does the result
    assert sorted(p.name for p in result.save_dir.glob("model.onnx*")) == ["model.onnx", "model.onnx.data"]
    outputs = Predictor(str(result.model_path))(tiny_batches[0])
    assert outputs[0].shape == (4, 10) and np.isfinite(outputs[0]).all()
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before  # the user's files are only read


@pytest.mark.parametrize(
    "config",
    [
        {"QuantPost": {"batch_nums": 2}},
        {
            "UnstructurePrune": {"prune_ratio": 0.5},
            "TrainConfig": {"train_iter": 4, "eval_iter": 4, "learning_rate": 0.01},
        },
    ],
    ids=["QuantPost", "UnstructurePrune"],
)
@pytest.mark.parametrize("on_disk", [False, True], ids=["inline", "weights_on_disk"])
def test_compress_takes_the_over_2gb_paths_end_to_end(tmp_path, tiny_batches, monkeypatch, caplog, config, on_disk):
    """The >2 GB branches (stub checker and shape inference, no onnxslim, ORT through a temporary file, parts-wise
    sizes, external-data save) on a small model that counts as large; the slow test below runs a real one.
    `on_disk`: the loaded model keeps its weights in the user's files, as one over 2 GB does."""
    source = export_tiny_cnn(tmp_path / "plain.onnx")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    _save_external(onnx.load(str(source)), model_dir / "net.onnx", "net.weights")
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    reference = Predictor(str(source))(tiny_batches[0])[0]
    monkeypatch.setattr(large, "PROTOBUF_LIMIT", 4096)  # a few KB: every model of this run counts as large
    if on_disk:
        monkeypatch.setattr(load, "LAZY_EXTERNAL_BYTES", 0)
        assert any(is_on_disk(t) for t in load_model(model_dir).graph.initializer)

    result = AutoCompression(
        model_dir,
        tiny_batches,
        save_dir=tmp_path / "out",
        eval_dataloader=tiny_batches,
        config={**config, "Global": {"cache_dir": str(tmp_path / "cache")}},
    ).compress()
    assert "onnxslim simplification (and BN folding) is skipped" in caplog.text
    assert sorted(p.name for p in result.save_dir.iterdir() if p.name.startswith("model")) == [
        "model.onnx",
        "model.onnx.data",
    ]
    header = onnx.load(str(result.model_path), load_external_data=False)
    inline = [t.ByteSize() for t in header.graph.initializer if t.data_location != TensorProto.EXTERNAL]
    assert len(inline) < len(header.graph.initializer) and max(inline) < large.STUB_THRESHOLD
    assert result.compressed.size_mb > 0 and result.baseline.size_mb > 0
    outputs = Predictor(str(result.model_path))(tiny_batches[0])[0]
    assert np.isfinite(outputs).all()
    assert np.abs(outputs - reference).max() < 0.5 * np.abs(reference).max()
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    locations = {e.value for t in header.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"model.onnx.data"}
    if "QuantPost" in config:
        assert sum(n.op_type == "QuantizeLinear" for n in header.graph.node) >= 3
    else:
        info = result.report["timeline"][0]["info"]
        assert info["compressed_size_mb"] < info["dense_size_mb"]


def test_missing_external_data_file_is_named(tmp_path):
    source = export_tiny_cnn(tmp_path / "plain.onnx")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    _save_external(onnx.load(str(source)), model_dir / "net.onnx", "net.weights")
    (model_dir / "net.weights").unlink()
    with pytest.raises(ModelLoadError, match=r"external data file .*net\.weights.* is missing"):
        load_model(model_dir)


def _chain_model(width: int, layers: int) -> onnx.ModelProto:
    """x @ W1 -> Relu -> ... @ Wn: `layers` float32 [width, width] weights (width=11600, layers=4: 2.15 GB)."""
    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for i in range(layers):
        weight = rng.random((width, width), dtype=np.float32)
        weight -= np.float32(0.5)
        weight *= np.float32(5 / np.sqrt(width))
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        del weight
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"))
        nodes.append(helper.make_node("Relu", [f"mm{i}"], [f"relu{i}"], name=f"relu{i}"))
        current = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["n", width])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.slow
def test_model_over_2gb_loads_calibrates_runs_trains_and_saves(tmp_path):
    width, layers = 11600, 4
    model_dir, save_dir = tmp_path / "model", tmp_path / "out"
    model_dir.mkdir()
    built = _chain_model(width, layers)
    assert exceeds_protobuf_limit(built)
    onnx.save_model(built, str(model_dir / "big.onnx"), save_as_external_data=True, location="big.onnx.data")
    del built

    model = load_model(model_dir)
    assert exceeds_protobuf_limit(model) and all(is_on_disk(t) for t in model.graph.initializer)
    rng = np.random.default_rng(1)
    batches = [{"x": rng.standard_normal((2, width), dtype=np.float32)} for _ in range(3)]

    stats = collect_statistics(model, batches, ["relu0", "relu3"], cache_dir=str(tmp_path / "cache"))
    w0 = tensor_array(model.graph.initializer[0])  # the session left the caller's tensors in place
    expected = [float(np.maximum(b["x"] @ w0, 0).max()) for b in batches]
    np.testing.assert_allclose(stats.abs_max[stats.index("relu0")], expected, rtol=1e-4)
    del w0

    reference = Predictor(model)(batches[0])[0]
    graph = TorchGraph(model)
    with torch.no_grad():
        out = graph({"x": torch.from_numpy(batches[0]["x"])})[f"relu{layers - 1}"].numpy()
    np.testing.assert_allclose(out, reference, rtol=1e-3, atol=1e-3)

    last = graph.parameter(f"w{layers - 1}")  # one trainable weight keeps gradients (and peak memory) small
    for parameter in graph.parameters():
        parameter.requires_grad_(parameter is last)
    optimizer = torch.optim.SGD([last], lr=0.1)
    graph({"x": torch.from_numpy(batches[0]["x"])})[f"relu{layers - 1}"].square().mean().backward()
    optimizer.step()
    del optimizer
    trained = graph.write_back(model)
    del graph, model
    save_dir.mkdir()
    save_model(trained, save_dir / "model.onnx")
    del trained
    assert sorted(p.name for p in save_dir.iterdir()) == ["model.onnx", "model.onnx.data"]
    reloaded = load_model(save_dir)
    assert exceeds_protobuf_limit(reloaded)
    assert not np.allclose(Predictor(reloaded)(batches[0])[0], reference, rtol=1e-6, atol=1e-7)  # training moved it


@pytest.mark.slow
def test_compress_quant_post_on_a_model_over_2gb(tmp_path):
    """The whole QuantPost compress() on a real 2.15 GB model: nothing on the way serializes it in one piece."""
    width, layers = 11600, 4
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    built = _chain_model(width, layers)
    assert exceeds_protobuf_limit(built)
    onnx.save_model(built, str(model_dir / "big.onnx"), save_as_external_data=True, location="big.onnx.data")
    del built
    rng = np.random.default_rng(1)
    batches = [{"x": rng.standard_normal((2, width), dtype=np.float32)} for _ in range(2)]

    result = AutoCompression(
        model_dir,
        batches,
        save_dir=tmp_path / "out",
        eval_dataloader=batches,
        config={"QuantPost": {"batch_nums": 2}, "Global": {"cache_dir": str(tmp_path / "cache")}},
    ).compress()
    assert sorted(p.name for p in result.save_dir.glob("model.onnx*")) == ["model.onnx", "model.onnx.data"]
    assert result.baseline.size_mb > 2147
    header = onnx.load(str(result.model_path), load_external_data=False)
    assert sum(n.op_type == "QuantizeLinear" for n in header.graph.node) >= layers
    int8 = [t for t in header.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8) == layers and all(t.data_location == TensorProto.EXTERNAL for t in int8)
    quantized = Predictor(str(result.model_path))(batches[0])[0]
    reference = Predictor(str(model_dir / "big.onnx"))(batches[0])[0]
    assert np.isfinite(quantized).all()
    assert np.abs(quantized - reference).max() < 0.1 * np.abs(reference).max()


def test_models_over_the_protobuf_limit_reach_ort_through_a_temporary_file(tiny_cnn, tiny_batches, monkeypatch):
    model = onnx.load(str(tiny_cnn))
    expected = Predictor(model)(tiny_batches[0])[0]
    monkeypatch.setattr(large, "PROTOBUF_LIMIT", 1000)  # treat the tiny model as a large one
    assert exceeds_protobuf_limit(model)
    with ort_runtime.model_source(model) as source:
        folder = Path(source).parent
        assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert not folder.exists()
    np.testing.assert_allclose(Predictor(model)(tiny_batches[0])[0], expected, rtol=1e-6)
    assert not any(t.external_data for t in model.graph.initializer)  # the caller's model still holds its data
    stats = collect_statistics(model, tiny_batches, ["logits"])
    assert stats.abs_max[0, 0] == pytest.approx(float(np.abs(expected).max()), rel=1e-5)


def test_emd_evaluation_streams_within_its_memory_budget(tiny_cnn, monkeypatch):
    rng = np.random.default_rng(3)
    batches = [{"x": rng.standard_normal((4, 3, 16, 16), dtype=np.float32)} for _ in range(6)]
    reference = onnx.load(str(tiny_cnn))
    candidate = onnx.load(str(tiny_cnn))
    for tensor in candidate.graph.initializer:  # a perturbed copy: a non-zero EMD
        values = numpy_helper.to_array(tensor)
        tensor.CopyFrom(numpy_helper.from_array((values * 1.05).astype(values.dtype), tensor.name))
    monkeypatch.setattr(evaluation, "REFERENCE_CACHE_BYTES", 2 * 4 * 10 * 8)  # room for two batches of logits
    evaluator = evaluation.Evaluator(
        reference, resolve_hardware("cpu"), eval_batches=BatchAdapter(batches, input_specs(reference), "eval")
    )

    ref_outputs = [Predictor(reference)(b) for b in batches]
    expected = emd_distance(ref_outputs, [Predictor(candidate)(b) for b in batches])
    assert expected > 0
    assert evaluator(candidate) == pytest.approx(expected, rel=1e-12)
    assert evaluator(candidate) == pytest.approx(expected, rel=1e-12)  # two batches kept, four recomputed
    assert len(evaluator._reference._cache) == 2
    spread = np.std(np.concatenate([o[0].ravel().astype(np.float64) for o in ref_outputs]))
    assert evaluator.tolerance(0.0, 0.01) == pytest.approx(0.01 * spread, rel=1e-9)
