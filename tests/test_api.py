import dataclasses
import json

import numpy as np
import onnx
import pytest
import yaml

from autocompress import AutoCompression
from autocompress.errors import ConfigError, DataError, SaveDirError, StrategyNotImplementedError

REPORT_KEYS = {"metric", "metric_name", "latency_ms", "size_mb", "params", "macs"}


def _accuracy_like(predictor):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    logits = predictor({"x": x})[0]
    return float(np.mean(np.argmax(logits, 1) >= 0))


def test_baseline_run_writes_a_complete_save_dir(tiny_cnn, tiny_batches, tmp_path):
    save = tmp_path / "out"
    result = AutoCompression(tiny_cnn.parent, tiny_batches, save_dir=save, eval_callback=_accuracy_like).compress()
    assert sorted(p.name for p in save.iterdir()) == [
        ".autocompress",
        "config.yaml",
        "model.onnx",
        "report.html",
        "report.json",
    ]
    report = json.loads((save / "report.json").read_text())
    assert REPORT_KEYS <= set(report["baseline"]) and REPORT_KEYS <= set(report["compressed"])
    assert report["baseline"]["metric"] == 1.0 and report["baseline"]["params"] > 1000
    assert {"strategy", "elapsed_s", "hardware"} <= set(report)
    assert yaml.safe_load((save / "config.yaml").read_text())["Global"]["deploy_hardware"] == "cpu"
    assert result.model_path.is_file() and not save.with_name("out.work").exists()


def test_emd_metric_without_eval_callback(tiny_cnn, tiny_batches, tmp_path):
    result = AutoCompression(tiny_cnn, tiny_batches, save_dir=tmp_path / "o", eval_dataloader=tiny_batches).compress()
    assert result.baseline.metric_name == "EMD" and result.baseline.metric == 0.0


def test_input_model_is_never_modified(tiny_cnn, tiny_batches, tmp_path):
    before = tiny_cnn.read_bytes()
    AutoCompression(tiny_cnn, tiny_batches, save_dir=tmp_path / "o", eval_dataloader=tiny_batches).compress()
    assert tiny_cnn.read_bytes() == before


def test_save_dir_that_is_the_model_folder_is_refused(tiny_cnn, tiny_batches):
    with pytest.raises(ConfigError, match="is the folder holding the model's file"):
        AutoCompression(tiny_cnn.parent, tiny_batches, save_dir=tiny_cnn.parent, eval_dataloader=tiny_batches)


def test_save_dir_containing_the_model_is_refused(tiny_cnn, tiny_batches):
    """save_dir is replaced as a whole on success: a save_dir above the model's folder would delete the model."""
    before = tiny_cnn.read_bytes()
    with pytest.raises(ConfigError, match="contains the model's file"):
        AutoCompression(tiny_cnn.parent, tiny_batches, save_dir=tiny_cnn.parent.parent, eval_dataloader=tiny_batches)
    assert tiny_cnn.read_bytes() == before


def test_wrong_input_name_lists_model_inputs(tiny_cnn, tmp_path):
    batches = [{"image": np.zeros((1, 3, 16, 16), np.float32)}]
    with pytest.raises(DataError, match=r"model's inputs are \['x'\]"):
        AutoCompression(tiny_cnn, batches, save_dir=tmp_path / "o", eval_dataloader=batches).compress()
    assert not (tmp_path / "o").exists()


def test_no_eval_is_an_error(tiny_cnn, tiny_batches, tmp_path):
    with pytest.raises(ConfigError, match="eval_callback"):
        AutoCompression(tiny_cnn, tiny_batches, save_dir=tmp_path / "o")


def test_origin_metric_mismatch_catches_a_broken_eval(tiny_cnn, tiny_batches, tmp_path):
    config = {"TrainConfig": {"origin_metric": 0.5}}
    with pytest.raises(ConfigError, match="origin_metric"):
        AutoCompression(
            tiny_cnn, tiny_batches, save_dir=tmp_path / "o", config=config, eval_callback=_accuracy_like
        ).compress()


