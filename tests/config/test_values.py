"""Numbers and names a config may not hold: each is a ConfigError naming the key and what is allowed."""

import pytest

from autocompress import AutoCompression
from autocompress.config import load_config
from autocompress.errors import ConfigError

WARMUP_OF_NEGATIVE = {
    "type": "LinearWarmup",
    "warmup_steps": 2,
    "start_lr": 0.0,
    "end_lr": 0.1,
    "learning_rate": {"type": "StepDecay", "learning_rate": -0.1, "step_size": 5},
}
TEACHERS = {"loss": ["l2", "soft_label"], "node": [[], []], "teacher_model_dir": ["a.onnx", "b.onnx"]}


@pytest.mark.parametrize(
    "learning_rate, words",
    [
        (-0.01, ["TrainConfig.learning_rate = -0.01", "must be a finite number > 0"]),
        (0, ["TrainConfig.learning_rate = 0", "> 0"]),
        (
            {"type": "CosineAnnealingDecay", "learning_rate": -1.0, "T_max": 10},
            ["learning_rate.learning_rate = -1.0", "> 0"],
        ),
        (
            {"type": "CosineAnnealingDecay", "learning_rate": 0.1, "T_max": 10, "eta_min": -0.001},
            ["learning_rate.eta_min = -0.001", ">= 0"],
        ),
        ({"type": "OneCycleLR", "max_learning_rate": -0.1, "total_steps": 10}, ["learning_rate.max_learning_rate"]),
        (
            {"type": "CyclicLR", "base_learning_rate": -0.1, "max_learning_rate": 0.1, "step_size_up": 2},
            ["learning_rate.base_learning_rate = -0.1", ">= 0"],
        ),
        ({"type": "PiecewiseDecay", "boundaries": [3], "values": [0.1, -0.01]}, ["learning_rate.values[1] = -0.01"]),
        (WARMUP_OF_NEGATIVE, ["learning_rate.learning_rate.learning_rate = -0.1", "> 0"]),
        ({"type": "ExponentialDecay", "learning_rate": float("inf"), "gamma": 0.9}, ["finite number > 0"]),
    ],
)
def test_learning_rates_out_of_range_are_refused(learning_rate, words):
    with pytest.raises(ConfigError) as info:
        load_config({"TrainConfig": {"learning_rate": learning_rate}})
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "learning_rate",
    [
        0.02,
        {"type": "LinearWarmup", "warmup_steps": 2, "start_lr": 0.0, "end_lr": 0.1, "learning_rate": 0.1},
        {"type": "PiecewiseDecay", "boundaries": [3], "values": [0.1, 0.0]},
        {"type": "CosineAnnealingDecay", "learning_rate": 0.1, "T_max": 10, "eta_min": 0},
    ],
)
def test_valid_learning_rates_load(learning_rate):
    assert load_config({"TrainConfig": {"learning_rate": learning_rate}}).train.learning_rate == learning_rate


@pytest.mark.parametrize(
    "config, words",
    [
        ({"Distillation": {"alpha": -1.0}}, ["Distillation.alpha = -1.0", "alpha must be >= 0"]),
        ({"Distillation": {"distill_lambda": -0.5}}, ["Distillation.alpha", ">= 0"]),
        (
            {"Distillation": {"loss": ["l2", "l2"], "node": ["a", "b"], "alpha": [1.0, -0.5]}},
            ["alpha[1] = -0.5 is negative", ">= 0"],
        ),
        (
            {"MultiTeacherDistillation": {**TEACHERS, "alpha": [1.0, -2.0]}},
            ["MultiTeacherDistillation.alpha", "alpha[1] = -2.0", ">= 0"],
        ),
        ({"Distillation": {"temperature": -2.0}}, ["Distillation.temperature = -2.0", "greater than 0"]),
        (
            {"MultiTeacherDistillation": {**TEACHERS, "alpha": [1.0, 1.0], "temperature": -1.0}},
            ["MultiTeacherDistillation.temperature", "greater than 0"],
        ),
    ],
)
def test_negative_alphas_and_temperatures_are_refused(config, words):
    with pytest.raises(ConfigError) as info:
        load_config(config)
    for word in words:
        assert word in str(info.value)
    assert load_config({"Distillation": {"alpha": 0.0}}).strategies["Distillation"].alpha == 0.0


def test_an_unknown_training_device_lists_the_allowed_ones(tiny_cnn, tiny_batches, tmp_path):
    with pytest.raises(ConfigError, match=r"Global.devices = 'tpu'.*allowed values are \['cpu', 'gpu', 'cuda'\]"):
        load_config({"Global": {"devices": "tpu"}})
    with pytest.raises(ConfigError, match=r"devices = 'xpu'.*\['cpu', 'gpu', 'cuda'\]"):
        AutoCompression(tiny_cnn, tiny_batches, save_dir=tmp_path / "o", devices="xpu", eval_callback=len)
    assert load_config({"Global": {"devices": "GPU"}}).global_.devices == "gpu"


@pytest.mark.parametrize(
    "text, words",
    [
        ("Global: {}\nQuantPost: {}\nGlobal: {devices: gpu}\n", ["section 'Global'", "lines 1 and 3"]),
        ("TrainConfig:\n  epochs: 2\n  eval_iter: 5\n  epochs: 4\n", ["key 'TrainConfig.epochs'", "lines 2 and 4"]),
        ("Global: {devices: cpu, devices: gpu}\n", ["key 'Global.devices'", "twice on line 1"]),
        (
            "TrainConfig:\n  learning_rate:\n    type: StepDecay\n    step_size: 2\n    step_size: 3\n",
            ["key 'TrainConfig.learning_rate.step_size'", "lines 4 and 5"],
        ),
    ],
)
def test_a_key_given_twice_in_yaml_names_the_key_and_both_lines(tmp_path, text, words):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for word in words:
        assert word in str(info.value)


def test_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "TrainConfig:\n  sharding_config: &base {stage: 1, degree: 2}\n  recompute_config: {<<: *base, stage: 2}\n"
    )
    assert load_config(path).train.recompute_config == {"stage": 2, "degree": 2}
