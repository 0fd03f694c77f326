"""The zoo's runner on its smallest real models (auto mode's contract), and its table writer on made-up rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from autocompress.config.global_section import GlobalConfig
from benchmarks.common import MachineInfo, write_section
from benchmarks.zoo.runner import Latency, Row, batch_axes, batch_one, compress_model, measure_model
from benchmarks.zoo.table import HEADER, HEADING, render, summarize
from benchmarks.zoo.tools import Sizes, ToolResult, load_model

SMALL = Sizes(calibration=4, evaluation=8)
TOLERANCE = GlobalConfig.model_fields["auto_max_relative_drop"].default
#: Two short latency measurements on a shared 2-core machine differ by a few percent; "slower" means beyond it.
TIMING_NOISE = 0.10
SMOKE_BUDGET_S = 60.0


def _time_budget() -> float | None:
    """A short Global.time_budget where the config has one."""
    return SMOKE_BUDGET_S if "time_budget" in GlobalConfig.model_fields else None


@pytest.mark.parametrize("name", ["silero_vad", "captcha_whisperer"])
def test_auto_mode_contract_on_small_zoo_models(name: str, tmp_path: Path) -> None:
    model = load_model(name)
    results = compress_model(model, tmp_path, SMALL, timeout_s=300, time_budget=_time_budget(), tools=["auto"])
    fp32, auto = measure_model(model, results, SMALL, latency_seconds=1.0)
    assert auto.result.outcome in ("int8", "float kept"), f"auto did not end with a model: {auto.result}"
    drop = (fp32.metric - auto.metric) / max(abs(fp32.metric), 1e-12)
    assert drop <= TOLERANCE, f"auto lost {drop:.2%} of {model.metric} (allowed {TOLERANCE:.0%})"
    if auto.result.outcome != "float kept":
        ratio = fp32.latency["1T"].median / auto.latency["1T"].median
        assert ratio >= 1.0 - TIMING_NOISE, f"auto's int8 model is slower than fp32 at 1 thread ({ratio:.2f}x)"


def _recurrent_model(path: Path) -> Path:
    """x [B, 4], state [2, B, 3] (batch on axis 1), scalar sr: outputs x summed and the state plus sr."""
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["y"], keepdims=1),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["state", "srf"], ["state_out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "recurrent",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, None, 3]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, None, 3]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_batch_one_cuts_each_input_on_its_own_batch_axis(tmp_path: Path) -> None:
    path = _recurrent_model(tmp_path / "m.onnx")
    feed = {"x": np.ones((5, 4), np.float32), "state": np.zeros((2, 5, 3), np.float32), "sr": np.array(16, np.int64)}
    assert batch_axes(path, feed) == {"x": 0, "state": 1, "sr": None}
    cut = batch_one(path, feed)
    assert cut["x"].shape == (1, 4) and cut["state"].shape == (2, 1, 3) and cut["sr"].shape == ()


def _row(name: str, tool: str, metric: float | None, ms: float | None, outcome: str) -> Row:
    result = ToolResult(
        tool,
        None if outcome == "error" else f"/m/{tool}.onnx",
        2.5,
        outcome,
        "ValueError: bad" if outcome == "error" else "",
        100.0,
    )
    latency = {} if ms is None else {"1T": Latency(ms, ms * 0.9, ms * 1.1), "all": Latency(ms / 2, ms / 3, ms)}
    return Row(load_model(name), result, metric, latency)


def test_table_writer_rows_speedups_and_summary(tmp_path: Path) -> None:
    fast = [
        _row("captcha_whisperer", "fp32", 0.90, 10.0, "fp32"),
        _row("captcha_whisperer", "ort_static", 0.895, 4.0, "int8"),
        _row("captcha_whisperer", "auto", 0.90, 5.0, "int8"),
    ]
    broken = [_row("silero_vad", "fp32", 1.0, 1.0, "fp32"), _row("silero_vad", "auto", None, None, "error")]
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n", encoding="utf-8")
    write_section(out, HEADING, render([fast, broken], "python -m benchmarks.zoo", MachineInfo.current(), "abc", 0.01))
    text = out.read_text(encoding="utf-8")
    assert "## Other\n\nkept" in text and text.count(HEADING) == 1
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| " + " | ".join(HEADER) + " |" and len(table) == 1 + 5
    auto = next(line for line in table if "| auto |" in line and "captcha" in line).split(" | ")
    assert auto[HEADER.index("speedup 1T")] == "2.00" and auto[HEADER.index("Δ vs fp32")] == "+0.0000"
    assert "error: ValueError: bad" in text
    summary = summarize([fast, broken], 0.01)
    assert (summary.models, summary.auto_kept, summary.auto_fast) == (2, 1, 1)
    assert summary.ort_better == ("captcha_whisperer ort_static 2.50x vs auto 2.00x",)
