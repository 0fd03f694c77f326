"""The records a stage hands back: typed fields, details, and their report.json form."""

from __future__ import annotations

import json

from onnx import helper

from autocompress.strategy.base import StageResult
from autocompress.strategy.records import Candidate, StageInfo


def _model():
    node = helper.make_node("Relu", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", 1, [1])
    y = helper.make_tensor_value_info("y", 1, [1])
    return helper.make_model(helper.make_graph([node], "g", [x], [y]))


def test_stage_info_writes_details_sub_stages_and_known_typed_fields_side_by_side():
    sub = StageInfo(metric=0.5, details={"quantized_nodes": 3})
    info = StageInfo(
        plan=["QuantPost: int8"],
        reasons=["model type: cnn"],
        warnings=["slow"],
        details={"model_type": "cnn"},
        stages={"QuantPost": sub},
    )
    assert info.to_dict() == {
        "model_type": "cnn",
        "QuantPost": {"quantized_nodes": 3, "metric": 0.5},
        "plan": ["QuantPost: int8"],
        "reasons": ["model type: cnn"],
        "warnings": ["slow"],
    }
    # unknown fields are left out: no null metric, no empty plan or warnings
    assert StageInfo(details={"steps": 4}).to_dict() == {"steps": 4}


def test_a_mapping_from_a_stage_becomes_a_typed_record():
    info = StageInfo.from_mapping(
        {"metric": 0.9, "warning": "int8 is slower", "warnings": ["ops in float"], "steps": 3, "plan": ("a", "b")}
    )
    assert info.metric == 0.9 and info.plan == ["a", "b"] and info.details == {"steps": 3}
    assert info.warnings == ["ops in float", "int8 is slower"]
    assert StageInfo.from_mapping(info.to_dict()) == info


def test_stage_result_takes_a_record_or_a_mapping():
    assert StageResult(_model(), {"metric": 1.0, "stamp": "hi"}).info == StageInfo(metric=1.0, details={"stamp": "hi"})
    record = StageInfo(metric=2.0)
    assert StageResult(_model(), record).info is record
    assert StageResult(_model()).info == StageInfo() and StageResult(_model()).candidates == []


def test_a_candidate_serialises_its_figures_but_not_its_model():
    tried = Candidate(
        label="int8",
        params={"variant": "int8"},
        metric=0.7,
        latency_ms=2.5,
        size_mb=0.1,
        accepted=False,
        reason="metric drop beyond the tolerance",
        model=_model(),
        info=StageInfo(metric=0.7),
    )
    out = tried.to_dict()
    assert out == {
        "stage": "",
        "params": {"variant": "int8"},
        "metric": 0.7,
        "latency_ms": 2.5,
        "label": "int8",
        "size_mb": 0.1,
        "accepted": False,
        "reason": "metric drop beyond the tolerance",
    }
    json.dumps(out, allow_nan=False)
    # a probe with no metric keeps the key (the report's plot skips it), and no unknown optional ones
    assert Candidate(params={"plan": "int8"}, latency_ms=1.0, speedup=2.0).to_dict() == {
        "stage": "",
        "params": {"plan": "int8"},
        "metric": None,
        "latency_ms": 1.0,
        "speedup": 2.0,
    }