def test_failure_mid_write_leaves_no_save_dir(tiny_cnn, tiny_batches, tmp_path, monkeypatch):
    import autocompress.api as api

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(api, "save_config", boom)
    save = tmp_path / "o"
    with pytest.raises(Exception, match="disk full"):
        AutoCompression(tiny_cnn, tiny_batches, save_dir=save, eval_dataloader=tiny_batches).compress()
    assert not save.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.tmp")]


def test_previous_result_survives_a_failed_rerun(tiny_cnn, tiny_batches, tmp_path, monkeypatch):
    import autocompress.api as api

    save = tmp_path / "o"
    AutoCompression(tiny_cnn, tiny_batches, save_dir=save, eval_dataloader=tiny_batches).compress()
    monkeypatch.setattr(api, "save_config", lambda *a, **k: (_ for _ in ()).throw(OSError("no space")))
    with pytest.raises(SaveDirError, match="no space"):
        AutoCompression(tiny_cnn, tiny_batches, save_dir=save, eval_dataloader=tiny_batches).compress()
    assert (save / "report.json").is_file()


def test_unimplemented_strategy_is_a_clear_error(tiny_cnn, tiny_batches, tmp_path, monkeypatch):
    from autocompress.config import registry

    missing = dataclasses.replace(registry.strategy_spec("ASPPrune"), stage="autocompress.strategy.missing:Stage")
    monkeypatch.setitem(registry._SPECS, "ASPPrune", missing)
    with pytest.raises(StrategyNotImplementedError, match="not implemented"):
        AutoCompression(
            tiny_cnn, tiny_batches, save_dir=tmp_path / "o", config={"ASPPrune": {}}, eval_dataloader=tiny_batches
        ).compress()


def test_report_json_is_strict_json_when_a_number_is_not_finite(tiny_cnn, tiny_batches, tmp_path, monkeypatch):
    """NaN and inf never reach report.json (strict parsers reject them): they become null, with the reason."""
    import autocompress.api as api

    summarize = api.summarize
    monkeypatch.setattr(
        api, "summarize", lambda *a, **k: dataclasses.replace(summarize(*a, **k), latency_p90_ms=float("inf"))
    )

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    result = AutoCompression(tiny_cnn, tiny_batches, save_dir=tmp_path / "o", eval_dataloader=tiny_batches).compress()
    report = json.loads(result.report_path.read_text(), parse_constant=refuse)
    assert report["baseline"]["latency_p90_ms"] is None and report["compressed"]["latency_p90_ms"] is None
    assert report["non_finite"] == {"baseline.latency_p90_ms": "inf", "compressed.latency_p90_ms": "inf"}
    assert result.report == report


def test_the_seeds_positional_order_runs(tiny_cnn, tiny_batches, tmp_path):
    """AutoCompression(model_dir, train_dataloader, model_filename, params_filename, save_dir, strategy_config,
    train_config, eval_callback, devices), as PaddleSlim's reference writes it."""
    from autocompress import QuantPost

    save = tmp_path / "o"
    result = AutoCompression(
        str(tiny_cnn.parent),
        tiny_batches,
        tiny_cnn.name,
        None,
        str(save),
        {"QuantPost": QuantPost(batch_nums=1)},
        {"epochs": 2},
        _accuracy_like,
        "cpu",
    ).compress()
    assert result.strategy == ["QuantPost"] and result.record.strategy == ["QuantPost"]
    written = yaml.safe_load((save / "config.yaml").read_text())
    assert written["QuantPost"]["batch_nums"] == 1 and written["TrainConfig"]["epochs"] == 2
    assert written["Global"]["devices"] == "cpu" and result.baseline.metric == 1.0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("cfg.yaml",), "argument 6, strategy_config, must be a dict of strategy sections .* config="),
        ((None, _accuracy_like), "argument 7, train_config, must be a dict of TrainConfig keys"),
        (
            (None, None, [{"x": 1}]),
            "argument 8, eval_callback, must be a function predictor -> metric, or None; got list",
        ),
        ((None, None, _accuracy_like, 0), "argument 9, devices, must be 'cpu' or 'gpu'"),
    ],
)
def test_an_argument_out_of_the_seeds_order_is_named(tiny_cnn, tiny_batches, tmp_path, arguments, message):
    with pytest.raises(ConfigError, match=message) as error:
        AutoCompression(tiny_cnn, tiny_batches, None, None, tmp_path / "o", *arguments)
    assert "model_dir, train_dataloader, model_filename" in str(error.value)
    assert not (tmp_path / "o").exists()


