import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from examples.common.results_table import main, parse_row, parse_shape, results_rows


def _save_conv(path, channels: int) -> None:
    weight = numpy_helper.from_array(np.ones((channels, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [weight],
    )
    onnx.save(helper.make_model(graph, ir_version=8, opset_imports=[helper.make_operatorsetid("", 13)]), str(path))


def _run_dir(tmp_path, name: str, baseline: float, compressed: float, channels: int):
    save_dir = tmp_path / name
    save_dir.mkdir()
    _save_conv(save_dir / "model.onnx", channels)
    report = {"baseline": {"metric": baseline}, "compressed": {"metric": compressed}}
    (save_dir / "report.json").write_text(json.dumps(report))
    return save_dir


def test_rows_take_metrics_from_reports_and_put_fp32_first(tmp_path):
    _save_conv(tmp_path / "fp32.onnx", 64)
    small = _run_dir(tmp_path, "small", 0.9, 0.8, 4)
    other = _run_dir(tmp_path, "other", 0.5, 0.7, 64)  # its baseline metric is not the fp32 row's
    feed = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    rows = results_rows(tmp_path / "fp32.onnx", small, [("pruned", small), ("same", other)], feed, 1, 0.2)
    assert [r[0] for r in rows] == ["Baseline", "pruned", "same"]
    assert [r[1] for r in rows] == ["0.9000", "0.8000", "0.7000"]
    assert rows[0][3] == "-"
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows[1:])  # ms and fp32 ms / ms, not compared: timing


def test_parsers_and_cli(tmp_path, capsys):
    assert parse_shape("x=1,3,16,16") == ("x", [1, 3, 16, 16])
    assert parse_row("离线量化 / QuantPost=out/run") == ("离线量化 / QuantPost", Path("out/run"))
    with pytest.raises(argparse.ArgumentTypeError):
        parse_shape("x")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_row("no_label")
    _save_conv(tmp_path / "fp32.onnx", 8)
    run = _run_dir(tmp_path, "run", 0.6, 0.6, 8)
    main(
        [
            "--fp32",
            str(tmp_path / "fp32.onnx"),
            "--shape",
            "x=1,3,16,16",
            "--baseline_dir",
            str(run),
            "--seconds",
            "0.2",
            f"int8={run}",
        ]
    )
    out = capsys.readouterr().out
    assert "| int8 | 0.6000 |" in out and "load average" in out
