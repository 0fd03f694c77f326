"""QuantPost stage: latency measured once per graph structure, HPO on histogram prefixes, the int8-slower warning."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from autocompress import AutoCompression
from autocompress.errors import ConfigError
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.statistics import HISTOGRAM, ActivationStatistics, collect_statistics
from autocompress.runtime.ort import Latency
from autocompress.strategy import quant_post
from autocompress.strategy.quant_post import structure_key


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(4)]


def _is_int8(model: onnx.ModelProto) -> bool:
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


@pytest.fixture
def probed(monkeypatch):
    """quant_post.measure_latency replaced by a recorder: int8 models 'run' in 3 ms, float ones in 2 ms."""
    calls: list[bool] = []

    def fake(model, feed, hardware, threads, **probe):
        calls.append(_is_int8(model))
        return Latency(3.0 if calls[-1] else 2.0, 3.0, probe["runs"], threads, "cpu")

    monkeypatch.setattr(quant_post, "measure_latency", fake)
    return calls


def test_structure_key_ignores_values_but_not_structure(tiny_cnn, data):
    model = onnx.load(str(tiny_cnn))
    stats = collect_statistics(model, data, calibration_tensors(model))
    kl, _ = quantize_post_training(model, stats, algo="KL")
    avg, _ = quantize_post_training(model, stats, algo="avg", bias_correct=True)
    per_tensor, _ = quantize_post_training(model, stats, algo="KL", weight_quantize_type="abs_max")
    assert kl.SerializeToString() != avg.SerializeToString()
    assert structure_key(kl) == structure_key(avg)
    assert structure_key(kl) != structure_key(per_tensor)  # scalar vs per-channel weight scales
    assert structure_key(kl) != structure_key(model)


def test_hpo_measures_latency_once_per_structure_and_uses_batch_prefixes(tiny_cnn, data, tmp_path, probed):
    config = {
        "Global": {"cache_dir": str(tmp_path / "cache")},
        "QuantPost": {},
        "HyperParameterOptimization": {
            "ptq_algo": ["KL", "hist", "avg"],
            "bias_correct": [True, False],
            "weight_quantize_type": ["channel_wise_abs_max"],
            "batch_num": [1, 4],
            "max_quant_count": 6,
        },
    }
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "out", config=config, eval_dataloader=data)
    result = result.compress()
    info = result.report["timeline"][0]["info"]
    trials = info["trials"]
    assert len(trials) == 6
    # histogram algorithms ran on fewer batches than calibrated: the statistics hold those prefixes
    assert any(t["params"]["algo"] in ("KL", "hist") and t["params"]["batch_num"] < 4 for t in trials)
    assert probed == [True, False]  # one int8 structure for all trials, then the float input
    assert {c["latency_ms"] for c in result.report["candidates"]} == {3.0}
    assert _cached_parts(tmp_path) == {HISTOGRAM}  # what KL, hist and avg read, not the mse/emd grid


def _cached_parts(tmp_path) -> frozenset[str]:
    (path,) = (tmp_path / "cache").glob("statistics_*.npz")
    return ActivationStatistics.load(str(path)).parts


def test_calibration_collects_only_what_the_configured_algorithm_reads(tiny_cnn, data, tmp_path, probed):
    config = {"Global": {"cache_dir": str(tmp_path / "cache")}, "QuantPost": {"algo": "avg", "batch_nums": 2}}
    AutoCompression(tiny_cnn, data, save_dir=tmp_path / "out", config=config, eval_dataloader=data).compress()
    assert _cached_parts(tmp_path) == frozenset()


def _quant_post(model_path, data, tmp_path):
    config = {"Global": {"cache_dir": str(tmp_path / "cache")}, "QuantPost": {"batch_nums": 2}}
    return AutoCompression(model_path, data, save_dir=tmp_path / "out", config=config, eval_dataloader=data).compress()


def test_an_int8_model_slower_than_float_is_reported_not_changed(tiny_cnn, data, tmp_path, probed, caplog):
    with caplog.at_level(logging.WARNING, logger="autocompress.strategy.quant_post"):
        result = _quant_post(tiny_cnn, data, tmp_path)
    info = result.record.timeline[0].info
    assert info.details["int8_speedup"] == pytest.approx(2.0 / 3.0, abs=1e-3)
    (warning,) = info.warnings
    assert "slower than the float input" in warning and "0.67x" in warning
    assert result.report["timeline"][0]["info"]["warnings"] == [warning]
    assert "0.67x" in caplog.text
    assert _is_int8(onnx.load(str(result.model_path)))


def test_a_faster_int8_model_has_no_warning(tiny_cnn, data, tmp_path, monkeypatch):
    def fake(model, feed, hardware, threads, **probe):
        return Latency(1.0 if _is_int8(model) else 2.0, 2.0, 1, 1, "cpu")

    monkeypatch.setattr(quant_post, "measure_latency", fake)
    result = _quant_post(tiny_cnn, data, tmp_path)
    assert result.record.timeline[0].info.details["int8_speedup"] == 2.0 and not result.record.timeline[0].info.warnings
    assert "warnings" not in result.report["timeline"][0]["info"]


def test_trials_that_give_the_same_model_are_evaluated_once(tiny_cnn, tmp_path, probed):
    rng = np.random.default_rng(1)
    first = rng.standard_normal((4, 3, 16, 16)).astype(np.float32) * 4  # holds every tensor's abs max
    data = [{"x": first}] + [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32) * 0.1} for _ in range(3)]
    evaluations = []

    def eval_callback(predictor):
        evaluations.append(1)
        return float(np.mean(predictor(data[0])[0]))

    config = {
        "Global": {"cache_dir": str(tmp_path / "cache")},
        "QuantPost": {},
        "HyperParameterOptimization": {
            "ptq_algo": ["abs_max"],
            "bias_correct": [False],
            "batch_num": [1, 4],
            "weight_quantize_type": ["channel_wise_abs_max"],
            "max_quant_count": 8,
        },
    }
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "out", config=config, eval_callback=eval_callback)
    trials = result.compress().report["timeline"][0]["info"]["trials"]
    assert len({t["params"]["batch_num"] for t in trials}) > 1  # different settings ...
    assert len({t["metric"] for t in trials}) == 1
    assert len(evaluations) == 3  # ... one model: the baseline, one trial and the final check


@pytest.fixture
def float_conv_weights(tmp_path):
    """QuantPost section -> weights of the Convs left in float, on x -> Conv(stem_w)+BN -> Relu -> Conv(head_w)."""
    from tests.graph.test_prepare import _conv_bn_model

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    onnx.save(_conv_bn_model(head=True), str(model_dir / "model.onnx"))
    rng = np.random.default_rng(0)
    loader = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(2)]
    runs = iter(range(100))

    def compress(section: dict) -> list[str]:
        result = AutoCompression(
            str(model_dir),
            loader,
            model_filename="model.onnx",
            save_dir=str(tmp_path / f"out{next(runs)}"),
            config={"QuantPost": {"batch_nums": 2, **section}},
            eval_callback=lambda predictor: 1.0,
        ).compress()
        quantized = onnx.load(str(result.model_path))
        floats = {t.name for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
        return [n.input[1] for n in quantized.graph.node if n.op_type == "Conv" and n.input[1] in floats]

    return compress


def test_skip_tensor_list_takes_the_original_conv_weight_name_through_batch_norm_folding(float_conv_weights):
    assert float_conv_weights({"float_stem": False}) == []  # both quantized: weights go through DequantizeLinear
    assert float_conv_weights({"float_stem": False, "skip_tensor_list": ["stem_w"]}) == ["stem_w"]
    with pytest.raises(ConfigError, match=r"names \['stem_weight'\].*weights: \['head_w', 'stem_w'\]"):
        float_conv_weights({"skip_tensor_list": ["stem_weight"]})


def test_the_image_stem_stays_float_on_cpu_unless_asked(float_conv_weights):
    assert float_conv_weights({}) == ["stem_w"]  # 3 input channels: float; the 8-channel head is int8
    assert float_conv_weights({"float_stem": False}) == []
    assert float_conv_weights({"for_tensorrt": True}) == []  # TensorRT picks its own stem precision


def _fallback_run(model_path, data, tmp_path, name: str, max_metric_drop: float | None):
    config = {
        "Global": {"cache_dir": str(tmp_path / "cache")},
        "QuantPost": {"batch_nums": 2, "max_metric_drop": max_metric_drop},
    }
    result = AutoCompression(model_path, data, save_dir=tmp_path / name, config=config, eval_dataloader=data).compress()
    return result.report["timeline"][0]["info"], onnx.load(str(result.model_path))


def _int8_weight_nodes(model: onnx.ModelProto) -> dict[str, bool]:
    """Conv/Gemm node name -> whether its weight is read through DequantizeLinear."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name: n.input[1] in dequantized for n in model.graph.node if n.op_type in ("Conv", "Gemm")}


