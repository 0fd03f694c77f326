import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autocompress.config.strategies import Distillation, MultiTeacherDistillation
from autocompress.config.train import TrainConfig
from autocompress.distill.distiller import Distiller
from autocompress.distill.losses import fsp_loss, l2_loss, soft_label_loss
from autocompress.errors import ConfigError
from autocompress.runtime.torch_graph import TorchGraph
from autocompress.train.loop import train_loop

from .graphs import CONV1, CONV2, LOGITS, export


def _graph(model):
    return TorchGraph(model), model


def _feeds(seed=0, n=4, name="x"):
    return {name: torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32))}


def _single(config: dict, student_model, teacher_model) -> Distiller:
    student = TorchGraph(student_model)
    return Distiller.from_config(Distillation.parse(config), student, student_model, [_graph(teacher_model)])


def test_distillation_training_moves_the_student_toward_the_teacher(tmp_path):
    teacher_model, student_model = export(seed=0), export(seed=1)
    distiller = _single({"loss": "l2", "node": ["teacher_" + LOGITS, LOGITS]}, student_model, teacher_model)
    batches = [(_feeds(seed), None) for seed in range(4)]
    probe = _feeds(99)
    before = float(distiller(probe).total.detach())
    config = TrainConfig(
        train_iter=40, eval_iter=40, learning_rate=0.01, optimizer_builder={"optimizer": {"type": "Adam"}}
    )
    result = train_loop(distiller.student, distiller, batches, config, None, True, tmp_path)
    after = float(distiller(probe).total.detach())
    assert result.steps == 40 and not result.diverged
    assert after < 0.2 * before, (before, after)
    for teacher in distiller.teachers:
        assert not teacher.training and all(not p.requires_grad and p.grad is None for p in teacher.parameters())


def test_per_loss_values_and_weighted_total():
    teacher_model, student_model = export(seed=0), export(seed=1)
    config = {
        "loss": ["l2", "soft_label", "fsp"],
        "alpha": [1.0, 0.5, 2.0],
        "temperature": 2.0,
        "node": [[CONV2, CONV2], [LOGITS, LOGITS], [CONV1, CONV2, CONV1, CONV2]],
    }
    distiller = _single(config, student_model, teacher_model)
    feeds = _feeds()
    out = distiller(feeds)
    t = distiller.teachers[0](feeds, capture=[CONV1, CONV2, LOGITS])
    s = distiller.student(feeds, capture=[CONV1, CONV2, LOGITS])
    expected = {
        f"l2({CONV2} -> {CONV2})": l2_loss(t[CONV2], s[CONV2]),
        f"soft_label({LOGITS} -> {LOGITS})": soft_label_loss(t[LOGITS], s[LOGITS], 2.0),
        f"fsp({CONV1}+{CONV2} -> {CONV1}+{CONV2})": fsp_loss(t[CONV1], t[CONV2], s[CONV1], s[CONV2]),
    }
    assert out.parts == pytest.approx({k: float(v.detach()) for k, v in expected.items()}, rel=1e-5)
    weights = [1.0, 0.5, 2.0]
    assert float(out.total.detach()) == pytest.approx(
        sum(w * float(v.detach()) for w, v in zip(weights, expected.values())), rel=1e-5
    )
    out.total.backward()
    assert all(p.grad is not None for p in distiller.student.parameters())


def test_shape_mismatch_names_both_nodes_and_shapes():
    distiller = _single({"node": ["teacher_" + CONV1, CONV1]}, export(hidden=6), export(hidden=8))
    with pytest.raises(
        ConfigError, match=rf"teacher '{CONV1}' has shape \[4, 8, 8, 8\] but student '{CONV1}' has shape \[4, 6, 8, 8\]"
    ):
        distiller(_feeds())


def test_fsp_with_different_channel_counts_is_a_clear_error():
    distiller = _single({"loss": "fsp", "node": [CONV1, CONV2, CONV1, CONV2]}, export(hidden=6), export(hidden=8))
    with pytest.raises(ConfigError, match=f"teacher '{CONV1}' has 8 channels but student '{CONV1}' has 6"):
        distiller(_feeds())


def test_fsp_with_different_spatial_sizes_is_a_clear_error():
    model = export()
    distiller = _single(
        {"loss": "fsp", "node": [CONV1, "/ReduceMean_output_0", CONV1, "/ReduceMean_output_0"]}, model, model
    )
    with pytest.raises(ConfigError, match="same batch and spatial size"):
        distiller(_feeds())


def test_label_loss_is_cross_entropy_on_the_logits_before_softmax():
    teacher_model, student_model = export(seed=0), export(seed=1)
    distiller = _single({"node": [LOGITS, LOGITS], "label_loss_weight": 0.3}, student_model, teacher_model)
    feeds, label = _feeds(), torch.tensor([0, 3, 1, 4])
    out = distiller(feeds, label)
    logits = distiller.student(feeds, capture=[LOGITS])[LOGITS]
    ce = F.cross_entropy(logits, label)
    assert out.parts["label"] == pytest.approx(float(ce.detach()), rel=1e-5)
    assert float(out.total.detach()) == pytest.approx(
        out.parts[f"l2({LOGITS} -> {LOGITS})"] + 0.3 * float(ce.detach()), rel=1e-5
    )
    assert "label" not in distiller(feeds).parts


def test_multi_teacher_sums_per_teacher_losses_and_maps_inputs_by_position():
    student_model = export(seed=1)
    teachers = [export(seed=0), export(seed=2, input_name="image")]
    config = MultiTeacherDistillation.parse(
        {
            "teacher_model_dir": ["a", "b"],
            "loss": ["l2", "soft_label"],
            "alpha": [1.0, 0.5],
            "node": [["teacher_" + LOGITS, LOGITS], [CONV2, CONV2, LOGITS, LOGITS]],
        }
    )
    distiller = Distiller.from_config(config, TorchGraph(student_model), student_model, [_graph(m) for m in teachers])
    feeds = _feeds()
    out = distiller(feeds)
    s = distiller.student(feeds, capture=[CONV2, LOGITS])
    t0 = distiller.teachers[0](feeds, capture=[LOGITS])
    t1 = distiller.teachers[1]({"image": feeds["x"]}, capture=[CONV2, LOGITS])
    expected = {
        f"l2({LOGITS} -> {LOGITS})": float(l2_loss(t0[LOGITS], s[LOGITS]).detach()),
        f"soft_label(t1:{CONV2} -> {CONV2})": float(soft_label_loss(t1[CONV2], s[CONV2]).detach()),
        f"soft_label(t1:{LOGITS} -> {LOGITS})": float(soft_label_loss(t1[LOGITS], s[LOGITS]).detach()),
    }
    assert out.parts == pytest.approx(expected, rel=1e-5)
    values = list(expected.values())
    assert float(out.total.detach()) == pytest.approx(values[0] + 0.5 * (values[1] + values[2]), rel=1e-5)
    with pytest.raises(ConfigError, match="2 teachers are configured but 1"):
        Distiller.from_config(config, TorchGraph(student_model), student_model, [_graph(teachers[0])])


def test_legacy_act_keys_and_teacher_mode():
    model = export()
    distiller = _single(
        {
            "distill_lambda": 1.0,
            "distill_loss": "l2_loss",
            "distill_node_pair": ["teacher_" + CONV2, CONV2],
            "merge_feed": True,
        },
        model,
        model,
    )
    distiller.train()
    assert distiller.student.training and not distiller.teachers[0].training
    assert float(distiller(_feeds()).total.detach()) == pytest.approx(0.0, abs=1e-10)  # teacher = original model
