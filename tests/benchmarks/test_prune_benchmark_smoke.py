"""The pruning benchmark's core on a tiny CNN with a 1x1 conv: every variant, the latency loop, the markdown."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from benchmarks.common import MachineInfo
from benchmarks.prune_bench import Budget, PruneCase, build_variants, measure_latency, render
from benchmarks.sparse_conv_speed import KERNELS, heaviest_conv1x1, magnitude_pruned, time_layer, time_sparse_layers
from examples.common.evaluation import make_agreement_eval
from examples.common.loader import BatchLoader
from examples.common.models import ort_predictor

TINY_BUDGET = Budget(train_iter=2, calibration_batches=1, latency_seconds=0.05)


class TinyPointwiseCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.fixture
def tiny_case(tmp_path) -> PruneCase:
    torch.manual_seed(0)
    path = tmp_path / "fp32" / "model.onnx"
    path.parent.mkdir()
    torch.onnx.export(
        TinyPointwiseCNN().eval(),
        torch.randn(1, 3, 16, 16),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    rng = np.random.default_rng(0)
    train = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    evaluation = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    return PruneCase(
        name="tiny",
        fp32_path=path,
        input_shapes={"x": [-1, 3, 16, 16]},
        train_loader=BatchLoader(train, 4, "x"),
        evaluate=make_agreement_eval(ort_predictor(path), evaluation, 8, "x"),
        metric_name="agreement",
        latency_feeds={"16x16": {"x": evaluation[:1]}},
        count_shapes={"x": [1, 3, 16, 16]},
        distillation={"loss": "l2", "node": ["teacher_logits", "logits"], "alpha": 1.0},
        quant_post={"algo": "abs_max"},
        learning_rate=1e-3,
        sparse=True,
        note="tiny",
    )


def test_every_variant_is_built_measured_and_rendered(tiny_case, tmp_path):
    variants = build_variants(tiny_case, TINY_BUDGET, tmp_path / "work", tp_python=None)
    assert list(variants) == ["fp32", "prune30", "prune30_int8", "int8", "sparse75"]
    fp32 = variants["fp32"]
    assert fp32.metric == 1.0
    assert variants["prune30"].params < fp32.params and variants["prune30"].macs < fp32.macs  # channels really removed
    for name in ("prune30_int8", "int8"):
        assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(variants[name].path)).graph.node}, name
    assert variants["prune30_int8"].macs == variants["prune30"].macs  # quantized the pruned model, not the fp32 one
    sparse = variants["sparse75"].info["UnstructurePrune"]
    assert sparse["total_sparsity"] == pytest.approx(0.75, abs=0.01) and len(sparse["sparsity"]) == 1
    assert variants["sparse75"].macs == fp32.macs  # zeros stay dense

    measure_latency(tiny_case, variants, seconds=0.05)
    assert all(set(v.latency_ms) == {("16x16", 1), ("16x16", 2)} for v in variants.values())

    layer = heaviest_conv1x1(onnx.load(str(variants["sparse75"].path)), {"x": [1, 3, 16, 16]}, 4)
    assert len(layer) == 1 and layer[0].weight.shape == (64, 32) and (layer[0].height, layer[0].width) == (16, 16)
    timings = time_sparse_layers(layer, (0.9,), seconds=0.02)
    assert [round(t.sparsity, 2) for t in timings] == [0.75, 0.9]

    body = render([(tiny_case, variants)], timings, MachineInfo.current(), "cmd", ("1", "2"), TINY_BUDGET)
    assert "| tiny | prune30_int8 |" in body and "| tiny | sparse75 |" in body
    assert "tiny: ChannelPrune 30% + int8 is" in body and "| 稀疏 / UnstructurePrune 75% conv1x1" in body
    assert "| conv1x1_only" not in body and "### Sparse 1x1 convolutions in ONNX Runtime" in body


def test_a_test_set_scores_the_rows_and_channel_prune_fine_tunes_its_own_length(tiny_case, tmp_path):
    tiny_case.sparse, tiny_case.channel_train_iter = False, 3
    scored = []
    tiny_case.test = lambda predictor: scored.append(predictor) or 0.25
    variants = build_variants(tiny_case, TINY_BUDGET, tmp_path / "work", tp_python=None)
    assert {v.metric for v in variants.values()} == {0.25} and len(scored) == len(variants)
    assert variants["prune30"].info["ChannelPrune"]["steps"] == 3  # on a cosine schedule, not the budget's 2


def test_no_fine_tune_comparison_without_torch_pruning(tiny_case, tmp_path):
    tiny_case.sparse = False
    variants = build_variants(tiny_case, TINY_BUDGET, tmp_path / "work", tp_python=None)
    assert "prune30_noft" in variants and "torch_pruning30_noft" not in variants
    # the sensitivity-allocated pruning without fine-tune is the fine-tuned row's pruning (same batches, same ratios)
    assert variants["prune30_sens_noft"].params == variants["prune30"].params
    assert variants["prune30_noft"].macs < variants["fp32"].macs


def test_every_sparse_kernel_computes_the_dense_conv():
    weight = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    pruned = magnitude_pruned(weight, 0.75)
    assert np.mean(pruned == 0) == 0.75
    kept = pruned != 0
    assert np.abs(weight[kept]).min() >= np.abs(weight[~kept]).max()  # the smallest magnitudes went
    from benchmarks.sparse_conv_speed import Conv1x1Layer

    timing = time_layer(Conv1x1Layer("w", pruned, 4, 5), pruned, seconds=0.02)  # asserts all kernels agree
    assert set(timing.ms) == set(KERNELS) and all(ms > 0 for ms in timing.ms.values())
    assert timing.row()[:4] == ["w", "16x8", 20, "0.75"]
