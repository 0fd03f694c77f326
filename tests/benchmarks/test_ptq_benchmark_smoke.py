"""The PTQ benchmark's core on a tiny CNN: both quantizers, every measurement, the markdown it writes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from benchmarks.common import MachineInfo, interleaved_latency, write_section
from benchmarks.ptq_cases import Case, DataSizes
from benchmarks.ptq_vs_ort import (
    HEADING,
    FeedReader,
    measure_case,
    ort_preprocess,
    quantize_case,
    render,
    targets_table,
)
from examples.common.evaluation import make_agreement_eval
from examples.common.models import ort_predictor


@pytest.fixture
def tiny_case(tiny_cnn, tmp_path) -> Case:
    rng = np.random.default_rng(0)
    calibration = [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(3)]
    evaluation = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    return Case(
        name="tiny",
        fp32_path=tiny_cnn,
        calibration=calibration,
        evaluate=make_agreement_eval(ort_predictor(tiny_cnn), evaluation, 8, "x"),
        metric_name="agreement",
        latency_feed={"x": evaluation[:1]},
        quant_post={"algo": "abs_max"},
    )


def test_both_quantizers_are_measured_side_by_side(tiny_case, tmp_path):
    variants = quantize_case(tiny_case, tmp_path / "work", full_quantize=False)
    assert list(variants) == ["fp32", "ours", "ort_minmax", "ort_entropy"]
    for name in ("ours", "ort_minmax", "ort_entropy"):
        ops = {n.op_type for n in onnx.load(str(variants[name].path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, name  # really quantized, not a copy of fp32

    result = measure_case(tiny_case, variants, tmp_path / "work", latency_seconds=0.2)
    fp32 = result.variants["fp32"]
    assert fp32.metric == 1.0  # agreement of the fp32 model with itself
    for v in result.variants.values():
        assert 0.0 <= v.metric <= 1.0 and set(v.latency_ms) == {1, 2} and min(v.latency_ms.values()) > 0
        assert v.optimized_ops  # ORT's optimized graph was written and read
    assert any(op.startswith("QLinear") for op in result.variants["ours"].optimized_ops)
    assert result.variants["ours"].quantize_seconds >= 0 and result.variants["ort_minmax"].quantize_seconds > 0
    assert "algo=abs_max" in result.variants["ours"].settings

    table = targets_table([result], hpo=None, rss={("ours", 10): 100.0, ("ours", 200): 150.0})
    assert "| calibration peak RSS flat (10 -> 200 batches, growth <= 10%) | 100 -> 150 MB (+50%) | no |" in table
    body = render([result], None, None, MachineInfo.current(), "cmd", ("1 / 1 / 1", "2 / 2 / 2"), DataSizes(), 1.0)
    assert "| tiny | ours |" in body and "| tiny | ort_entropy |" in body and "at start 1 / 1 / 1" in body


def test_ort_preprocess_upgrades_old_opsets_for_per_channel(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), str(tmp_path / "old.onnx"), opset_version=11, dynamo=False)
    _, how = ort_preprocess(tmp_path / "old.onnx", tmp_path / "pre.onnx")
    assert how.startswith("opset 11->13")
    opset = next(o.version for o in onnx.load(str(tmp_path / "pre.onnx")).opset_import if o.domain in ("", "ai.onnx"))
    assert opset == 13


def test_feed_reader_rewinds_to_the_same_batches():
    feeds = [{"x": np.full((1, 2), i, np.float32)} for i in range(3)]
    reader = FeedReader(feeds)
    first = [reader.get_next() for _ in range(4)]
    reader.rewind()
    assert first[3] is None and reader.get_next() is feeds[0]


def test_interleaved_latency_measures_every_model(tiny_cnn):
    feed = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    latency = interleaved_latency({"a": tiny_cnn, "b": tiny_cnn}, feed, threads=1, rounds=2, seconds=0.05, min_runs=4)
    assert set(latency) == {"a", "b"} and all(ms > 0 for ms in latency.values())


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        "# Benchmarks\n\n## Other\n\nkeep me\n\n" + HEADING + "\n\nold\n\n### sub\n\nold too\n\n## Later\n\nkeep\n"
    )
    write_section(path, HEADING, "new body\n\n### sub\n\nnew sub")
    text = path.read_text()
    assert "keep me" in text and "## Later\n\nkeep" in text and "new body" in text and "new sub" in text
    assert "old" not in text  # both the old body and its subsection are gone
    write_section(tmp_path / "fresh.md", HEADING, "x")
    assert (tmp_path / "fresh.md").read_text() == f"# Benchmarks\n\n{HEADING}\n\nx\n"