def test_arguments_after_the_seeds_are_keyword_only(tiny_cnn, tiny_batches, tmp_path):
    with pytest.raises(TypeError, match="positional"):
        AutoCompression(tiny_cnn, tiny_batches, None, None, tmp_path / "o", None, None, _accuracy_like, "cpu", [1, 3])


def test_the_result_carries_the_report_as_a_record_and_as_report_json(tiny_cnn, tiny_batches, tmp_path):
    result = AutoCompression(
        tiny_cnn,
        tiny_batches,
        save_dir=tmp_path / "o",
        config={"QuantPost": {"batch_nums": 1}},
        eval_dataloader=tiny_batches,
    ).compress()
    record = result.record
    assert json.loads(result.report_path.read_text()) == record.to_dict() == result.report
    (stage,) = record.timeline
    assert stage.stage == "QuantPost" and stage.info.metric == result.report["timeline"][0]["info"]["metric"]
    assert stage.info.details["quantized_nodes"] > 0 and record.compressed == result.compressed
    assert record.hardware.deploy_hardware == "cpu" and record.skipped_batches == {"train": [], "eval": []}


def _named_scores(predictor) -> dict[str, float]:
    """An eval_callback returning several metrics: the first is the one compression is judged by."""
    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    logits = predictor({"x": x})[0]
    return {"top1": float(np.mean(np.argmax(logits, 1) >= 0)), "logit_std": float(logits.std())}


def _ops(report: dict) -> dict[str, dict]:
    return {op["name"]: op for op in report["timeline"][0]["info"]["ops"]}


def test_quant_post_report_names_the_metric_counts_params_once_and_says_what_each_op_became(
    tiny_cnn, tiny_batches, tmp_path
):
    from autocompress.runtime.ort import thread_counts

    config = {"QuantPost": {"skip_tensor_list": ["/head/Gemm"]}}
    result = AutoCompression(
        tiny_cnn, tiny_batches, save_dir=tmp_path / "o", strategy_config=config, eval_callback=_named_scores
    ).compress()
    report = json.loads(result.report_path.read_text())
    baseline, compressed = report["baseline"], report["compressed"]
    assert baseline["metric_name"] == compressed["metric_name"] == "top1"
    assert set(baseline["extra_metrics"]) == set(compressed["extra_metrics"]) == {"logit_std"}
    assert compressed["params"] == baseline["params"]  # int8 weights counted once, their scales not at all
    ops = _ops(report)
    assert ops["/head/Gemm"] == {
        "name": "/head/Gemm",
        "op_type": "Gemm",
        "action": "float",
        "reason": "skip_tensor_list",
    }
    assert ops["/body/body.3/Conv"]["action"] == "int8"
    threads = {str(t) for t in thread_counts()}
    assert set(baseline["latency_ms_by_threads"]) == set(compressed["latency_ms_by_threads"]) == threads
    assert set(report["speedup_by_threads"]) == threads
    page = (result.save_dir / "report.html").read_text()
    assert "top1" in page and "logit_std" in page and "skip_tensor_list" in page and "latency, 1 thread" in page


def test_metric_name_names_the_metric_in_the_report(tiny_cnn, tiny_batches, tmp_path):
    result = AutoCompression(
        tiny_cnn, tiny_batches, save_dir=tmp_path / "o", eval_callback=_accuracy_like, metric_name="accuracy"
    ).compress()
    assert result.report["baseline"]["metric_name"] == result.report["compressed"]["metric_name"] == "accuracy"
    assert "<td>accuracy</td>" in (result.save_dir / "report.html").read_text()


def test_channel_prune_report_lists_kept_and_original_channels(tiny_cnn, tiny_batches, tmp_path):
    config = {
        "ChannelPrune": {"pruned_ratio": 0.5, "round_to": 4},
        "Distillation": {},
        "TrainConfig": {"train_iter": 4, "eval_iter": 4, "learning_rate": 0.01},
    }
    result = AutoCompression(
        tiny_cnn, tiny_batches, save_dir=tmp_path / "o", config=config, eval_dataloader=tiny_batches
    ).compress()
    pruned = [op for op in _ops(result.report).values() if op["action"] == "pruned"]
    assert pruned and all(op["kept"] < op["original"] for op in pruned)
    assert {(op["op_type"], op["kept"], op["original"]) for op in pruned} >= {("Conv", 8, 16)}
    assert "8/16 channels (50.0 % pruned)" in (result.save_dir / "report.html").read_text()


