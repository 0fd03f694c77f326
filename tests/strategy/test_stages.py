"""End-to-end runs of each training strategy through AutoCompression on tiny models."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from autocompress import AutoCompression
from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.transformer import find_attention_blocks, prune_heads
from autocompress.runtime.ort import Predictor
from autocompress.strategy.transformer_prune import head_ablation_importance
from tests.prune.prune_models import export_encoder, torch_encoder

TRAIN = {"train_iter": 12, "eval_iter": 6, "learning_rate": 0.01}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(3)]


def _weights(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_channel_prune_is_physically_smaller(tiny_cnn, data, tmp_path):
    config = {"ChannelPrune": {"pruned_ratio": 0.5, "round_to": 4}, "Distillation": {}, "TrainConfig": TRAIN}
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data).compress()
    info = result.report["timeline"][0]["info"]
    assert info["params_after"] < 0.6 * info["params_before"]
    assert result.compressed.params < result.baseline.params
    out = Predictor(onnx.load(str(result.model_path)))({"x": data[0]["x"]})[0]
    assert out.shape == (4, 10) and np.isfinite(out).all()


def test_channel_prune_reports_the_layers_round_to_kept_whole(tiny_cnn, data, tmp_path, caplog):
    config = {"ChannelPrune": {"pruned_ratio": 0.5, "round_to": 16}, "Distillation": {}, "TrainConfig": TRAIN}
    with caplog.at_level(logging.WARNING, logger="autocompress.prune"):
        result = AutoCompression(
            tiny_cnn, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data
        ).compress()
    info = result.report["timeline"][0]["info"]
    assert [g["original"] for g in info["pruned_groups"]] == [32]  # the 16-channel conv is one block of 16
    (warning,) = info["warnings"]
    assert "round_to=16 keeps every channel of 1 of 2 groups" in warning and "(16 channels)" in warning
    assert warning in caplog.text


def test_channel_prune_by_sensitivity_reports_its_ratios_and_keeps_the_macs_budget(tiny_cnn, data, tmp_path):
    prune = {
        "pruned_ratio": 0.5,
        "round_to": 4,
        "criterion": "output_error",
        "ratio_allocation": "sensitivity",
        "batch_nums": 1,
    }
    config = {"ChannelPrune": prune, "Distillation": {}, "TrainConfig": TRAIN}
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data).compress()
    info = result.report["timeline"][0]["info"]
    assert info["allocated_ratios"] and all(0 < r < 1 for r in info["allocated_ratios"].values())
    assert info["macs_after"] < 0.7 * info["macs_before"]
    assert info["compensated_layers"] > 0
    out = Predictor(onnx.load(str(result.model_path)))({"x": data[0]["x"]})[0]
    assert out.shape == (4, 10) and np.isfinite(out).all()


def test_gmp_unstructured_prune_reaches_the_ratio(tiny_cnn, data, tmp_path):
    config = {
        "UnstructurePrune": {
            "prune_ratio": 0.6,
            "prune_params_type": None,
            "prune_strategy": "gmp",
            "local_sparsity": True,
            "gmp_config": {"pruning_iterations": 8, "pruning_steps": 4, "initial_ratio": 0.2},
        },
        "TrainConfig": TRAIN,
    }
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data).compress()
    info = result.report["timeline"][0]["info"]
    assert abs(info["total_sparsity"] - 0.6) < 0.02
    conv = [w for w in _weights(result.model_path).values() if w.ndim == 4]
    assert all(abs(float((w == 0).mean()) - 0.6) < 0.1 for w in conv)
    assert info["compressed_size_mb"] < info["dense_size_mb"]


def test_gmp_resumed_at_resume_iteration_finishes_the_ramp_in_the_remaining_steps(tiny_cnn, data, tmp_path):
    gmp = {"pruning_iterations": 40, "pruning_steps": 4, "initial_ratio": 0.2, "resume_iteration": 30}
    config = {
        "UnstructurePrune": {
            "prune_ratio": 0.6,
            "prune_params_type": "None",
            "prune_strategy": "gmp",
            "local_sparsity": True,
            "gmp_config": gmp,
        },
        "TrainConfig": TRAIN,
    }
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data).compress()
    assert abs(result.report["timeline"][0]["info"]["total_sparsity"] - 0.6) < 0.02  # 12 steps from iteration 30
    config["UnstructurePrune"]["gmp_config"] = {**gmp, "resume_iteration": 20}
    with pytest.raises(ConfigError, match=r"iteration 40 .*trains 12 steps from resume_iteration 20"):
        AutoCompression(tiny_cnn, data, save_dir=tmp_path / "p", config=config, eval_dataloader=data).compress()


def test_asp_exports_the_2_4_pattern(tiny_cnn, data, tmp_path):
    config = {"ASPPrune": {}, "Distillation": {}, "TrainConfig": TRAIN}
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data).compress()
    weights = _weights(result.model_path)
    sparse = result.report["timeline"][0]["info"]["sparse_weights"]
    assert sparse
    for name, axis in sparse.items():
        w = np.moveaxis(weights[name], axis, -1)  # input dim last
        groups = (w.reshape(-1, 4) != 0).sum(axis=1)
        assert (groups <= 2).all()


def test_distillation_pulls_a_perturbed_student_to_its_teacher(tiny_cnn, data, tmp_path):
    teacher = onnx.load(str(tiny_cnn))
    student = onnx.load(str(tiny_cnn))
    rng = np.random.default_rng(1)
    for t in student.graph.initializer:
        w = numpy_helper.to_array(t)
        if w.dtype == np.float32 and w.ndim >= 2:
            t.CopyFrom(numpy_helper.from_array(w + 0.2 * rng.standard_normal(w.shape).astype(np.float32), t.name))
    student_dir = tmp_path / "student"
    student_dir.mkdir()
    onnx.save(student, str(student_dir / "s.onnx"))
    reference = Predictor(teacher)

    def distance_to_teacher(predictor):
        return float(np.mean([np.mean((predictor(b)[0] - reference(b)[0]) ** 2) for b in data]))

    config = {
        "Distillation": {"teacher_model_dir": str(tiny_cnn)},
        "TrainConfig": {"train_iter": 40, "eval_iter": 20, "learning_rate": 0.05},
    }
    result = AutoCompression(
        student_dir,
        data,
        save_dir=tmp_path / "o",
        config=config,
        eval_callback=distance_to_teacher,
        higher_is_better=False,
    ).compress()
    assert result.compressed.metric < 0.5 * result.baseline.metric


def _zero_head(model: onnx.ModelProto, block, head: int) -> onnx.ModelProto:
    index = GraphIndex(model)
    w = index.constant_value(block.out_weight).copy()
    w[head * block.head_dim : (head + 1) * block.head_dim] = 0.0
    for t in model.graph.initializer:
        if t.name == block.out_weight:
            t.CopyFrom(numpy_helper.from_array(w, t.name))
    return model


def test_zero_importance_heads_are_removed_without_changing_outputs():
    model = export_encoder(hidden=32, heads=4, inner=64, layers=1)
    block = find_attention_blocks(model)[0]
    model = _zero_head(model, block, 2)
    x = np.random.default_rng(0).standard_normal((2, 5, 32)).astype(np.float32)
    scores = head_ablation_importance(model, [block], [{"x": x}])[block.name]
    assert scores[2] == 0.0 and (np.delete(scores, 2) > 0).all()
    keep = [h for h in range(4) if scores[h] > 0]
    pruned = prune_heads(model, {block.name: keep})
    np.testing.assert_allclose(Predictor(pruned)({"x": x})[0], Predictor(model)({"x": x})[0], atol=1e-5)


def test_transformer_prune_end_to_end(tmp_path):
    model_dir = tmp_path / "bert"
    model_dir.mkdir()
    onnx.save(export_encoder(hidden=32, heads=4, inner=64, layers=2), str(model_dir / "bert.onnx"))
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((2, 5, 32)).astype(np.float32)} for _ in range(3)]
    config = {"TransformerPrune": {"pruned_ratio": 0.5}, "Distillation": {}, "TrainConfig": TRAIN}
    result = AutoCompression(model_dir, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data).compress()
    heads = result.report["timeline"][0]["info"]["heads"]
    assert all(h["kept"] == 2 and h["original"] == 4 for h in heads.values()) and len(heads) == 2
    assert result.compressed.params < result.baseline.params


def test_transformer_prune_on_a_cnn_is_a_clear_error(tiny_cnn, data, tmp_path):
    with pytest.raises(ConfigError, match="no multi-head attention"):
        AutoCompression(
            tiny_cnn,
            data,
            save_dir=tmp_path / "o",
            config={"TransformerPrune": {}, "TrainConfig": TRAIN},
            eval_dataloader=data,
        ).compress()


def test_gmp_longer_than_the_training_is_refused_naming_both_lengths(tiny_cnn, data, tmp_path):
    config = {
        "UnstructurePrune": {
            "prune_ratio": 0.6,
            "prune_strategy": "gmp",
            "gmp_config": {"pruning_iterations": 40, "pruning_steps": 4},
        },
        "TrainConfig": TRAIN,
    }
    with pytest.raises(ConfigError, match=r"iteration 40 .*TrainConfig trains 12 steps"):
        AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data).compress()
    assert not (tmp_path / "o").exists()


def test_transformer_prune_of_torch_encoder_layers_with_packed_qkv(tmp_path):
    model_dir = tmp_path / "encoder"
    model_dir.mkdir()
    onnx.save(torch_encoder(batch=1), str(model_dir / "encoder.onnx"))  # static shapes, as the exporter wrote them
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((1, 5, 16)).astype(np.float32)} for _ in range(3)]
    config = {"TransformerPrune": {"pruned_ratio": 0.5}, "Distillation": {}, "TrainConfig": TRAIN}
    result = AutoCompression(model_dir, data, save_dir=tmp_path / "o", config=config, eval_dataloader=data).compress()
    heads = result.report["timeline"][0]["info"]["heads"]
    assert [(h["original"], h["kept"]) for h in heads.values()] == [(4, 2), (4, 2)]
    out = Predictor(onnx.load(str(result.model_path)))(data[0])[0]
    assert out.shape == (1, 5, 16) and np.isfinite(out).all()