def test_no_drop_allowed_returns_every_op_to_float_with_a_warning(tiny_cnn, data, tmp_path, probed, caplog):
    with caplog.at_level(logging.WARNING, logger="autocompress.strategy.quant_post"):
        info, model = _fallback_run(tiny_cnn, data, tmp_path, "zero", 0.0)
    assert not _is_int8(model)
    (warning,) = info["warnings"]
    assert "max_metric_drop = 0 is met only with all 3 quantized ops back in float" in warning
    assert warning in caplog.text
    assert info["quantized_nodes"] == 0 and info["quantized_op_counts"] == {}
    assert set(info["op_precision"].values()) == {"float: metric fallback", "float: skipped (skip list or float stem)"}


def test_after_a_fallback_the_report_lists_each_ops_final_precision(tiny_cnn, data, tmp_path, probed):
    plain, _ = _fallback_run(tiny_cnn, data, tmp_path, "plain", None)
    info, model = _fallback_run(tiny_cnn, data, tmp_path, "fallback", plain["score"] * 0.95)
    assert 0 < len(info["float_fallback_nodes"]) < plain["quantized_nodes"]
    int8 = [name for name, state in info["op_precision"].items() if state == "int8"]
    assert info["quantized_nodes"] == len(int8) == plain["quantized_nodes"] - len(info["float_fallback_nodes"])
    assert sum(info["quantized_op_counts"].values()) == len(int8)
    for name, is_int8 in _int8_weight_nodes(model).items():
        assert is_int8 == (info["op_precision"][name] == "int8"), name
