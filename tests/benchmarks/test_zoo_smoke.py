"""The zoo's runner on its smallest real models (auto mode's contract, with the op counts and the plan it reports),
and the batch-1 cut of a feed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from autocompress.config.global_section import GlobalConfig
from benchmarks.zoo.runner import batch_axes, batch_one, compress_model, measure_model
from benchmarks.zoo.table import plan_cell
from benchmarks.zoo.tools import Sizes, load_model

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
    assert plan_cell("auto", auto.report) != "-", "auto's report.json names no plan"
    assert (auto.ops.int8 > 0) == (auto.result.outcome == "int8"), f"{auto.ops} for an {auto.result.outcome} model"
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


def test_tools_option_takes_known_tools_and_refuses_others(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.zoo.__main__ import parse_args

    assert parse_args(["--tools", "auto, ort_static", "--keep-rows"]).tools == ["auto", "ort_static"]
    with pytest.raises(SystemExit):
        parse_args(["--tools", "auto,ort_magic"])
    assert "unknown tools ['ort_magic']; known: fp32, ort_static" in capsys.readouterr().err
