"""The contract of automatic mode: no crash, never a broken or slower model, bounded time."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from autocompress import AutoCompression
from autocompress.errors import ConfigError
from autocompress.runtime.ort import Predictor, all_cores, resolve_hardware
from autocompress.strategy import auto
from autocompress.strategy.auto import AutoStage
from autocompress.strategy.auto_contract import guarded, speed_figures
from autocompress.strategy.base import StageResult, stage_class
from autocompress.strategy.records import Candidate, StageInfo
from autocompress.strategy.targets import default_time_budget, detect_model_type
from tests.prune.prune_models import export_encoder
from tests.strategy.test_auto import TRAIN, OutlierNet

SEARCH, QAT, PRUNE = "int8 (searched)", "QAT + distillation", "prune heads/FFN + int8"


def _data(shape: tuple[int, ...], n: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def _export(module: nn.Module, path, shape: tuple[int, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module.eval(),
        torch.randn(*shape),
        str(path),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        opset_version=13,
        dynamo=False,
    )


def _ruined(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with random weight matrices and kernels (shapes kept): a compression that went wrong."""
    rng = np.random.default_rng(1)
    ruined = onnx.ModelProto()
    ruined.CopyFrom(model)
    for tensor in ruined.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.ndim >= 2 and np.issubdtype(value.dtype, np.floating):
            tensor.CopyFrom(numpy_helper.from_array(rng.standard_normal(value.shape).astype(value.dtype), tensor.name))
    return ruined


def _candidates(result) -> dict[str, Candidate]:
    return {c.label: c for c in result.record.candidates if c.label}


