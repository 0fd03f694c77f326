"""Dynamic int8: which ops, ORT's integer kernels, accuracy on a tiny BERT-like encoder, float ops, the plan."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from autocompress.errors import ConfigError
from autocompress.graph.naming import name_nodes
from autocompress.quant import dynamic, mixed_precision
from autocompress.quant.dynamic import (
    DYNAMIC_KERNELS,
    dynamic_candidate,
    dynamic_gains,
    dynamic_ops,
    quantize_dynamic_int8,
)
from autocompress.quant.mixed_precision import CHOSEN, OVER_TOLERANCE
from autocompress.quant.op_sensitivity import op_sensitivity
from autocompress.runtime.ort import Predictor, create_session

VOCAB, HIDDEN, HEADS = 60, 32, 4


class Block(nn.Module):
    """Self-attention and a GELU feed-forward, each with a residual and a LayerNorm (BERT's post-norm)."""

    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value, self.out = (nn.Linear(HIDDEN, HIDDEN) for _ in range(4))
        self.up, self.down = nn.Linear(HIDDEN, 2 * HIDDEN), nn.Linear(2 * HIDDEN, HIDDEN)
        self.norm1, self.norm2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], HEADS, -1).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(HIDDEN // HEADS) + bias
        context = (scores.softmax(-1) @ v).transpose(1, 2)
        x = self.norm1(x + self.out(context.reshape(x.shape[0], x.shape[1], HIDDEN)))
        return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))


