"""Decisions of the automatic strategy choice."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from autocompress import AutoCompression
from autocompress.runtime.ort import Predictor
from autocompress.strategy.base import StageResult, stage_class
from autocompress.strategy.records import StageInfo
from tests.conftest import export_tiny_cnn

TRAIN = {"train_iter": 6, "eval_iter": 3}


def _data(size: int, n: int = 3):
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((2, 3, size, size)).astype(np.float32)} for _ in range(n)]


class OutlierNet(nn.Module):
    """One channel 10^4 times larger than the others feeds a conv that reads every channel: per-tensor int8 of that
    input crushes the ordinary channels, so PTQ of this model is bad on purpose."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 1)
        with torch.no_grad():
            self.a.weight[0] *= 1e4
            self.a.bias[0] *= 1e4
            self.b.weight[:, 0] *= 1e-4

    def forward(self, x):
        return self.b(self.a(x))


def test_ptq_is_kept_when_it_is_accurate(tiny_cnn, tmp_path):
    data = _data(16)
    config = {"TrainConfig": TRAIN, "Global": {"auto_max_relative_drop": 0.03}}
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", eval_dataloader=data, config=config).compress()
    (plan,) = result.record.plans
    assert plan.reasons[0] == "model type: cnn" and plan.details["model_type"] == "cnn"
    assert not any("search" in r for r in plan.reasons)
    assert plan.plan[-1] in (
        "QuantPost: int8",
        "QuantPost: int8 (mixed precision)",
        "float (no faster plan here)",
    )
    assert result.report["plan"] == [{"plan": plan.plan, "reasons": plan.reasons}]
    # each PTQ variant tried is a candidate with its figures and verdict; the report keeps no model
    (tried,) = [c for c in result.record.candidates if c.label == "int8"]
    assert tried.latency_ms > 0 and tried.size_mb > 0 and tried.model is None
    # within the tolerance, it is chosen unless it is not faster than float at 1 thread and at all cores
    assert tried.accepted is True or tried.reason.startswith("not surely 1.05x faster than float")
    assert (tried.accepted is True) == (plan.plan[-1] == "QuantPost: int8")
    assert tried.stage == result.strategy[0] and tried.params == {"variant": "int8"}


def test_a_sensitive_model_goes_beyond_the_ptq_trial(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    torch.onnx.export(
        OutlierNet().eval(),
        torch.randn(1, 3, 8, 8),
        str(model_dir / "m.onnx"),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        opset_version=13,
        dynamo=False,
    )
    data = _data(8)
    config = {"TrainConfig": TRAIN, "Global": {"auto_max_relative_drop": 0.001}}
    result = AutoCompression(model_dir, data, save_dir=tmp_path / "o", eval_dataloader=data, config=config).compress()
    reasons = result.report["plan"][0]["reasons"]
    assert any("full PTQ search" in r for r in reasons)


def test_unreachable_target_says_so_with_the_best_reachable(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    export_tiny_cnn(model_dir / "m.onnx", size=32)
    data = _data(32)
    result = AutoCompression(
        model_dir,
        data,
        save_dir=tmp_path / "o",
        eval_dataloader=data,
        target_speedup="100x",
        config={"TrainConfig": TRAIN},
    ).compress()
    info = result.record.timeline[0].info
    assert info.details["reachable"] is False and info.details["target_speedup"] == 100.0
    assert any("not reachable" in r and "best reachable" in r for r in info.reasons)
    probes = {c.label: c for c in result.record.candidates if "plan" in c.params}
    assert set(probes) >= {"int8", "prune 20%"}
    assert all(c.speedup > 0 and c.metric is None for c in probes.values())
    # the plan that was run is a candidate with its verdict; when it is kept, its stages are sub-stages of auto's
    run = next(c for c in result.record.candidates if c.params.get("variant") in probes)
    assert run.accepted is not None and run.metric is not None
    assert set(info.stages) <= {"ChannelPrune", "Distillation", "QuantPost"}
    assert bool(info.stages) == (run.accepted is True)


def test_edge_hardware_is_measured_by_proxy(tiny_cnn, tmp_path):
    data = _data(16)
    result = AutoCompression(
        tiny_cnn,
        data,
        save_dir=tmp_path / "o",
        eval_dataloader=data,
        deploy_hardware="SD710",
        config={"TrainConfig": TRAIN},
    ).compress()
    assert result.report["hardware"]["latency_measured_on_target"] is False
    assert any("proxy" in r for r in result.report["plan"][0]["reasons"])


def test_a_qat_model_worse_than_the_best_ptq_is_not_returned(tmp_path, monkeypatch):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    torch.onnx.export(
        OutlierNet().eval(),
        torch.randn(1, 3, 8, 8),
        str(model_dir / "m.onnx"),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        opset_version=13,
        dynamo=False,
    )
    qat_stage = stage_class("QuantAware")

    def ruined_qat(self, model, ctx):  # a training run that ends far from the teacher
        ruined = onnx.ModelProto()
        ruined.CopyFrom(model)
        for tensor in ruined.graph.initializer:
            tensor.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(tensor)), tensor.name))
        return StageResult(ruined, StageInfo(details={"steps": 0}))

    monkeypatch.setattr(qat_stage, "run", ruined_qat)
    data = _data(8)
    config = {"TrainConfig": TRAIN, "Global": {"auto_max_relative_drop": 0.001}}
    result = AutoCompression(model_dir, data, save_dir=tmp_path / "o", eval_dataloader=data, config=config).compress()
    plan = result.report["plan"][0]
    (qat,) = [c for c in result.record.candidates if c.label == "QAT + distillation"]
    assert qat.accepted is False and "beyond the tolerance" in qat.reason
    assert not any("QuantAware" in step for step in plan["plan"])
    out = Predictor(str(result.model_path))(data[0])[0]
    assert np.abs(out).max() > 0  # not the zeroed QAT model


def test_a_transformer_tries_dynamic_int8_and_returns_a_model_within_tolerance(tmp_path):
    """BERT-like: int64 ids and an attention mask. Dynamic int8 of its MatMuls is a candidate with a verdict (not a
    failure), and whatever auto returns keeps the mean cosine of the embeddings within the tolerance."""
    from tests.quant.test_dynamic import _cosine, _feed, export_encoder

    path = tmp_path / "encoder.onnx"
    export_encoder(path)
    data = [_feed(2, 9, seed) for seed in range(4)]
    reference = Predictor(onnx.load(str(path)))
    expected = [reference(f)[0] for f in data]

    def cosine(predictor) -> float:
        return float(np.mean([_cosine(predictor(f)[0], e) for f, e in zip(data, expected)]))

    config = {"TrainConfig": TRAIN, "Global": {"time_budget": 90}}
    result = AutoCompression(str(path), data, save_dir=tmp_path / "o", eval_callback=cosine, config=config).compress()
    (dynamic,) = [c for c in result.record.candidates if c.label == "dynamic int8 (MatMul/Gemm)"]
    assert dynamic.accepted is not None and not (dynamic.reason or "").startswith("failed")
    assert cosine(Predictor(onnx.load(result.model_path))) >= 0.99 * cosine(reference)
    from autocompress.report.html import op_rows

    assert all(row[3] for row in op_rows(result.report))  # every per-op row says what was done