class AttentionLikeCNN(nn.Module):
    """Convs around a projection-free self-attention over the pixels: detected as a transformer, yet it has no
    Q/K/V heads for TransformerPrune to remove."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        tokens = y.flatten(2).transpose(1, 2)
        attention = torch.softmax(tokens @ tokens.transpose(1, 2) / 8**0.5, dim=-1)
        return self.head((attention @ tokens).transpose(1, 2).reshape(y.shape))


def test_a_plan_that_finds_nothing_to_do_is_recorded_and_the_next_is_used(tmp_path, caplog, monkeypatch):
    path = tmp_path / "m" / "m.onnx"
    _export(AttentionLikeCNN(), path, (1, 3, 6, 6))
    assert detect_model_type(onnx.load(str(path))) == "transformer"
    data = _data((2, 3, 6, 6))
    config = {"TrainConfig": TRAIN, "Global": {"auto_max_relative_drop": 0.5}}
    # head pruning is tried when no cheaper plan is within the tolerance: here no int8 plan can be built
    monkeypatch.setattr(stage_class("QuantPost"), "run", _no_int8_kernel)
    with caplog.at_level(logging.WARNING, logger="autocompress.strategy.auto_contract"):
        result = AutoCompression(
            path.parent, data, save_dir=tmp_path / "o", eval_dataloader=data, config=config
        ).compress()
    pruned = _candidates(result)[PRUNE]
    assert pruned.accepted is False and pruned.reason.startswith("failed: ConfigError: TransformerPrune found no")
    assert any(PRUNE in r.message and "ConfigError" in r.message for r in caplog.records)
    plan = result.record.plans[0].plan
    assert plan[-1] == "float (no plan within tolerance)"
    (reported,) = [c for c in result.report["candidates"] if c.get("label") == PRUNE]
    assert reported["accepted"] is False and reported["reason"] == pruned.reason


def _no_int8_kernel(self, model, ctx):
    raise RuntimeError("no int8 kernel for this op")


def test_a_quantizer_that_raises_ends_with_the_float_model_and_the_reason(tiny_cnn, tmp_path, monkeypatch):
    monkeypatch.setattr(stage_class("QuantPost"), "run", _no_int8_kernel)
    data = _data((2, 3, 16, 16))
    result = AutoCompression(
        tiny_cnn, data, save_dir=tmp_path / "o", eval_dataloader=data, config={"TrainConfig": TRAIN}
    ).compress()
    tried = _candidates(result)
    assert tried["int8"].reason == "failed: RuntimeError: no int8 kernel for this op" and tried["int8"].model is None
    assert tried[SEARCH].reason.startswith("skipped: every PTQ trial failed") and tried[QAT].accepted is False
    assert result.record.plans[0].plan == ["float (no plan within tolerance)"]
    np.testing.assert_allclose(
        Predictor(str(result.model_path))(data[0])[0], Predictor(str(tiny_cnn))(data[0])[0], rtol=1e-5, atol=1e-6
    )


def test_a_transformer_plan_that_breaks_the_model_is_not_returned(tmp_path, monkeypatch):
    model_dir = tmp_path / "bert"
    model_dir.mkdir()
    onnx.save(export_encoder(hidden=16, heads=2, inner=32, layers=1), str(model_dir / "bert.onnx"))
    data = _data((2, 5, 16))
    reference = [Predictor(str(model_dir / "bert.onnx"))(feed)[0] for feed in data]

    def cosine(predictor) -> float:
        outputs = [predictor(feed)[0] for feed in data]
        return float(
            np.mean(
                [np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12) for a, b in zip(outputs, reference)]
            )
        )

    monkeypatch.setattr(
        stage_class("TransformerPrune"), "run", lambda self, model, ctx: StageResult(_ruined(model), StageInfo())
    )
    # head pruning is tried when no cheaper plan is within the tolerance: here there is none
    monkeypatch.setattr(AutoStage, "_ptq_trials", lambda self, model, ctx: [])
    monkeypatch.setattr(AutoStage, "_dynamic", _no_int8_kernel)
    result = AutoCompression(
        model_dir, data, save_dir=tmp_path / "o", eval_callback=cosine, config={"TrainConfig": TRAIN}
    ).compress()
    pruned = _candidates(result)[PRUNE]
    assert pruned.accepted is False and "beyond the tolerance" in pruned.reason
    assert not any("TransformerPrune" in step for step in result.record.plans[0].plan)
    assert result.compressed.metric >= 0.99 * result.baseline.metric


def test_a_tiny_time_budget_skips_the_search_and_qat_and_says_why(tmp_path):
    path = tmp_path / "m" / "m.onnx"
    _export(OutlierNet(), path, (1, 3, 8, 8))
    data = _data((2, 3, 8, 8))
    config = {"TrainConfig": TRAIN, "Global": {"auto_max_relative_drop": 0.001, "time_budget": 0.05}}
    result = AutoCompression(path.parent, data, save_dir=tmp_path / "o", eval_dataloader=data, config=config).compress()
    tried = _candidates(result)
    assert tried["int8"].accepted is False and tried["int8"].metric is not None
    for label in (SEARCH, QAT):
        assert tried[label].accepted is False and tried[label].reason.startswith("skipped: estimated ")
        assert tried[label].reason.endswith(" left")
    info = result.record.plans[0]
    assert info.details["time_budget_s"] == 0.05 and info.plan == ["float (no plan within tolerance)"]
    assert result.compressed.metric == pytest.approx(result.baseline.metric, abs=1e-6)


def test_a_plan_slower_at_all_cores_leaves_the_float_model_with_the_figures(tiny_cnn, tmp_path, monkeypatch):
    figures = {
        "1": {"float_ms": 1.0, "ms": 0.5, "speedup": 2.0, "interval": [1.9, 2.1]},
        "4": {"float_ms": 1.0, "ms": 1.1, "speedup": 0.91, "interval": [0.85, 0.97]},
    }
    monkeypatch.setattr(auto, "speed_figures", lambda float_model, model, ctx, threshold: figures)
    data = _data((2, 3, 16, 16))
    config = {"TrainConfig": TRAIN, "Global": {"auto_max_relative_drop": 0.5}}
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", eval_dataloader=data, config=config).compress()
    info = result.record.plans[0]
    assert info.plan == ["float (no faster plan here)"] and info.details["latency_check"] == figures
    assert any("0.91x at 4 threads" in r for r in info.reasons)
    reason = "not surely 1.05x faster than float: 2.00x at 1 thread, 0.91x at 4 threads"
    assert _candidates(result)["int8"].reason == reason
    assert result.report["timeline"][0]["info"]["latency_check"] == figures


def test_speed_figures_measure_both_models_at_1_thread_and_all_cores(tiny_cnn):
    model = onnx.load(str(tiny_cnn))
    ctx = SimpleNamespace(sample_feed=_data((1, 3, 16, 16), 1)[0], hardware=resolve_hardware("cpu"))
    figures = speed_figures(model, _ruined(model), ctx)
    assert set(figures) == {"1", str(all_cores())}
    for row in figures.values():
        assert row["float_ms"] > 0 and row["ms"] > 0
        assert row["speedup"] == pytest.approx(row["float_ms"] / row["ms"], rel=1e-2)


def test_the_guard_records_failures_but_lets_fatal_errors_through():
    def failing() -> Candidate:
        raise ValueError("bad axis")

    assert guarded("plan", failing) == Candidate(
        label="plan", params={"variant": "plan"}, accepted=False, reason="failed: ValueError: bad axis"
    )
    for fatal in (KeyboardInterrupt, MemoryError, SystemExit):

        def raising(error: type[BaseException] = fatal) -> Candidate:
            raise error()

        with pytest.raises(fatal):
            guarded("plan", raising)


def test_time_budget_default_scales_with_macs_and_single_cores_and_must_be_positive(tiny_cnn, tmp_path):
    assert default_time_budget(500_000_000, 2) == 600.0
    assert default_time_budget(500_000_000, 16) == 600.0
    assert default_time_budget(3_000_000_000, 2) == 1800.0
    assert default_time_budget(500_000_000, 1) == 1200.0
    with pytest.raises(ConfigError, match="time_budget"):
        AutoCompression(
            tiny_cnn,
            _data((2, 3, 16, 16)),
            save_dir=tmp_path / "o",
            eval_dataloader=_data((2, 3, 16, 16)),
            config={"Global": {"time_budget": 0}},
        )


def test_a_speedup_whose_interval_reaches_below_1_is_not_taken_for_one():
    """A median 1.2x whose confidence interval reaches below 1 (a loaded machine) does not count as faster."""
    assert auto._surely_faster({"speedup": 1.2, "interval": [1.05, 1.4]})
    assert not auto._surely_faster({"speedup": 1.2, "interval": [0.95, 1.4]})
    assert not auto._surely_faster({"speedup": 1.2, "interval": None})
    assert not auto._surely_faster({"speedup": 1.03, "interval": [1.01, 1.05]})


def test_accepted_plans_are_ranked_by_latencies_measured_side_by_side(monkeypatch):
    """Each plan's own latency was measured alone, at another moment of the machine's load; the ranking that picks
    the plan to keep is measured again with the plans taking turns."""
    from types import SimpleNamespace

    from autocompress.strategy.records import Candidate

    first, second = (Candidate(label=name, latency_ms=ms, model=name) for name, ms in (("a", 7.8), ("b", 14.0)))
    monkeypatch.setattr(auto, "interleaved_latency", lambda models, *args: [12.8, 9.9])
    ctx = SimpleNamespace(sample_feed={}, hardware=None, threads=1)
    ranked = auto.AutoStage._fastest_first(None, [first, second], ctx)
    assert [p.label for p in ranked] == ["b", "a"] and ranked[0].latency_ms == 9.9


def test_a_plan_is_kept_when_surely_faster_at_the_deploy_threads_and_not_slower_at_the_others():
    sure = {"speedup": 1.5, "interval": [1.44, 1.62]}
    wide = {"speedup": 1.49, "interval": [0.96, 2.0]}  # all cores of a shared machine
    slower = {"speedup": 0.91, "interval": [0.85, 0.97]}
    assert auto._worth_keeping({"1": sure, "2": wide}, deploy_threads=1)
    assert not auto._worth_keeping({"1": wide, "2": sure}, deploy_threads=1)
    assert auto._worth_keeping({"1": wide, "2": sure}, deploy_threads=2)
    assert not auto._worth_keeping({"1": sure, "2": slower}, deploy_threads=1)
