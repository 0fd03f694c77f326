"""The report record: report.json is its to_dict(), strict JSON, and report.html renders it directly."""

from __future__ import annotations

import json
import math

from autocompress.report.html import render_html, write_html
from autocompress.report.record import HardwareInfo, Report, StageRecord
from autocompress.report.summary import ModelSummary
from autocompress.strategy.records import FALLBACK_REASON, Candidate, OpRecord, StageInfo, quantization_ops

#: The keys report.json has held since its first version; readers (the report command, the HTML page) rely on them.
REPORT_KEYS = {
    "baseline",
    "compressed",
    "speedup",
    "metric_higher_is_better",
    "strategy",
    "plan",
    "timeline",
    "candidates",
    "elapsed_s",
    "hardware",
    "data",
    "model",
    "speedup_by_threads",
    "size_ratio",
    "warnings",
}


def _summary(metric: float, latency_ms: float) -> ModelSummary:
    return ModelSummary(
        metric=metric,
        metric_name="IoU",
        latency_ms=latency_ms,
        latency_p90_ms=latency_ms * 1.1,
        size_mb=1.0,
        params=1000,
        macs=10_000,
    )


def _report(p90: float = 2.0) -> Report:
    auto = StageInfo(
        plan=["QuantPost: int8"],
        reasons=["model type: cnn"],
        details={"model_type": "cnn"},
        stages={"QuantPost": StageInfo(metric=0.7, details={"sensitivity": {"conv": 0.3}})},
    )
    timeline = [
        StageRecord("ChannelPrune", 3.0, StageInfo(details={"steps": 4})),
        StageRecord("Auto[QuantPost: int8]", 1.5, auto),
    ]
    hardware = HardwareInfo(
        deploy_hardware="cpu",
        latency_measured_on_target=True,
        note="",
        providers=["CPU"],
        latency_threads=1,
        machine="x86_64",
        processor="x86_64",
        cpu_count=2,
        onnxruntime="1.x",
        onnx="1.y",
    )
    compressed = _summary(0.7, 2.5)
    compressed.latency_p90_ms = p90
    return Report(
        baseline=_summary(0.71, 10.0),
        compressed=compressed,
        higher_is_better=True,
        timeline=timeline,
        candidates=[Candidate(stage="Auto[QuantPost: int8]", label="int8", metric=0.7, latency_ms=2.5)],
        elapsed_s=5.0,
        hardware=hardware,
        model_source="m.onnx",
        model_format="onnx",
        skipped_batches={"train": [3, 1], "eval": []},
    )


def test_to_dict_keeps_the_report_json_layout_and_derives_strategy_speedup_and_plan():
    out = _report().to_dict()
    assert set(out) == REPORT_KEYS
    assert out["speedup"] == 4.0 and out["strategy"] == ["ChannelPrune", "Auto[QuantPost: int8]"]
    assert out["plan"] == [{"plan": ["QuantPost: int8"], "reasons": ["model type: cnn"]}]
    assert out["timeline"][0] == {"stage": "ChannelPrune", "seconds": 3.0, "info": {"steps": 4}}
    assert out["timeline"][1]["info"]["QuantPost"] == {"sensitivity": {"conv": 0.3}, "metric": 0.7}
    assert out["data"] == {"train_batches_skipped_nonfinite": [1, 3], "eval_batches_skipped_nonfinite": []}
    assert out["model"] == {"source": "m.onnx", "format": "onnx"}
    assert out["hardware"]["latency_threads"] == 1 and out["candidates"][0]["label"] == "int8"
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_a_non_finite_number_becomes_null_and_is_named():
    out = _report(p90=math.inf).to_dict()
    assert out["compressed"]["latency_p90_ms"] is None
    assert out["non_finite"] == {"compressed.latency_p90_ms": "inf"}
    json.dumps(out, allow_nan=False)


def test_the_html_page_is_written_from_the_record_as_from_its_json(tmp_path):
    report = _report()
    page = write_html(report, tmp_path).read_text(encoding="utf-8")
    assert page == render_html(json.loads(json.dumps(report.to_dict())))
    assert "Automatic plan" in page and 'data-figure="sensitivity"' in page


def test_speedup_and_size_ratio_per_thread_count_are_derived_from_both_summaries():
    report = _report()
    report.baseline.latency_ms_by_threads = {"1": 10.0, "4": 4.0}
    report.compressed.latency_ms_by_threads = {"1": 2.5, "4": 2.0}
    report.compressed.size_mb = 0.25
    out = report.to_dict()
    assert out["speedup_by_threads"] == {"1": 4.0, "4": 2.0} and out["size_ratio"] == 4.0
    assert out["baseline"]["latency_ms_by_threads"] == {"1": 10.0, "4": 4.0}


def test_per_op_records_are_typed_in_the_record_and_plain_in_report_json():
    ops = [OpRecord("conv", "Conv", "pruned", kept=8, original=16), OpRecord("fc.w", "Gemm", "sparse", sparsity=0.5)]
    info = StageInfo(details={"ops": ops, "steps": 2})
    assert info.ops == ops
    assert info.to_dict() == {
        "steps": 2,
        "ops": [
            {"name": "conv", "op_type": "Conv", "action": "pruned", "kept": 8, "original": 16},
            {"name": "fc.w", "op_type": "Gemm", "action": "sparse", "sparsity": 0.5},
        ],
    }


class _Decision:
    def __init__(self, node: str, int8: bool, reason: str = "") -> None:
        self.node, self.op_type, self.int8, self.reason = node, "Conv", int8, reason


def test_quantization_rows_mark_the_fallback_nodes_float():
    decisions = [_Decision("a", True), _Decision("b", True), _Decision("c", False, "float_stem")]
    rows = quantization_ops(decisions, fallback=["b"])
    assert [(r.name, r.action, r.reason) for r in rows] == [
        ("a", "int8", ""),
        ("b", "float", FALLBACK_REASON),
        ("c", "float", "float_stem"),
    ]