def _streaming_model_dir(tmp_path):
    """A voice-activity-like model: `x` [N, 4] with a dynamic batch, a recurrent `state` [2, 1, 3] whose dims are all
    static (its batch is axis 1), and a scalar int64 sample rate `sr`."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0], np.int64), "layers"),
        numpy_helper.from_array(np.array(1 / 16000, np.float32), "per_hz"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["projected"], name="project"),
        helper.make_node("ReduceSum", ["state", "layers"], ["memory"], keepdims=0, name="memory"),  # [1, 3]
        helper.make_node("Add", ["projected", "memory"], ["mixed"], name="mix"),
        helper.make_node("Cast", ["sr"], ["sr_float"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["sr_float", "per_hz"], ["rate"], name="rate"),
        helper.make_node("Mul", ["mixed", "rate"], ["y"], name="scale"),
        helper.make_node("Tanh", ["state"], ["next_state"], name="next_state"),
    ]
    graph = helper.make_graph(
        nodes,
        "vad",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 3]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("next_state", TensorProto.FLOAT, [2, 1, 3]),
        ],
        inits,
    )
    model_dir = tmp_path / "vad"
    model_dir.mkdir()
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(model_dir / "vad.onnx")
    )
    return model_dir


def test_inputs_without_a_batch_on_axis_0_are_fed_whole_for_latency(tmp_path):
    rng = np.random.default_rng(1)
    batches = [
        {
            "x": rng.standard_normal((4, 4)).astype(np.float32),
            "state": rng.standard_normal((2, 1, 3)).astype(np.float32),
            "sr": np.array(16000, np.int64),
        }
        for _ in range(3)
    ]

    def agreement(predictor) -> float:
        return float(np.mean([np.abs(predictor(batch)[0]).mean() for batch in batches]))

    result = AutoCompression(
        _streaming_model_dir(tmp_path),
        batches,
        save_dir=tmp_path / "o",
        config={"QuantPost": {"batch_nums": 3}},
        eval_callback=agreement,
    ).compress()
    quantized = onnx.load(str(result.model_path))
    assert "QuantizeLinear" in {n.op_type for n in quantized.graph.node}
    assert result.baseline.latency_ms > 0 and result.compressed.latency_ms > 0


def test_an_explicit_strategy_that_drops_the_metric_warns_in_report_json(tiny_cnn, tiny_batches, tmp_path, caplog):
    """The float model scores 1.0 and every later candidate 0.5: far beyond Global.auto_max_relative_drop."""
    calls = []

    def worse_after_quantization(predictor) -> float:
        calls.append(predictor)
        return 1.0 if len(calls) == 1 else 0.5

    with caplog.at_level("WARNING", logger="autocompress.api"):
        result = AutoCompression(
            tiny_cnn,
            tiny_batches,
            save_dir=tmp_path / "o",
            config={"QuantPost": {}},
            eval_callback=worse_after_quantization,
        ).compress()
    (warning,) = json.loads(result.report_path.read_text())["warnings"]
    assert warning.startswith("QuantPost lowered") and "from 1 to 0.5" in warning
    assert "max_metric_drop" in warning and "skip_tensor_list" in warning
    assert [r.getMessage() for r in caplog.records if r.name == "autocompress.api"] == [warning]
    assert "QuantPost lowered" in (result.save_dir / "report.html").read_text()


def test_an_explicit_strategy_within_tolerance_has_no_warning(tiny_cnn, tiny_batches, tmp_path):
    result = AutoCompression(
        tiny_cnn,
        tiny_batches,
        save_dir=tmp_path / "o",
        config={"QuantPost": {"batch_nums": 1}},
        eval_callback=_accuracy_like,
    ).compress()
    assert json.loads(result.report_path.read_text())["warnings"] == []