class TinyEncoder(nn.Module):
    """Token embedding, two blocks under an attention mask, and a tanh pooler on the first token (a Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.norm = nn.Embedding(VOCAB, HIDDEN), nn.LayerNorm(HIDDEN)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.pooler = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(self.embed(ids))
        bias = (1.0 - mask[:, None, None, :].float()) * -1e4
        for block in self.blocks:
            x = block(x, bias)
        return x, torch.tanh(self.pooler(x[:, 0]))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> onnx.ModelProto:
    path = tmp_path_factory.mktemp("encoder") / "encoder.onnx"
    export_encoder(path)
    return name_nodes(onnx.load(str(path)))


def export_encoder(path) -> None:
    """TinyEncoder (seeded) as ONNX at `path`: inputs ids and mask, outputs hidden and pooled, dynamic batch and
    sequence length."""
    torch.manual_seed(0)
    feed = _feed(2, 9, seed=0)
    axes = {
        "ids": {0: "batch", 1: "sequence"},
        "mask": {0: "batch", 1: "sequence"},
        "hidden": {0: "batch", 1: "sequence"},
    }
    with torch.no_grad():
        torch.onnx.export(
            TinyEncoder().eval(),
            (torch.from_numpy(feed["ids"]), torch.from_numpy(feed["mask"])),
            str(path),
            input_names=["ids", "mask"],
            output_names=["hidden", "pooled"],
            dynamic_axes={**axes, "pooled": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _feed(batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), np.int64)
    mask[0, length - 2 :] = 0  # padding in the first sentence
    return {"ids": rng.integers(0, VOCAB, (batch, length), dtype=np.int64), "mask": mask}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _ops_of(model: onnx.ModelProto) -> dict[str, str]:
    return {n.name: n.op_type for n in model.graph.node}


def test_dynamic_ops_are_the_weight_matmuls_and_the_gemm_not_the_attention_scores(encoder):
    ops = dynamic_ops(encoder)
    types = _ops_of(encoder)
    assert len(ops) == 2 * 6 + 1
    assert sorted({types[op] for op in ops}) == ["Gemm", "MatMul"]
    activation_matmuls = [name for name, op_type in types.items() if op_type == "MatMul" and name not in ops]
    assert len(activation_matmuls) == 2 * 2  # scores and context per block stay out


def test_int8_kernels_run_in_ort_at_other_lengths_within_cosine(encoder, tmp_path):
    quantized = quantize_dynamic_int8(encoder)
    assert [i.name for i in quantized.graph.input] == ["ids", "mask"]
    assert [o.name for o in quantized.graph.output] == ["hidden", "pooled"]
    optimized = tmp_path / "optimized.onnx"
    create_session(quantized, optimized_model_path=str(optimized))
    kernels = [n.op_type for n in onnx.load(str(optimized)).graph.node if n.op_type in DYNAMIC_KERNELS]
    assert len(kernels) == len(dynamic_ops(encoder))  # one integer kernel per op, fused or not
    float_predictor, int8_predictor = Predictor(encoder), Predictor(quantized)
    for length in (5, 23):
        feed = _feed(3, length, seed=length)
        for ref, out in zip(float_predictor(feed), int8_predictor(feed)):
            assert out.shape == ref.shape
            assert _cosine(out, ref) >= 0.99


def test_float_ops_stay_float_and_the_rest_run_in_int8(encoder):
    ops = dynamic_ops(encoder)
    types = _ops_of(encoder)
    matmul, gemm = next(op for op in ops if types[op] == "MatMul"), next(op for op in ops if types[op] == "Gemm")
    quantized = _ops_of(quantize_dynamic_int8(encoder, [matmul, gemm]))
    assert quantized[matmul] == "MatMul" and f"{matmul}_quant" not in quantized
    assert f"{gemm}_MatMul_quant" not in quantized and quantized.get(f"{gemm}_MatMul", quantized.get(gemm)) in (
        "MatMul",
        "Gemm",
    )
    assert sum(op_type == "MatMulInteger" for op_type in quantized.values()) == len(ops) - 2


def test_an_unknown_float_op_is_refused_with_the_allowed_ones(encoder):
    with pytest.raises(ConfigError, match="not dynamic int8 ops"):
        quantize_dynamic_int8(encoder, ["no_such_matmul"])


def test_gains_cover_every_op(encoder):
    gains = dynamic_gains(encoder, _feed(2, 9, seed=1))
    assert set(gains) == set(dynamic_ops(encoder))
    assert all(math.isfinite(gain) for gain in gains.values())


def _fragile() -> onnx.ModelProto:
    """Three MatMuls; the middle one reads a tensor whose channel 0 is 1000x the others (its weight row scaled
    back), so one run-time scale for that input leaves the other channels almost no int8 steps."""
    rng = np.random.default_rng(0)
    outlier = np.ones(16, np.float32)
    outlier[0] = 1000.0
    w2 = rng.standard_normal((16, 16)).astype(np.float32)
    w2[0] /= 1000.0
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "w1"),
        numpy_helper.from_array(outlier, "outlier"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "w3"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="first"),
        helper.make_node("Mul", ["a", "outlier"], ["b"], name="scale_up"),
        helper.make_node("MatMul", ["b", "w2"], ["c"], name="fragile"),
        helper.make_node("MatMul", ["c", "w3"], ["y"], name="last"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 16])
    graph = helper.make_graph(nodes, "fragile", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _fragile_feeds(length: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(length)
    return [{"x": rng.standard_normal((2, length, 16)).astype(np.float32)} for _ in range(2)]


def test_the_op_reading_an_outlier_channel_ranks_most_sensitive():
    model = _fragile()
    ops = dynamic_ops(model)
    scores = op_sensitivity(model, ops, lambda float_ops: quantize_dynamic_int8(model, float_ops), _fragile_feeds(6))
    assert next(iter(scores)) == "fragile"
    assert scores["fragile"] > 10 * max(scores["first"], scores["last"])


def test_the_plan_keeps_the_fragile_op_float_and_quantizes_the_rest(monkeypatch):
    # Gains and latency are fixed here so that the choice depends on the sensitivity alone, not on this machine.
    model = _fragile()
    monkeypatch.setattr(dynamic, "dynamic_gains", lambda model, *args: dict.fromkeys(dynamic_ops(model), 1.0))
    timed = SimpleNamespace(
        models=[SimpleNamespace(median_ms=2.0), SimpleNamespace(median_ms=1.0)],
        ratios=[SimpleNamespace(interval=(1.9, 2.1), verdict="above")],
    )
    monkeypatch.setattr(mixed_precision, "compare_latency", lambda *args, **kwargs: timed)
    evaluation = _fragile_feeds(11)  # another length than the calibration feeds
    reference = Predictor(model)

    def drop_of(candidate: onnx.ModelProto) -> float:
        predictor = Predictor(candidate)
        return 1.0 - min(_cosine(predictor(f)[0], reference(f)[0]) for f in evaluation)

    scores = op_sensitivity(
        model, ["first", "fragile", "last"], lambda f: quantize_dynamic_int8(model, f), _fragile_feeds(6)
    )
    tolerance = scores["first"] + scores["last"] + 0.5 * scores["fragile"]  # room for all but the fragile op
    result = dynamic_candidate(model, _fragile_feeds(6), drop_of, tolerance, 0.01)
    reasons = {c.name: (c.int8, c.reason) for c in result.choices}
    assert reasons == {"first": (True, CHOSEN), "fragile": (False, OVER_TOLERANCE), "last": (True, CHOSEN)}
    assert _ops_of(result.model)["fragile"] == "MatMul"
    assert {"first_quant", "last_quant"} <= set(_ops_of(result.model))
    assert result.record["dynamic_int8"]["int8_ops"] == 2
    first, *_, last = result.record["dynamic_int8"]["verifications"]
    assert first["int8_ops"] == 3 and not first["accepted"]  # every op in int8 is checked first, and misses
    assert last["int8_ops"] == 2 and last["accepted"]
